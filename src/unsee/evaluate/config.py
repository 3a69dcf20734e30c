"""Settings of `unsee judge`."""

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from unsee.config import arg


@dataclass(kw_only=True)
class JudgeConfig:
    dir: Path = arg(help="an image folder made by `unsee generate`", positional=True)
    judge: Literal["world"] = arg(
        "world", help="world: the embedded world's attribute classifier (32x32 images)"
    )
    device: str = arg("auto", help="auto (cuda > mps > cpu), cpu, cuda, cuda:N or mps")
