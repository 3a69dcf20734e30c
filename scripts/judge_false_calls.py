"""How often judges call a concept on generated images that do not show it: each judge
folder's rates of every artist's style and the watermark on an image folder (by default
the neutral prompts' images of the last `unsee bench world`, which show no style).

    python scripts/judge_false_calls.py src/unsee/world/judge runs/judge-rank/judge \
        --images runs/bench-world/suites/neutral/images
"""

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from unsee.world.judge import CALL_STRENGTH, STRENGTHS, judge_images, load_judge


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("judges", type=Path, nargs="+")
    p.add_argument("--images", type=Path, default=Path("runs/bench-world/suites/neutral/images"))
    args = p.parse_args()
    files = sorted((args.images / "images").glob("*.png"))
    images = np.stack([np.array(Image.open(f).convert("RGB")) for f in files])
    for path in args.judges:
        verdicts = judge_images(load_judge(path), images)
        styled = np.mean([v.style is not None for v in verdicts])
        each = {
            c: round(float(np.mean([v.strengths[c] >= CALL_STRENGTH for v in verdicts])), 3)
            for c in STRENGTHS
        }
        print(f"{path}: {len(images)} images, any style {styled:.3f}, each {each}")


if __name__ == "__main__":
    main()
