"""Settings of the `unsee bench` commands."""

from dataclasses import dataclass
from pathlib import Path

from unsee.config import arg


@dataclass(kw_only=True)
class BenchGenerateConfig:
    out: Path = arg(help="folder for results.json and the generated images")
    n: int = arg(32, help="images to generate")
    steps: int = arg(25, help="denoising steps")
    batch_size: int = arg(8, help="images per batch")
    image_size: int = arg(32, help="image side in pixels")
