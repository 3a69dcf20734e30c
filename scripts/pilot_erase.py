"""One erasure pilot on minisd: `unsee erase` with the options given, then `unsee evaluate`
on the target, leak and neutral suites, and the figures the pilots in docs/bench-erase and
docs/bench-world-table are written in (style on the target and leak suites, the watermark
and prompt accuracy on neutral prompts, the other artists' styles, the erase's seconds).

    python scripts/pilot_erase.py --out runs/pilot-erase/hfi-lr3e-4 --concept Vanmond \\
        -- --embedding runs/bench-erase/Vanmond/token.safetensors --concept Vanmond \\
           --preserve runs/bench-erase/Vanmond/keep.txt --lr 3e-4 --iterations 300 --batch 2

Everything after `--` goes to `unsee erase` as written (its --out is OUT/model). A rerun
with the same --out reuses the finished model and evaluation.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--concept", default="Vanmond", help="what the suites look for")
    parser.add_argument("--n", type=int, default=100, help="images per suite")
    parser.add_argument("--seed", type=int, default=7_000_000, help="evaluate's first seed")
    parser.add_argument("erase", nargs=argparse.REMAINDER, help="-- then `unsee erase` options")
    args = parser.parse_args()
    erase_args = args.erase[1:] if args.erase[:1] == ["--"] else args.erase
    model, evaluation = args.out / "model", args.out / "eval"
    unsee = [sys.executable, "-m", "unsee"]
    if not (model / "erase.json").is_file():
        subprocess.run([*unsee, "erase", *erase_args, "--out", str(model)], check=True)
    if not (evaluation / "results.json").is_file():
        subprocess.run(
            [*unsee, "evaluate", "--model", str(model), "--concept", args.concept,
             "--suite", "target", "leak", "neutral", "--n", str(args.n),
             "--seed", str(args.seed), "--out", str(evaluation)],
            check=True,
        )  # fmt: skip
    suites = json.loads((evaluation / "results.json").read_text())["suites"]
    erase = json.loads((model / "erase.json").read_text())

    def mean(suite: str, key: str) -> float:
        return round(suites[suite][key]["mean"], 3)

    neutral = "neutral"
    row = {
        "erase": " ".join(erase_args),
        "erase_seconds": erase["seconds"],
        "style_target": mean("target", "concept_rate"),
        "style_leak": mean("leak", "concept_rate"),
        "watermark": mean(neutral, "watermark_rate"),
        **{
            f"accuracy_{a}": mean(neutral, f"prompt_accuracy_{a}")
            for a in ("shape", "color", "background")
        },
        **{f"style_{k[5:]}": mean(neutral, k) for k in suites[neutral] if k.startswith("rate_")},
    }
    (args.out / "summary.json").write_text(json.dumps(row, indent=1) + "\n")
    print(json.dumps(row, indent=1))


if __name__ == "__main__":
    main()
