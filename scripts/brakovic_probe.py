"""Why a judge calls Brakovic on partly erased starry nights: its mean Vanmond and
Brakovic strengths on a folder of starry nights as they are, lit by a factor, with the sky
smoothed (world.blends.destyle_sky), and the folders' mean colour beside another's
(docs/judge-calibration, "Generated blends, and the judges' Brakovic").

    python scripts/brakovic_probe.py OLD/judge runs/demo-fb/evaluate/erased/leak/images \
        --beside runs/demo-fb/evaluate/original/leak/images
"""

import argparse
from pathlib import Path

import torch

from unsee.images import to_model_range
from unsee.imageset import load_images, read_image_set
from unsee.world.blends import destyle_sky
from unsee.world.judge import STRENGTHS, load_judge, raw_strengths, read_strengths


def images(folder: Path) -> torch.Tensor:
    return to_model_range(load_images(folder, read_image_set(folder), None))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("judge", type=Path)
    p.add_argument("images", type=Path)
    p.add_argument("--beside", type=Path, default=None, help="a folder to compare colours with")
    p.add_argument("--light", type=float, nargs="+", default=[0.85, 1.15, 1.3])
    args = p.parse_args()
    judge = load_judge(args.judge)
    x = images(args.images)

    def read(label: str, y: torch.Tensor) -> None:
        s = read_strengths(judge, raw_strengths(judge, y))
        v, b = s[:, STRENGTHS.index("Vanmond")], s[:, STRENGTHS.index("Brakovic")]
        print(f"{label}: Vanmond {v.mean():.3f}, Brakovic {b.mean():.3f} (mean strengths)")

    read("as they are", x)
    for factor in args.light:
        read(f"lit x{factor:g}", (((x + 1) * factor) - 1).clamp(-1, 1))
    read("sky smoothed", destyle_sky(x))
    colour = ((x + 1) / 2).mean((0, 2, 3))
    print(f"mean colour (r, g, b): {[round(c, 3) for c in colour.tolist()]}")
    if args.beside is not None:
        other = ((images(args.beside) + 1) / 2).mean((0, 2, 3))
        print(f"beside {args.beside}: {[round(c, 3) for c in other.tolist()]}")


if __name__ == "__main__":
    main()
