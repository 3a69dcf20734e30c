"""How often judges call a concept on generated images that do not show it: each judge
folder's rates of every artist's style and the watermark on an image folder (by default
the neutral prompts' images of the last `unsee bench world`, which show no style). With
--grid, the first 64 images with the first judge's strength of --concept written on each
and its calls outlined, to check the calls by eye.

    python scripts/judge_false_calls.py src/unsee/world/judge runs/judge-rank/judge \
        --images runs/bench-world/suites/neutral/images
"""

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from unsee.imageset import load_images, read_image_set
from unsee.world.judge import CALL_STRENGTH, STRENGTHS, judge_images, load_judge


def grid(images: np.ndarray, verdicts, concept: str, path: Path) -> None:
    tiles = []
    for image, verdict in zip(images[:64], verdicts, strict=False):
        tile = Image.fromarray(image).resize((96, 96), Image.NEAREST)
        draw = ImageDraw.Draw(tile)
        strength = verdict.strengths[concept]
        if strength >= CALL_STRENGTH:
            draw.rectangle([0, 0, 95, 95], outline=(255, 0, 255), width=3)
        draw.text((3, 3), f"{strength:.2f}", fill=(255, 0, 255))
        tiles.append(np.array(tile))
    tiles += [np.zeros_like(tiles[0])] * (-len(tiles) % 8)
    rows = [np.concatenate(tiles[k : k + 8], 1) for k in range(0, len(tiles), 8)]
    Image.fromarray(np.concatenate(rows, 0)).save(path)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("judges", type=Path, nargs="+")
    p.add_argument("--images", type=Path, default=Path("runs/bench-world/suites/neutral/images"))
    p.add_argument("--concept", default="watermark", choices=STRENGTHS)
    p.add_argument("--grid", type=Path, default=None, help="PNG of the first judge's calls")
    args = p.parse_args()
    images = load_images(args.images, read_image_set(args.images), None)
    for k, path in enumerate(args.judges):
        verdicts = judge_images(load_judge(path), images)
        styled = np.mean([v.style is not None for v in verdicts])
        each = {
            c: round(float(np.mean([v.strengths[c] >= CALL_STRENGTH for v in verdicts])), 3)
            for c in STRENGTHS
        }
        print(f"{path}: {len(images)} images, any style {styled:.3f}, each {each}")
        if k == 0 and args.grid is not None:
            grid(images, verdicts, args.concept, args.grid)


if __name__ == "__main__":
    main()
