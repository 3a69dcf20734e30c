"""Image grids for people to look at."""

from pathlib import Path

import numpy as np
from PIL import Image


def save_grid(images: np.ndarray, path: Path, columns: int = 8, scale: int = 3) -> Path:
    """Tile (N, H, W, 3) uint8 images with 1px white gaps, enlarge `scale`x, save as PNG."""
    n, h, w, _ = images.shape
    rows = -(-n // columns)
    canvas = np.full((rows * (h + 2), columns * (w + 2), 3), 255, np.uint8)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        canvas[r * (h + 2) + 1 : r * (h + 2) + 1 + h, c * (w + 2) + 1 : c * (w + 2) + 1 + w] = image
    big = Image.fromarray(canvas).resize(
        (canvas.shape[1] * scale, canvas.shape[0] * scale), Image.NEAREST
    )
    big.save(path)
    return path
