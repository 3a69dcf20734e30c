"""Where two judges' rates part: for each image folder, both judges' rates and mean
strengths of one concept, the share of images the two call on opposite sides of the call
strength, how far apart the two readings of those images are, and the share of images whose
readings lie near the call strength (within 0.05 either way, by either judge).

A rate is a count of readings above CALL_STRENGTH. Where a folder's readings crowd round it
(partly erased images), two judges that agree on every image to within a few hundredths
still call different shares of the folder. This prints how much of each folder's rate gap
comes from such near-threshold images.

    python scripts/judge_agreement.py src/unsee/world/judge src/unsee/world/judge_vit \
        --json docs/judge-calibration/agreement.json \
        --images runs/table-v4/eval/seed0/artist/*/leak/images ...
"""

import argparse
import json
from pathlib import Path

import numpy as np

from unsee.evaluate.judge import concept_shows, concept_strengths
from unsee.imageset import load_images, read_image_set
from unsee.world.judge import CALL_STRENGTH, STRENGTHS, Verdict, judge_images, load_judge

NEAR = 0.05  # a reading this close to the call strength is "near" it


def agreement(first: list[Verdict], second: list[Verdict], concept: str) -> dict:
    """Figures for two judges' verdicts on the same images."""
    a, b = concept_strengths(first, concept), concept_strengths(second, concept)
    call_a, call_b = concept_shows(first, concept), concept_shows(second, concept)
    split = call_a != call_b
    near = (np.abs(a - CALL_STRENGTH) < NEAR) | (np.abs(b - CALL_STRENGTH) < NEAR)
    return {
        "n": int(a.size),
        "rate_a": float(call_a.mean()),
        "rate_b": float(call_b.mean()),
        "rate_gap": float(call_b.mean() - call_a.mean()),
        "strength_a": float(a.mean()),
        "strength_b": float(b.mean()),
        "strength_gap": float(b.mean() - a.mean()),
        "mean_abs_difference": float(np.abs(a - b).mean()),
        "split_share": float(split.mean()),
        # how far apart the two readings are on the images called differently
        "split_median_difference": float(np.median(np.abs(a - b)[split])) if split.any() else 0.0,
        "split_within_0.1": float((split & (np.abs(a - b) < 0.1)).mean()),
        "near_share": float(near.mean()),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("judges", type=Path, nargs=2, help="two judge folders")
    p.add_argument("--images", type=Path, nargs="+", required=True, help="image set folders")
    p.add_argument("--concept", default="Vanmond", choices=STRENGTHS)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    judges = [load_judge(j) for j in args.judges]
    rows = []
    for folder in args.images:
        images = load_images(folder, read_image_set(folder), None)
        first, second = (judge_images(j, images) for j in judges)
        rows.append({"images": str(folder), **agreement(first, second, args.concept)})
    names = ["rate a / b", "strength a / b", "mean |a-b|", "split", "split |a-b| (median)",
             "split within 0.1", "near the call"]  # fmt: skip
    print(f"a = {args.judges[0]}, b = {args.judges[1]}, concept {args.concept}")
    print("| images | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for r in rows:
        cells = [
            f"{r['rate_a']:.2f} / {r['rate_b']:.2f}",
            f"{r['strength_a']:.2f} / {r['strength_b']:.2f}",
            f"{r['mean_abs_difference']:.3f}",
            f"{r['split_share']:.2f}",
            f"{r['split_median_difference']:.3f}",
            f"{r['split_within_0.1']:.2f}",
            f"{r['near_share']:.2f}",
        ]
        print(f"| {r['images']} | " + " | ".join(cells) + " |")
    if args.json:
        settings = {"judges": [str(j) for j in args.judges], "concept": args.concept,
                    "call_strength": CALL_STRENGTH, "near": NEAR}  # fmt: skip
        args.json.write_text(json.dumps({"settings": settings, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
