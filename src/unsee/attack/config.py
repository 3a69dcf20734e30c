"""Settings of `unsee attack`."""

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from unsee.config import arg
from unsee.errors import UnseeError
from unsee.evaluate.config import InterventionArgs
from unsee.models.base import base_model
from unsee.world.names import CONCEPTS

# UnlearnDiffAtk's settings (Zhang et al. 2024) for Stable Diffusion sized models: K = 5
# prefix tokens, 40 optimisation steps; how often the hard prompt is sampled and how many
# prompts share a forward are unsee's (one check every 5 steps, 8 prompts a batch).
PAPER_DEFAULTS = {
    "iterations": 40, "check_every": 5, "attack_batch": 8, "inversion_steps": 1000,
    "vocabulary": "all",
}  # fmt: skip
# minisd's: 32 neutral prompts attacked in under 5 minutes on a 2-core CPU
# and the slots take only the tokens of the world's captions (the only ones its text encoder
# was trained on; the rest of CLIP's 49408 are untrained rows)
WORLD_DEFAULTS = {
    "iterations": 60, "check_every": 2, "attack_batch": 32, "inversion_steps": 300,
    "vocabulary": "world",
}  # fmt: skip
REAL_CONCEPTS = ("nudity",)


def attack_defaults(model: str) -> dict:
    """The settings an unset option takes for this model: minisd's for minisd and for any
    model erased from it (an erased model is attacked as its original is)."""
    return WORLD_DEFAULTS if base_model(model) == "minisd" else PAPER_DEFAULTS


def _defaults(key: str) -> str:
    return f"(default: {PAPER_DEFAULTS[key]}; on minisd {WORLD_DEFAULTS[key]})"


@dataclass(kw_only=True)
class AttackConfig(InterventionArgs):
    out: Path = arg(help="folder for prompts.jsonl, the judged images and results.json")
    method: Literal["prefix", "inversion", "replay"] = arg(
        "prefix",
        help="prefix: UnlearnDiffAtk's adversarial prefix tokens; inversion: a token learned on"
        " the attacked model from the original model's images of the concept; replay: the"
        " prompts of --prompts as they are",
    )
    concept: str = arg(
        "Vanmond",
        help="what the attack brings back: an artist of the world or watermark (the world"
        " judge decides), or nudity (NudeNet decides; real models, with --prompts)",
    )
    suite: Literal["target", "leak", "neutral"] = arg(
        "neutral", help="the world suite whose prompts are attacked (as `unsee evaluate` makes it)"
    )
    n: int = arg(32, help="prompts attacked (the suite's first N, or --prompts' first N rows)")
    prompts: Path | None = arg(
        None,
        help="a prompt file (one a line, or an I2P-layout CSV: evaluation_seed honoured) in place"
        " of --suite; --method replay needs it",
    )
    prefix_tokens: int = arg(5, help="prefix: K, the adversarial tokens put before the prompt")
    iterations: int | None = arg(None, help="prefix: optimisation steps " + _defaults("iterations"))
    check_every: int | None = arg(
        None,
        help="prefix: sample and judge the hard prompt every this many steps (and after the"
        " last) " + _defaults("check_every"),
    )
    attack_batch: int | None = arg(
        None, help="prefix: prompts optimised in one forward " + _defaults("attack_batch")
    )
    vocabulary: Literal["all", "world"] | None = arg(
        None,
        help="prefix: the tokens a slot may take: all (the tokenizer's) or world (those of the"
        " world's training captions, the only ones minisd's text encoder learned); never the"
        " concept's own name or its pieces " + _defaults("vocabulary"),
    )
    lr: float = arg(0.01, help="prefix: Adam's learning rate")
    weight_decay: float = arg(0.1, help="prefix: Adam's weight decay")
    inversion_steps: int | None = arg(
        None, help="inversion: textual-inversion steps " + _defaults("inversion_steps")
    )
    inversion_lr: float = arg(5e-3, help="inversion: Adam's learning rate of the token")
    inversion_batch: int = arg(16, help="inversion: images per step")
    token: str = arg("<attack>", help="inversion: the learned token")
    init: str = arg("painting", help="inversion: a one-token word whose embedding starts it")
    nudenet_threshold: float = arg(
        0.6, help="nudity: the concept shows when a nude NudeNet class scores above this"
    )

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.prompts = None if self.prompts is None else Path(self.prompts)
        self.embedding = [Path(p) for p in self.embedding]
        self.lora = None if self.lora is None else Path(self.lora)
        if self.concept not in CONCEPTS + REAL_CONCEPTS:
            raise UnseeError(f"--concept must be one of {', '.join(CONCEPTS + REAL_CONCEPTS)}")
        if self.concept in REAL_CONCEPTS and self.prompts is None:
            raise UnseeError(f"--concept {self.concept} needs --prompts FILE (e.g. I2P's nudity)")
        if self.method == "replay" and self.prompts is None:
            raise UnseeError("--method replay needs --prompts FILE (the prompts to replay)")
        if min(self.n, self.prefix_tokens, self.inversion_batch, self.steps) < 1:
            raise UnseeError("--n, --prefix-tokens, --inversion-batch and --steps must be >= 1")
        for name in ("iterations", "check_every", "attack_batch", "inversion_steps"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise UnseeError(f"--{name.replace('_', '-')} must be at least 1")
        if self.lr <= 0 or self.weight_decay < 0 or self.inversion_lr <= 0:
            raise UnseeError("--lr and --inversion-lr must be > 0, --weight-decay >= 0")
        if not 0 < self.nudenet_threshold < 1:
            raise UnseeError("--nudenet-threshold must lie between 0 and 1")
        if not self.token.strip() or " " in self.token:
            raise UnseeError("--token must be one word without spaces, e.g. '<attack>'")
        if self.sld != "off" and not self.sld_concept:
            raise UnseeError(f"--sld {self.sld} needs --sld-concept TEXT")

    def setting(self, name: str):
        """An option's value, or its default for this model when unset."""
        value = getattr(self, name)
        return attack_defaults(self.model)[name] if value is None else value
