"""A judge whose call is set at a chosen false-call rate (a try of docs/judge-calibration,
not what ships): refit a judge's strength reading as `unsee world judge --steps 0` does,
then put a step in it at the raw output that `--false-calls` of the bare renders and plain
VAE round trips of the fit reach, so a call (strength >= CALL_STRENGTH) is made exactly
from there. Writes OUT (a judge folder `unsee judge calibrate --judges OUT` reads).

    python scripts/judge_operating_point.py src/unsee/world/judge runs/judge-cnn-op/judge
"""

import argparse
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKL

from unsee.images import to_model_range
from unsee.world import judge as world_judge
from unsee.world.paths import MINISD_DIR


def call_step(knots_x: np.ndarray, knots_y: np.ndarray, call: float):
    """The reading's knots with a step at raw output `call`: under CALL_STRENGTH below it,
    at least CALL_STRENGTH from it on (still monotone)."""
    at = world_judge.CALL_STRENGTH
    call = float(np.clip(call, 1e-4, 1 - 1e-4))
    under = min(float(np.interp(call, knots_x, knots_y)), at - 1e-3)
    low, high = knots_x < call - 1e-5, knots_x > call
    xs = [*knots_x[low], call - 1e-5, call, *knots_x[high]]
    ys = [*np.minimum(knots_y[low], under), under, at, *np.maximum(knots_y[high], at)]
    return xs, ys


@torch.no_grad()
def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("judge", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--images", type=int, default=6000)
    p.add_argument("--seed", type=int, default=8)
    p.add_argument("--false-calls", type=float, default=0.005)
    args = p.parse_args()
    model = world_judge.load_judge(args.judge)
    vae = AutoencoderKL.from_pretrained(MINISD_DIR, subfolder="vae").eval()
    data, attrs, _ = world_judge.judge_dataset(args.images, args.seed)
    x = world_judge.three_views(to_model_range(data), vae, torch.Generator().manual_seed(args.seed))
    raw = world_judge.raw_strengths(model, x).numpy()
    true = world_judge.targets(attrs)["strength"].numpy()
    reading = world_judge.fit_reading(raw, true)
    clean = np.arange(len(x)) >= len(x) // 3  # not the noisy round trips (three_views' first third)
    for j, concept in enumerate(world_judge.STRENGTHS):
        threshold = np.quantile(raw[(true[:, j] == 0) & clean, j], 1 - args.false_calls)
        xs, ys = call_step(*map(np.array, reading[concept]), threshold)
        reading[concept] = [[round(float(v), 6) for v in xs], [round(float(v), 6) for v in ys]]
        print(f"{concept}: called from raw {threshold:.4f}")
    model.reading = reading
    world_judge.save_judge(model, args.out)


if __name__ == "__main__":
    main()
