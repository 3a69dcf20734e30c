"""Image sets for benchmarks: prompts -> generated images, loaded back."""

import shutil
from pathlib import Path

import numpy as np

from unsee.errors import SettingsMismatch
from unsee.feedback.store import STORE_NAME
from unsee.generate.config import GenerateConfig
from unsee.generate.run import generate
from unsee.imageset import load_images, read_image_set


def make_set(
    folder: Path,
    prompts: list[str],
    seed: int,
    *,
    model: str = "minisd",
    steps: int = 25,
    guidance: float = 7.5,
    batch_size: int = 16,
    device: str = "auto",
    batch_invariant: str = "auto",
    censor=None,
    fresh: bool = False,
) -> tuple[list[dict], np.ndarray]:
    """Generate one image per prompt into folder/images; return the metadata records and
    the images (N, H, W, 3). censor: reward guidance (`unsee censor`).

    A folder made earlier from the same prompts and settings is kept and finished (so an
    interrupted benchmark resumes); one made otherwise, or any with `fresh` (a timed run),
    is replaced. What else lies in the folder (feedback, scores) is the caller's to keep
    or clear."""
    text = "\n".join(prompts) + "\n"
    listed = folder / "prompts.txt"
    if fresh or not listed.is_file() or listed.read_text() != text:
        shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    listed.write_text(text)
    config = GenerateConfig(
        model=model,
        device=device,
        prompts=folder / "prompts.txt",
        n=1,
        seed=seed,
        steps=steps,
        guidance=guidance,
        batch_size=batch_size,
        batch_invariant=batch_invariant,
        out=folder / "images",
    )
    try:
        out = generate(config, censor=censor)
    except SettingsMismatch:
        shutil.rmtree(folder / "images")
        out = generate(config, censor=censor)
    records = read_image_set(out)
    return records, load_images(out, records, None)


def drop_feedback(folder: Path) -> None:
    """Forget earlier runs' labels in an image folder (its images stay)."""
    for path in folder.glob(f"{STORE_NAME}*"):
        path.unlink()
