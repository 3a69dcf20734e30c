"""Settings of `unsee generate` (defaults live here and in --help, nowhere else)."""

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from unsee.config import ModelArgs, arg
from unsee.errors import UnseeError


@dataclass(kw_only=True)
class GenerateConfig(ModelArgs):
    out: Path = arg(help="output folder: images/, metadata.jsonl, run.json")
    prompt: str | None = arg(None, help="the prompt (or --prompts)")
    prompts: Path | None = arg(
        None,
        help="a .txt file, one prompt a line, or a .csv with a prompt column (I2P / COCO-30k"
        " layout; evaluation_seed, evaluation_guidance, case_number / image_id honoured)",
    )
    n: int = arg(1, help="images per prompt")
    seed: int = arg(0, help="seed of image 0; image i gets seed + i (a CSV's evaluation_seed wins)")
    steps: int = arg(25, help="denoising steps")
    guidance: float = arg(
        7.5, help="classifier-free guidance scale, 1 = off (a CSV's evaluation_guidance wins)"
    )
    negative_prompt: str = arg("", help="text to steer away from (replaces the empty prompt)")
    height: int | None = arg(None, help="image height; default: the model's native size")
    width: int | None = arg(None, help="image width; default: the model's native size")
    batch_size: int = arg(16, help="images per batch")
    scheduler: Literal["ddim", "ddpm", "euler", "dpm++"] = arg(
        "ddim", help="sampler, with the model's noise schedule"
    )
    batch_invariant: Literal["auto", "on", "off"] = arg(
        "auto",
        help="on: each image's pixels depend only on its prompt and seed, whatever the batch"
        " size or process count (exact on the CPU); auto: on for the CPU, off on a GPU (faster)",
    )

    def __post_init__(self) -> None:
        if self.prompt is not None and self.prompts is not None:
            raise UnseeError("give --prompt or --prompts, not both")
        for name in ("n", "steps", "batch_size"):
            if getattr(self, name) < 1:
                raise UnseeError(f"--{name.replace('_', '-')} must be at least 1")
        if self.guidance < 0:
            raise UnseeError("--guidance must be >= 0")
        if self.seed < 0:
            raise UnseeError("--seed must be >= 0")
        for name in ("height", "width"):
            if getattr(self, name) is not None and getattr(self, name) < 8:
                raise UnseeError(f"--{name} must be at least 8")
        self.out = Path(self.out)
