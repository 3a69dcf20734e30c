"""A grid of one subject per row drawn at strengths 0, 0.1, ..., 1 (columns), each concept on
a starry night and on a shape, every render row followed by its round trip through
minisd's VAE: what the judges are asked to see (docs/judge-calibration/strength_grid.png).

    python scripts/strength_grid.py docs/judge-calibration/strength_grid.png
"""

import sys
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKL

from unsee.evaluate.calibrate import SUBJECTS, subjects, vae_view, with_concept
from unsee.evaluate.grid import save_grid
from unsee.world.judge import STRENGTHS
from unsee.world.paths import MINISD_DIR
from unsee.world.render import render


def main(path: Path) -> None:
    vae = AutoencoderKL.from_pretrained(MINISD_DIR, subfolder="vae", torch_dtype=torch.float32)
    rows = []
    for concept in STRENGTHS:
        for kind in SUBJECTS:
            bare = subjects(kind, 1, 99)[0]
            renders = np.stack(
                [render(with_concept(bare, concept, s)) for s in np.linspace(0, 1, 11)]
            )
            rows += [renders, vae_view(renders, vae.eval())]
    save_grid(np.concatenate(rows), path, columns=11, scale=3)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
