"""Settings of `unsee erase`."""

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from unsee.config import ModelArgs, arg
from unsee.errors import UnseeError


@dataclass(kw_only=True)
class EraseConfig(ModelArgs):
    out: Path = arg(help="output folder: a pipeline folder (or a LoRA file) with a model card")
    method: Literal["sdd", "esd-x", "esd-u"] = arg(
        "sdd", help="sdd: self-distillation (Kim et al.); esd-x / esd-u: erased stable diffusion"
    )
    concept: list[str] = arg([], help="concept texts to remove (several at once are fine)")
    embedding: list[Path] = arg(
        [], help="learned_embeds.safetensors files (`unsee invert`); their tokens are removed"
    )
    params: Literal[
        "auto", "cross-attention", "self-attention", "all-but-cross-attention", "full", "lora"
    ] = arg(
        "auto", help="what trains; auto: cross-attention (sdd, esd-x), all-but-cross-attention"
        " (esd-u)"
    )  # fmt: skip
    lora_rank: int = arg(4, help="--params lora: adapter rank")
    timesteps: Literal["beta", "uniform"] = arg(
        "beta", help="where teacher trajectories stop: Beta(a, b) (HFI) or uniform (SDD)"
    )
    beta: list[float] = arg([3.0, 3.0], help="a b of the Beta distribution")
    iterations: int = arg(1500, help="optimiser steps")
    batch: int = arg(4, help="trajectories per step, in one batched forward")
    lr: float = arg(1e-5, help="AdamW learning rate (constant)")
    ema: float = arg(0.999, help="EMA momentum of the teacher (the EMA is what is saved)")
    cfg_scale: float = arg(3.0, help="classifier-free guidance of the teacher's trajectories")
    sample_steps: int = arg(50, help="DDIM steps of the teacher's trajectories")
    eta: float = arg(1.0, help="esd: strength of the negative guidance in the target")
    gradient_checkpointing: bool = arg(False, help="recompute U-Net activations (less memory)")
    checkpoint_every: int = arg(250, help="steps between checkpoints (0: none)")
    resume: bool = arg(False, help="continue from the last checkpoint in --out")
    save: Literal["pipeline", "lora"] = arg(
        "pipeline", help="pipeline: a full diffusers folder; lora: a LoRA file (--params lora)"
    )
    seed: int = arg(0, help="seed of noise, stop steps and timesteps")

    def __post_init__(self) -> None:
        if not self.concept and not self.embedding:
            raise UnseeError("give what to remove: --concept TEXT and/or --embedding FILE")
        if self.iterations < 1 or self.batch < 1:
            raise UnseeError("--iterations and --batch must be at least 1")
        if self.sample_steps < 2:
            raise UnseeError("--sample-steps must be at least 2")
        if len(self.beta) != 2 or min(self.beta) <= 0:
            raise UnseeError("--beta takes two positive numbers A B")
        if not 0 <= self.ema < 1:
            raise UnseeError("--ema must lie in [0, 1)")
        if self.save == "lora" and self.params not in ("lora", "auto"):
            raise UnseeError("--save lora needs --params lora")
        if self.save == "lora":
            self.params = "lora"
        if self.params == "auto":
            self.params = "all-but-cross-attention" if self.method == "esd-u" else "cross-attention"
        self.out = Path(self.out)
        self.embedding = [Path(p) for p in self.embedding]
