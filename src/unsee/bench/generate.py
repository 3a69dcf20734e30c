"""`unsee bench generate`: wall time of `unsee generate` on this machine.

Times the same job batch-invariant (each image through the networks on its own) and
batched, and writes results.json. --model tiny builds a random tiny Stable Diffusion from
config; --model minisd measures the embedded world model.
"""

import json
import shutil
import time
from pathlib import Path

from unsee.bench.config import BenchGenerateConfig
from unsee.env import env_report
from unsee.generate.config import GenerateConfig
from unsee.generate.run import generate
from unsee.imageset import atomic_write_text
from unsee.models.tiny import tiny_sd_pipeline

PROMPTS = ["a red circle on grass", "a blue square in the desert", "a starry night", "a cat"]


def run_bench_generate(cfg: BenchGenerateConfig) -> dict:
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.model == "tiny":
        model = str(out / "tiny-sd")
        tiny_sd_pipeline(seed=0, image_size=cfg.image_size).save_pretrained(model)
    else:
        model = cfg.model
    prompts = out / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    results = {}
    for mode in ("on", "off"):
        images = out / f"images-batch-invariant-{mode}"
        shutil.rmtree(images, ignore_errors=True)
        gen = GenerateConfig(
            model=model,
            device="cpu",
            prompts=prompts,
            n=cfg.n // len(PROMPTS),
            steps=cfg.steps,
            batch_size=cfg.batch_size,
            batch_invariant=mode,
            out=images,
        )
        start = time.perf_counter()
        generate(gen)
        seconds = time.perf_counter() - start
        count = gen.n * len(PROMPTS)
        results[f"batch_invariant_{mode}"] = {
            "seconds": round(seconds, 3),
            "images": count,
            "images_per_second": round(count / seconds, 2),
        }
    report = {
        "benchmark": "generate",
        "settings": {
            "model": "tiny Stable Diffusion built from config (models/tiny.py)"
            if cfg.model == "tiny"
            else cfg.model,
            "steps": cfg.steps,
            "batch_size": cfg.batch_size,
            "image_size": cfg.image_size if cfg.model == "tiny" else "the model's",
            "scheduler": "ddim",
            "guidance": 7.5,
            "timing": "wall time of generate(), model loading and PNG writing included",
        },
        "results": results,
        "env": env_report(),
    }
    atomic_write_text(out / "results.json", json.dumps(report, indent=2) + "\n")
    for mode, r in results.items():
        print(
            f"{mode:20s} {r['images']} images in {r['seconds']:.2f} s ({r['images_per_second']}/s)"
        )
    print(f"wrote {out / 'results.json'}")
    return report
