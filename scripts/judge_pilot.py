"""Pilot a cheaper world judge: `unsee world judge` (the judge and judge_gen stages of
`unsee world train`, against the shipped minisd) at a given step count, network width and
architecture, timed, then each head's accuracy on 2000 fresh renders for seeds 0, 1 and 2
(as `unsee bench world` measures it). The figures of 2026-11-23 were made by this script
before the judge read strengths, with the stages then inside `unsee world train`.

    python scripts/judge_pilot.py --steps 2000 --out runs/judge-pilot/s2000
    python scripts/judge_pilot.py --width 32 --out runs/judge-pilot/w32

Writes OUT/result.json. Figures of 2026-11-23: docs/world-judge-pilots.json.
"""

import argparse
import json
from pathlib import Path

import torch

from unsee.bench.world import judge_accuracy
from unsee.world import judge as world_judge
from unsee.world.config import WorldJudgeConfig
from unsee.world.train import train_world_judge


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=WorldJudgeConfig.steps)
    parser.add_argument("--width", type=int, default=None)
    parser.add_argument("--arch", default="cnn", choices=["cnn", "vit"])
    args = parser.parse_args()
    cfg = WorldJudgeConfig(
        out=args.out, steps=args.steps, width=args.width, arch=args.arch, device="cpu"
    )
    train_world_judge(cfg)  # the stages `unsee world judge` runs, timed in train_log.json
    seconds = json.loads((args.out / "train_log.json").read_text())["seconds"]
    model = world_judge.load_judge(args.out / "judge", torch.device("cpu"))
    accuracy = {seed: judge_accuracy(model, 2000, seed) for seed in (0, 1, 2)}
    result = {"steps": args.steps, "width": args.width, "arch": args.arch, "seconds": seconds,
              "accuracy": accuracy}  # fmt: skip
    (args.out / "result.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
