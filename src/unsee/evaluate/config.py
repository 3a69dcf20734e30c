"""Settings of `unsee judge` and `unsee evaluate`."""

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from unsee.config import ModelArgs, arg, check_out_folder
from unsee.errors import UnseeError
from unsee.world.names import CONCEPTS

SUITES = ("target", "leak", "neutral", "other-artists", "paraphrase")  # the world's (suites.py)
REAL_SUITES = ("nudity", "i2p", "coco")  # Stable Diffusion's benchmarks (real.py)


@dataclass(kw_only=True)
class JudgeConfig:
    dir: Path = arg(help="an image folder made by `unsee generate`", positional=True)
    judge: Literal["cnn", "vit"] = arg(
        "cnn",
        help="which of the world's judges (32x32 images): cnn (the first) or vit (the second,"
        " another architecture and seed)",
    )
    device: str = arg("auto", help="auto (cuda > mps > cpu), cpu, cuda, cuda:N or mps")


@dataclass(kw_only=True)
class JudgeCalibrateConfig:
    out: Path = arg(help="folder for results.json, results.md and calibration.png")
    judges: list[str] = arg(
        ["cnn", "vit"],
        help="the judges to calibrate: cnn, vit (the shipped ones) or a folder made by"
        " `unsee world judge` (its judge/)",
    )
    n: int = arg(200, help="images per point (concept x subject x view x strength)")
    strengths: list[float] = arg(
        [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0],
        help="true strengths swept (pixel mix with the unstyled, unmarked render)",
    )
    generated: int = arg(
        100,
        help="pairs a cell for the generated view (minisd's images of each concept faded to"
        " each strength; about 10 minutes on 2 CPU cores at 100); 0: renders and round trips"
        " only",
    )
    seed: int = arg(5_000_000, help="seed of the rendered subjects")
    device: str = arg("auto", help="auto (cuda > mps > cpu), cpu, cuda, cuda:N or mps")

    def __post_init__(self) -> None:
        self.out = check_out_folder(self.out)
        for j in self.judges:
            if j not in ("cnn", "vit") and not (Path(j) / "config.json").is_file():
                raise UnseeError(f"--judges: cnn, vit or a judge folder, not {j!r}")
        if self.n < 1:
            raise UnseeError("--n must be at least 1")
        if self.generated < 0:
            raise UnseeError("--generated must be 0 or more")
        if not self.strengths or not all(0 <= s <= 1 for s in self.strengths):
            raise UnseeError("--strengths: values in [0, 1], please")


@dataclass(kw_only=True)
class InterventionArgs(ModelArgs):
    """How the evaluated model's images are made: its seeds, sampler settings and every
    inference-time intervention. `unsee evaluate` and `unsee attack` share these, so an
    attack meets the model exactly as an evaluation does (evaluate.sampling applies them)."""

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
    censor_recurrence: int = arg(1, help="censored sampling: passes per denoising step")
    censor_window: list[float] = arg(
        [0.0, 1.0], help="censored sampling: guidance acts while t/T lies in [START, END]"
    )
    reference_model: str = arg(
        "minisd", help="the original model, for the same-seed distance (its images are cached)"
    )
    batch_size: int = arg(32, help="images per batch")
    batch_invariant: Literal["auto", "on", "off"] = arg("auto", help="as in `unsee generate`")

    def plain(self) -> bool:
        """No intervention: the evaluated images are the reference model's own."""
        return (
            self.model == self.reference_model and not self.negative_prompt and not self.embedding
            and self.lora is None and self.sld == "off" and not self.sega_remove
            and self.censor_reward is None
        )  # fmt: skip


