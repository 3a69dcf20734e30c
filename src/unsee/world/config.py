"""Settings of the `unsee world` commands."""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from unsee.config import arg, check_out_folder
from unsee.errors import UnseeError

# the judge's channels in its first blocks (x2, x4 deeper); the shipped judge's width
JUDGE_WIDTH = 48


@dataclass(kw_only=True)
class WorldTrainConfig:
    out: Path = arg(help="folder for the stages and the finished minisd/, clip/, judge/")
    seed: int = arg(0, help="one seed for everything")
    images: int = arg(40000, help="training images rendered")
    clip_steps: int = arg(700, help="mini CLIP steps (batch 256)")
    clip_web_steps: int = arg(
        300, help="image-tower steps on web-like captions, text tower frozen (batch 256)"
    )
    vae_steps: int = arg(2400, help="VAE steps (batch 32)")
    unet_steps: int = arg(2400, help="U-Net steps")
    unet_batch: int = arg(128, help="U-Net batch size")
    checkpoint_every: int = arg(400, help="U-Net steps between checkpoints (for resuming)")
    judge_steps: int = arg(3000, help="judge steps (batch 128)")
    judge_width: int = arg(JUDGE_WIDTH, help="judge channels in its first blocks (x2, x4 deeper)")
    judge_images: int = arg(20000, help="images rendered for the judge (its own seed)")
    judge_gen_steps: int = arg(
        800, help="judge fine-tuning steps on renders and their re-drawings by minisd"
    )
    judge_gen_images: int = arg(4000, help="images rendered and re-drawn for that fine-tuning")
    judge_reading_images: int = arg(
        6000, help="fresh images the judge's strength reading is fitted on (0: none)"
    )
    device: str = arg("auto", help="auto (cuda > mps > cpu), cpu, cuda, ...")

    def __post_init__(self) -> None:
        self.out = check_out_folder(self.out)
        if self.judge_width < 8 or self.judge_width % 8:
            raise UnseeError(
                f"--judge-width {self.judge_width}: a positive multiple of 8, please (the judge's"
                " group norms split its channels into 8 groups)"
            )


@dataclass(kw_only=True)
class WorldPathConfig:
    pass


@dataclass(kw_only=True)
class WorldShipConfig:
    trained: Path = arg(help="a folder made by `unsee world train --out`", positional=True)


@dataclass(kw_only=True)
class WorldJudgeConfig:
    out: Path = arg(help="folder for the stages and the finished judge/")
    arch: Literal["cnn", "vit"] = arg("cnn", help="cnn (the first judge) or vit (the second)")
    seed: int | None = arg(
        None, help="seed (default: 0 for cnn, as `unsee world train`; 1 for vit)"
    )
    images: int = arg(20000, help="images rendered for the judge")
    steps: int = arg(
        3000,
        help="training steps (batch 128); 0 with --start trains no more on renders (with"
        " --gen-steps 0 too, only the strength reading of that judge is refitted)",
    )
    width: int | None = arg(None, help=f"channels (default: cnn {JUDGE_WIDTH}, vit 96)")
    gen_steps: int = arg(
        800, help="fine-tuning steps on renders and their re-drawings (0: no such stage)"
    )
    gen_images: int = arg(4000, help="images rendered and re-drawn for that fine-tuning")
    reading_images: int = arg(
        6000, help="fresh images the strength reading is fitted on (0: the head's raw output)"
    )
    blend_steps: int = arg(
        0,
        help="fine-tuning steps on renders and generated blends (minisd's images of a concept"
        " faded to a known strength, world.blends; 0: no such stage)",
    )
    blend_pairs: int = arg(1500, help="pairs generated for that fine-tuning")
    faded_pairs: int = arg(
        0,
        help="starry nights drawn faded by a negative prompt against the leaking artist, added"
        " to that fine-tuning's pairs at the strength their skies keep (world.blends.faded_pairs:"
        " what a partly erased model draws; 0: none)",
    )
    start: Path | None = arg(
        None,
        help="a judge folder (judge/ of an earlier run, or a shipped one) to go on training"
        " instead of a new judge: its architecture and width, --steps more steps",
    )
    rank_weight: float = arg(
        0.0,
        help="weight of the twin ranking loss: within a pair of one subject, the image with"
        " more of a concept must read higher (0: none)",
    )
    device: str = arg("auto", help="auto (cuda > mps > cpu), cpu, cuda, ...")

    def __post_init__(self) -> None:
        self.out = check_out_folder(self.out)
        if self.seed is None:
            self.seed = 0 if self.arch == "cnn" else 1
        if min(self.images, self.gen_images) < 1:
            raise UnseeError("--images and --gen-images must be positive")
        counts = (self.steps, self.gen_steps, self.blend_steps, self.reading_images,
                  self.faded_pairs)  # fmt: skip
        if min(counts) < 0:
            raise UnseeError(
                "--steps, --gen-steps, --blend-steps, --reading-images and --faded-pairs must be"
                " 0 or more"
            )
        if self.blend_pairs < 1:
            raise UnseeError("--blend-pairs must be positive")
        if self.steps == 0 and self.start is None:
            raise UnseeError("--steps 0 needs --start: a new judge must train")
        if self.start is not None:
            self.start = Path(self.start)
            if not (self.start / "model.safetensors").is_file():
                raise UnseeError(f"--start {self.start} holds no judge (model.safetensors)")
            arch = json.loads((self.start / "config.json").read_text())["architecture"]
            if arch != self.arch:
                raise UnseeError(f"--start {self.start} is a {arch} judge, not --arch {self.arch}")


@dataclass(kw_only=True)
class WorldShipJudgeConfig:
    trained: Path = arg(help="a folder made by `unsee world judge --out`", positional=True)
