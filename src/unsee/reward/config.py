"""Settings of `unsee reward train` and `unsee reward score`."""

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from unsee.config import arg, check_out_folder
from unsee.errors import UnseeError


@dataclass(kw_only=True)
class RewardTrainConfig:
    dir: Path = arg(help="an image folder with feedback.sqlite", positional=True)
    out: Path = arg(help="folder for the reward: model.safetensors, config.json, report.json")
    backbone: Literal["clip", "cnn", "noise-aware"] = arg(
        "clip",
        help="clip: MLP on frozen CLIP image embeddings (HFI); cnn: convnet on pixels"
        " (censored sampling, forward guidance); noise-aware: on noisy samples x_t and t"
        " (classic guidance)",
    )
    loss: Literal["auto", "bce", "mse", "bt"] = arg(
        "auto",
        help="bce: weighted BCE (binary labels); mse: squared error to the label (binary);"
        " bt: Bradley-Terry over rankings; auto: bt for rankings, bce for labels",
    )
    ensemble: int = arg(5, help="members K, each on its own bootstrap sample of the labels")
    alpha: float = arg(0.1, help="bce weight of benign (good) examples, < 1 is conservative")
    augment: bool = arg(False, help="flips, crops and colour jitter (for few labels)")
    steps: int | None = arg(
        None, help="optimiser steps per member (default: clip 2000, cnn 400, noise-aware 1000)"
    )
    lr: float = arg(1e-3, help="AdamW learning rate (linear decay, weight decay 0.05)")
    clip_model: str = arg(
        "minisd", help="CLIP for the clip backbone: minisd's mini CLIP, or a transformers folder"
    )
    model: str = arg("minisd", help="diffusion model whose samples a noise-aware reward reads")
    image_size: int = arg(32, help="cnn: images are resized to this size")
    cv_folds: int = arg(5, help="cross-validation folds for the report (0: none)")
    annotator: str | None = arg(None, help="use only this annotator's decisions")
    seed: int = arg(0, help="seed of bootstrap samples, initialisation and augmentation")
    device: str = arg("auto", help="auto (cuda > mps > cpu), cpu, cuda, ...")

    def __post_init__(self) -> None:
        self.out = check_out_folder(self.out)
        if self.cv_folds == 1 or self.cv_folds < 0:
            raise UnseeError("--cv-folds must be 0 (no cross-validation) or at least 2")
        if self.ensemble < 1:
            raise UnseeError("--ensemble must be at least 1")
        if not self.alpha > 0:
            raise UnseeError("--alpha must be > 0")
        if self.steps is not None and self.steps < 1:
            raise UnseeError("--steps must be at least 1")


@dataclass(kw_only=True)
class RewardScoreConfig:
    reward: Path = arg(help="a reward folder made by `unsee reward train`", positional=True)
    dir: Path = arg(help="an image folder made by `unsee generate`", positional=True)
    device: str = arg("auto", help="auto (cuda > mps > cpu), cpu, cuda, ...")
