"""Fresh image sets for benchmarks: prompts -> generated images, loaded back."""

import shutil
from pathlib import Path

import numpy as np

from unsee.evaluate.judge import load_images, read_image_set
from unsee.generate.config import GenerateConfig
from unsee.generate.run import generate


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
) -> tuple[list[dict], np.ndarray]:
    """Generate one image per prompt into folder/images (from scratch); return the
    metadata records and the images (N, H, W, 3). censor: reward guidance (`unsee censor`)."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    (folder / "prompts.txt").write_text("\n".join(prompts) + "\n")
    out = generate(
        GenerateConfig(
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
        ),
        censor=censor,
    )
    records = read_image_set(out)
    return records, load_images(out, records, None)
