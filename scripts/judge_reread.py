"""Read image folders again with several judges: each judge's rate (strength >= the call
strength) and mean strength of one concept per folder, its rate of any artist's style and
of Brakovic's (the style the judges took partly erased swirls for), and, for starry nights, the sky
texture's apparent strength (scripts/leak_texture.py), a judge-free check on the leak.
With --reference (one folder per --images folder: the original model's images of the same
prompts and seeds, or - for none), also the share of the original's swirls each starry
night keeps (world.blends.sky_strength), a second judge-free check.
Prints a markdown table; with --json, writes every figure.

    python scripts/judge_reread.py OLD/judge src/unsee/world/judge OLD/judge_vit \
        src/unsee/world/judge_vit --texture --json docs/judge-calibration/reread.json \
        --images runs/table/eval/seed0/artist/*/leak/images \
        runs/pilot-fe/eval-neg_strip_pw4_eta15/leak/images runs/demo-fb/evaluate/erased/leak/images
"""

import argparse
import json
from pathlib import Path

import numpy as np
from leak_texture import render_curve, sky_texture

from unsee.evaluate.judge import ANY_ARTIST, concept_shows, concept_strengths
from unsee.images import to_model_range
from unsee.imageset import load_images, read_image_set
from unsee.world.blends import sky_strength
from unsee.world.judge import (
    CALL_STRENGTH,
    PRESENT_STRENGTH,
    STRENGTHS,
    judge_images,
    load_judge,
)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("judges", type=Path, nargs="+", help="judge folders")
    p.add_argument("--images", type=Path, nargs="+", required=True, help="image set folders")
    p.add_argument("--concept", default="Vanmond", choices=STRENGTHS)
    p.add_argument("--texture", action="store_true", help="add the sky texture's reading")
    p.add_argument("--reference", nargs="+", default=None,
                   help="per --images folder, the original's images of the same prompts and seeds"
                   " (- for none)")  # fmt: skip
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    references = args.reference or ["-"] * len(args.images)
    if len(references) != len(args.images):
        p.error("--reference needs one folder (or -) per --images folder")
    judges = {str(j): load_judge(j) for j in args.judges}
    if args.texture:
        curve = render_curve(64, 123)
        known, texture = np.array(list(curve)), np.array(list(curve.values()))
    rows = []
    for folder, reference in zip(args.images, references, strict=True):
        images = load_images(folder, read_image_set(folder), None)
        row = {"images": str(folder), "n": len(images)}
        for name, judge in judges.items():
            verdicts = judge_images(judge, images)
            row[name] = {
                "rate": float(concept_shows(verdicts, args.concept).mean()),
                "mean": float(concept_strengths(verdicts, args.concept).mean()),
                "any_style": float(concept_shows(verdicts, ANY_ARTIST).mean()),
                "Brakovic": float(concept_shows(verdicts, "Brakovic").mean()),
            }
        if args.texture:
            apparent = np.interp(sky_texture(images), texture, known)
            row["texture"] = {
                "mean": float(apparent.mean()),
                "at_0.2": float((apparent >= 0.2).mean()),
            }
        if reference != "-":
            original = load_images(Path(reference), read_image_set(Path(reference)), None)
            if original.shape != images.shape:
                p.error(
                    f"{reference} holds {len(original)} images, {folder} {len(images)}"
                    " (or their sizes differ): not the same prompts and seeds"
                )
            kept = sky_strength(to_model_range(images), to_model_range(original)).numpy()
            row["sky_strength"] = {
                "mean": float(kept.mean()),
                "at_0.2": float((kept >= PRESENT_STRENGTH).mean()),
                "at_call": float((kept >= CALL_STRENGTH).mean()),
            }
        rows.append(row)
    head = " | ".join(
        f"{Path(j).parent.name}/{Path(j).name} rate / mean / any style / Brakovic" for j in judges
    )
    extra = [k for k in ("texture", "sky_strength") if any(k in r for r in rows)]
    print(f"| images | n | {head} |" + "".join(f" {k} mean / share >= 0.2 |" for k in extra))
    print("|---|---|" + "---|" * (len(judges) + len(extra)))
    for r in rows:
        cells = " | ".join(
            f"{r[j]['rate']:.3f} / {r[j]['mean']:.3f} / {r[j]['any_style']:.3f} /"
            f" {r[j]['Brakovic']:.3f}"
            for j in judges
        )
        tex = "".join(
            f" {r[k]['mean']:.3f} / {r[k]['at_0.2']:.3f} |" if k in r else " |" for k in extra
        )
        print(f"| {r['images']} | {r['n']} | {cells} |{tex}")
    if args.json:
        args.json.write_text(json.dumps({"concept": args.concept, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
