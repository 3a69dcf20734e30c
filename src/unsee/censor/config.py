"""Settings of `unsee censor`: generation settings plus the reward and its guidance."""

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from unsee.config import arg
from unsee.errors import UnseeError
from unsee.generate.config import GenerateConfig


def check_window(window: list[float]) -> None:
    """Refuse a guidance window that is not START END with 0 <= START <= END <= 1."""
    if len(window) != 2 or not 0 <= window[0] <= window[1] <= 1:
        raise UnseeError("--window takes START END with 0 <= START <= END <= 1")


@dataclass(kw_only=True)
class CensorConfig(GenerateConfig):
    reward: Path = arg(help="a reward folder (`unsee reward train`)")
    scale: float = arg(
        2.0,
        help="guidance scale w: forward guidance for clip/cnn rewards, classic guidance for"
        " noise-aware ones; 0 turns the eps shift off",
    )
    backward_steps: int = arg(0, help="backward guidance: Adam steps on the predicted x0 (0: off)")
    backward_lr: float = arg(0.1, help="backward guidance: Adam learning rate")
    recurrence: int = arg(1, help="passes per denoising step (1: none; DDIM/DDPM only)")
    window: list[float] = arg(
        [0.0, 1.0], help="guidance acts while t/T lies in [START, END] (1 = pure noise)"
    )
    schedule: Literal["constant", "linear", "late"] = arg(
        "constant", help="scale over time: constant; linear: w t/T; late: w (1 - t/T)"
    )
    through_unet: bool = arg(
        True,
        help="forward guidance differentiates through the U-Net (exact); --no-through-unet"
        " holds eps constant (cheaper)",
    )
    checkpointing: Literal["auto", "on", "off"] = arg(
        "auto",
        help="gradient checkpointing in the U-Net and VAE decoder (auto: on a GPU only when"
        " the batch's activations would not fit in its free memory)",
    )
    reject: bool = arg(
        False, help="rejection sampling instead of guidance: sample, score, replace the bad ones"
    )
    threshold: float = arg(
        0.5, help="an image passes when the members' mean probability of benign exceeds this"
    )
    budget: float = arg(
        10.0, help="--reject: at most this many samples per requested image before giving up"
    )
    retry: int = arg(
        0,
        help="after guided sampling, sample the images the reward still flags again (guided,"
        " fresh seeds), keeping the better-scored sample, at most N rounds (0: off)",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        check_window(self.window)
        if self.scale < 0:
            raise UnseeError("--scale must be >= 0")
        if self.backward_steps < 0:
            raise UnseeError("--backward-steps must be >= 0")
        if self.recurrence < 1:
            raise UnseeError("--recurrence must be at least 1")
        if self.recurrence > 1 and self.scheduler not in ("ddim", "ddpm"):
            raise UnseeError("--recurrence needs --scheduler ddim or ddpm")
        if not 0 < self.threshold < 1:
            raise UnseeError("--threshold must lie in (0, 1)")
        if self.budget < 1:
            raise UnseeError("--budget must be at least 1")
        if self.retry < 0:
            raise UnseeError("--retry must be >= 0")
        if self.retry and self.reject:
            raise UnseeError("--retry follows guided sampling; --reject has --budget instead")
        self.reward = Path(self.reward)


def generate_config(cfg: CensorConfig) -> GenerateConfig:
    """The `unsee generate` settings within cfg: how each image is sampled."""
    fields = {f.name for f in dataclasses.fields(GenerateConfig)}
    return GenerateConfig(**{k: v for k, v in dataclasses.asdict(cfg).items() if k in fields})
