"""Settings of `unsee generate` (defaults live here and in --help, nowhere else)."""

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from unsee.config import ModelArgs, arg, check_out_folder
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
    embedding: list[Path] = arg(
        [],
        help="learned_embeds.safetensors files (textual inversion, e.g. `unsee invert`); their"
        " tokens work in --prompt, --prompts, --negative-prompt, --sld-concept, --sega-remove",
    )
    lora: Path | None = arg(
        None, help="LoRA weights for the U-Net: a folder or file from `unsee erase --save lora`"
    )
    sld: Literal["off", "weak", "medium", "strong", "max"] = arg(
        "off",
        help="Safe Latent Diffusion (Schramowski et al. 2023) away from --sld-concept, at the"
        " paper's strengths; their warm-ups are for 50 steps and scale to --steps",
    )
    sld_concept: str | None = arg(
        None, help="the concept SLD steers away from (text; a learned token works)"
    )
    sega_remove: list[str] = arg(
        [],
        help="SEGA (Brack et al. 2023): steer away from these concepts (reversed semantic"
        " guidance; warm-up 10 of 50 steps, scaled to --steps)",
    )
    sega_scale: float = arg(5.0, help="SEGA's edit guidance scale")
    height: int | None = arg(None, help="image height; default: the model's native size")
    width: int | None = arg(None, help="image width; default: the model's native size")
    batch_size: int = arg(16, help="images per batch")
    scheduler: Literal["ddim", "ddpm", "euler", "dpm++"] = arg(
        "ddim", help="sampler, with the model's noise schedule"
    )
    optimize: Literal["auto", "none", "compile"] = arg(
        "auto",
        help="compile: torch.compile the U-Net on a GPU (a minute to compile, then 1.4x"
        " faster at Stable Diffusion 1.5 size on an H200); auto: compile when a GPU makes"
        " at least 512 images in this run; none: never. The CPU never compiles",
    )
    batch_invariant: Literal["auto", "on", "off"] = arg(
        "auto",
        help="on: each image's pixels depend only on its prompt and seed, whatever the batch"
        " size or process count (exact on the CPU); auto: on for the CPU, off on a GPU (faster)",
    )

    def __post_init__(self) -> None:
        self.out = check_out_folder(self.out)
        if self.prompt is not None and self.prompts is not None:
            raise UnseeError("give --prompt or --prompts, not both")
        for name in ("n", "steps", "batch_size"):
            if getattr(self, name) < 1:
                raise UnseeError(f"--{name.replace('_', '-')} must be at least 1")
        if self.guidance < 0:
            raise UnseeError("--guidance must be >= 0")
        if not 0 <= self.seed < 2**32:
            raise UnseeError("--seed must lie in 0..2^32-1 (torch reads seeds mod 2^32)")
        for name in ("height", "width"):
            if getattr(self, name) is not None and getattr(self, name) < 8:
                raise UnseeError(f"--{name} must be at least 8")
        if self.sld != "off" and not self.sld_concept:
            raise UnseeError(f"--sld {self.sld} needs --sld-concept TEXT (what to steer away from)")
        if self.sld == "off" and self.sld_concept is not None:
            raise UnseeError("--sld-concept needs --sld weak|medium|strong|max")
        if self.sld != "off" and self.sega_remove:
            raise UnseeError("give --sld or --sega-remove, not both (one baseline at a time)")
        if any(not text for text in self.sega_remove):
            raise UnseeError("--sega-remove takes non-empty texts")
        if self.sega_scale < 0:
            raise UnseeError("--sega-scale must be >= 0")
        self.out = Path(self.out)
        self.embedding = [Path(p) for p in self.embedding]
        self.lora = None if self.lora is None else Path(self.lora)
