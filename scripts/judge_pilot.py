"""Pilot a cheaper world judge: the judge and judge_gen stages of `unsee world train` with the
shipped minisd, at a given step count and network width, timed, then each head's accuracy
on 2000 fresh renders for seeds 0, 1 and 2 (as `unsee bench world` measures it).

    python scripts/judge_pilot.py --steps 2000 --out runs/judge-pilot/s2000
    python scripts/judge_pilot.py --width 32 --out runs/judge-pilot/w32

Writes OUT/result.json. Figures of 2026-11-23: docs/world-judge-pilots.json.
"""

import argparse
import json
import time
import types
from pathlib import Path

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTokenizer

from unsee.bench.world import judge_accuracy
from unsee.world import judge as world_judge
from unsee.world.config import WorldTrainConfig
from unsee.world.paths import MINISD_DIR
from unsee.world.train import stage_judge_gen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=WorldTrainConfig.judge_steps)
    parser.add_argument("--width", type=int, default=WorldTrainConfig.judge_width)
    args = parser.parse_args()
    cfg = WorldTrainConfig(out=args.out, judge_steps=args.steps)
    device = torch.device("cpu")
    vae = AutoencoderKL.from_pretrained(MINISD_DIR / "vae").eval()
    seconds = {}
    start = time.time()
    if not (args.out / "judge" / "model.safetensors").exists():
        world_judge.train_judge(
            args.out / "judge",
            cfg.seed + 4,
            cfg.judge_images,
            args.steps,
            128,
            device,
            vae,
            args.width,
        )
    seconds["judge"] = round(time.time() - start, 1)
    unet = UNet2DConditionModel.from_pretrained(MINISD_DIR / "unet").eval()
    text = CLIPTextModel.from_pretrained(MINISD_DIR / "text_encoder").eval()
    tokenizer = CLIPTokenizer.from_pretrained(MINISD_DIR / "tokenizer")
    start = time.time()
    clip = types.SimpleNamespace(text_model=text)  # the stage reads only the text tower
    stage_judge_gen(
        cfg, args.out / "judge_gen", args.out / "judge", vae, unet, clip, tokenizer, device
    )
    seconds["judge_gen"] = round(time.time() - start, 1)
    model = world_judge.load_judge(args.out / "judge_gen")
    accuracy = {seed: judge_accuracy(model, 2000, seed) for seed in (0, 1, 2)}
    result = {"steps": args.steps, "width": args.width, "seconds": seconds, "accuracy": accuracy}
    (args.out / "result.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
