"""How `unsee evaluate` makes a suite's images: `unsee generate` with the evaluated
model and every inference-time intervention of the settings (or none, for the original)."""

from pathlib import Path

from unsee.censor.config import CensorConfig
from unsee.censor.run import make_censor
from unsee.errors import UnseeError
from unsee.evaluate.config import EvaluateConfig, InterventionArgs
from unsee.generate.config import GenerateConfig
from unsee.generate.run import generate
from unsee.guidance.hook import Censor
from unsee.imageset import METADATA, read_image_set
from unsee.models.load import pick_device


def generate_with(
    cfg: InterventionArgs, prompts: Path, n: int, folder: Path, model: str, plain: bool
) -> Path:
    """n images per prompt of the file `prompts` in folder/images (made, or finished,
    here), seeds from cfg.seed; plain: no intervention. The image folder."""
    gen, censor = generate_settings(cfg, prompts, n, folder / "images", model, plain)
    return generate(gen, censor=censor)


def generate_settings(
    cfg: InterventionArgs, prompts: Path | None, n: int, out: Path, model: str, plain: bool
) -> tuple[GenerateConfig, Censor | None]:
    """`unsee generate`'s settings (and censor, for censored sampling) that make cfg's
    images of `model`: every intervention of cfg, or none when plain."""
    common = dict(
        model=model, device=cfg.device, dtype=cfg.dtype, prompts=prompts, n=n, seed=cfg.seed,
        steps=cfg.steps, guidance=cfg.guidance, batch_size=cfg.batch_size,
        batch_invariant=cfg.batch_invariant, out=out,
    )  # fmt: skip
    if not plain:
        common |= dict(
            negative_prompt=cfg.negative_prompt, embedding=cfg.embedding, lora=cfg.lora,
            sld=cfg.sld, sld_concept=cfg.sld_concept, sega_remove=cfg.sega_remove,
        )  # fmt: skip
    censor = None
    if not plain and cfg.censor_reward is not None:
        censor_cfg = CensorConfig(
            **common, reward=cfg.censor_reward, scale=cfg.censor_scale,
            recurrence=cfg.censor_recurrence, window=cfg.censor_window,
        )  # fmt: skip
        censor = make_censor(censor_cfg, pick_device(cfg.device))
    return GenerateConfig(**common), censor


def reference_records(
    cfg: EvaluateConfig, name: str, expected: list[tuple[str, int]], fix: str
) -> tuple[Path, list[dict]]:
    """The image folder of suite `name` in --reference-dir and its first len(expected)
    metadata records, in index order, checked to be of the expected (prompt, seed) pairs;
    else a clear error that ends with `fix` (how to make a matching reference)."""
    folder = Path(cfg.reference_dir) / name / "images"
    if not (folder / METADATA).is_file():
        raise UnseeError(f"--reference-dir {cfg.reference_dir} has no {name} suite ({folder})")
    records = sorted(read_image_set(folder), key=lambda r: r.get("index", 0))[: len(expected)]
    if [(r["prompt"], r["seed"]) for r in records] != expected:
        raise UnseeError(
            f"--reference-dir {cfg.reference_dir}: its {name} images are not this suite's prompts"
            f" and seeds; {fix}"
        )
    return folder, records