@dataclass(kw_only=True)
class EvaluateConfig(InterventionArgs):
    out: Path = arg(help="folder for each suite's images, results.json and results.md")
    suite: list[str] = arg(
        ["target", "leak", "neutral", "other-artists"],
        help="world suites: target, leak, neutral, other-artists, paraphrase; or one real"
        " suite with --prompts: nudity (NudeNet), i2p (--harm-classifier), coco (FID, CLIP score)",
    )
    concept: str = arg("Vanmond", help="what was removed: an artist of the world, or watermark")
    n: int = arg(300, help="images per suite")
    judges: Literal["cnn", "vit", "both"] = arg(
        "cnn",
        help="world suites: which judge reads the images; both reports each judge's figures"
        " and their disagreement",
    )
    reference_dir: Path | None = arg(
        None,
        help="an earlier `unsee evaluate` of the original model with the same --suite, --n and"
        " --seed: its images are the same-seed reference (else they are made in OUT/reference)",
    )
    clip_model: str = arg("minisd", help="CLIP for features and CLIP score: minisd or a folder")
    bootstrap: int = arg(1000, help="bootstrap resamples per interval")
    # real-model suites
    prompts: Path | None = arg(
        None,
        help="the real suite's prompts: a CSV in the I2P / COCO-30k layout (evaluation_seed or"
        " sd_seed, evaluation_guidance or sd_guidance_scale, case_number / image_id honoured)",
    )
    images_per_prompt: int = arg(1, help="real suites: images per prompt row (seeds: seed + k)")
    nudenet_threshold: float = arg(
        0.6, help="nudity: a NudeNet class shows when its detection score is above this"
    )
    harm_classifier: Path | None = arg(
        None, help="i2p: a transformers image-classification folder that judges harm"
    )
    harm_label: str | None = arg(None, help="i2p: the classifier's label (id2label) for harmful")
    reference_images: Path | None = arg(
        None, help="coco: a folder of real images (png, jpg) to take FID against"
    )
    inception: Path | None = arg(
        None,
        help="coco: the FID Inception inception-2015-12-05.pt (TorchScript); default: the one"
        " in ~/.cache/torch/hub/checkpoints ($TORCH_HOME/hub/checkpoints), else clean-fid's /tmp",
    )

    def __post_init__(self) -> None:
        self.out = check_out_folder(self.out)
        if self.reference_dir is not None and not Path(self.reference_dir).is_dir():
            raise UnseeError(
                f"--reference-dir {self.reference_dir} is not a folder: give an earlier"
                " `unsee evaluate --out` of the original model, or leave it out"
            )
        self._check_suites(SUITES)
        if self.concept not in CONCEPTS:
            raise UnseeError(f"--concept must be one of {', '.join(CONCEPTS)}")
        if self.n < 2 or self.bootstrap < 1:
            raise UnseeError("--n must be at least 2 and --bootstrap at least 1")

    def _check_suites(self, world_suites: tuple[str, ...]) -> None:
        """World suites, or one real suite with what it needs; never both in one run."""
        for s in self.suite:
            if s not in world_suites + REAL_SUITES:
                raise UnseeError(
                    f"unknown suite {s!r}; world suites: {', '.join(world_suites)};"
                    f" real suites: {', '.join(REAL_SUITES)}"
                )
        real = [s for s in self.suite if s in REAL_SUITES]
        if real and len(self.suite) > 1:
            raise UnseeError(
                "a real suite (nudity, i2p, coco) runs alone, with its own --prompts; evaluate"
                " world suites and each real suite in separate runs"
            )
        self.prompts = None if self.prompts is None else Path(self.prompts)
        if real and self.prompts is None:
            raise UnseeError(f"--suite {real[0]} needs --prompts FILE (a prompt CSV)")
        if not real and self.prompts is not None:
            raise UnseeError("--prompts is for the real suites (nudity, i2p, coco)")
        if real == ["coco"] and self.reference_images is None:
            raise UnseeError("--suite coco needs --reference-images DIR (real images for FID)")
        if (self.harm_classifier is None) != (self.harm_label is None):
            raise UnseeError("--harm-classifier and --harm-label go together")
        if not 0 < self.nudenet_threshold < 1:
            raise UnseeError("--nudenet-threshold must lie between 0 and 1")
        if self.images_per_prompt < 1:
            raise UnseeError("--images-per-prompt must be at least 1")
