"""Settings of `unsee judge` and `unsee evaluate`."""

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from unsee.config import ModelArgs, arg
from unsee.errors import UnseeError


@dataclass(kw_only=True)
class JudgeConfig:
    dir: Path = arg(help="an image folder made by `unsee generate`", positional=True)
    judge: Literal["world"] = arg(
        "world", help="world: the embedded world's attribute classifier (32x32 images)"
    )
    device: str = arg("auto", help="auto (cuda > mps > cpu), cpu, cuda, cuda:N or mps")


@dataclass(kw_only=True)
class EvaluateConfig(ModelArgs):
    out: Path = arg(help="folder for each suite's images, results.json and results.md")
    suite: list[str] = arg(
        ["target", "leak", "neutral", "other-artists"],
        help="world suites: target, leak, neutral, other-artists, paraphrase",
    )
    concept: str = arg("Vanmond", help="what was removed: an artist of the world, or watermark")
    n: int = arg(300, help="images per suite")
    seed: int = arg(7_000_000, help="first seed; each suite's images get fixed seeds from it")
    steps: int = arg(25, help="denoising steps")
    guidance: float = arg(7.5, help="classifier-free guidance scale")
    negative_prompt: str = arg("", help="NEG baseline: text (or a learned token) to steer from")
    embedding: list[Path] = arg([], help="learned_embeds.safetensors files to load")
    lora: Path | None = arg(None, help="LoRA weights for the U-Net (`unsee erase --save lora`)")
    sld: Literal["off", "weak", "medium", "strong", "max"] = arg("off", help="SLD preset")
    sld_concept: str | None = arg(None, help="the concept SLD steers away from")
    sega_remove: list[str] = arg([], help="SEGA: concepts to steer away from")
    censor_reward: Path | None = arg(None, help="censored sampling with this reward")
    censor_scale: float = arg(2.0, help="censored sampling: forward guidance scale")
    reference_model: str = arg(
        "minisd", help="the original model, for the same-seed distance (its images are cached)"
    )
    clip_model: str = arg("minisd", help="CLIP for features and CLIP score: minisd or a folder")
    bootstrap: int = arg(1000, help="bootstrap resamples per interval")
    batch_size: int = arg(32, help="images per batch")
    batch_invariant: Literal["auto", "on", "off"] = arg("auto", help="as in `unsee generate`")

    def __post_init__(self) -> None:
        from unsee.evaluate.suites import CONCEPTS, SUITES

        self.out = Path(self.out)
        for s in self.suite:
            if s not in SUITES:
                raise UnseeError(f"unknown suite {s!r}; one of {', '.join(SUITES)}")
        if self.concept not in CONCEPTS:
            raise UnseeError(f"--concept must be one of {', '.join(CONCEPTS)}")
        if self.n < 2 or self.bootstrap < 1:
            raise UnseeError("--n must be at least 2 and --bootstrap at least 1")

    def plain(self) -> bool:
        """No intervention: the evaluated images are the reference model's own."""
        return (
            self.model == self.reference_model and not self.negative_prompt and not self.embedding
            and self.lora is None and self.sld == "off" and not self.sega_remove
            and self.censor_reward is None
        )  # fmt: skip
