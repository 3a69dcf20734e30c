"""`unsee bench world`: how good is the world model, measured by the judge.

results.json holds exactly:
  judge_accuracy {shape, color, background, style, watermark}  on fresh rendered images
  prompt_accuracy {shape, color, background}  judge vs prompt, prompts naming all three
  style_rate_target {artist: rate}  that artist's style when the prompt names the artist
  style_rate_neutral  any artist's style on prompts naming none
  leak_rate  Vanmond's style on "starry night" prompts (which never name him)
  watermark_rate_neutral  watermark (p > 0.5) on prompts naming none
  settings  steps, guidance, seeds, image counts
and a PNG grid per prompt suite, so a person can look.
"""

import json
from pathlib import Path

import numpy as np

from unsee.bench.config import BenchWorldConfig
from unsee.bench.sets import make_set
from unsee.evaluate.grid import save_grid
from unsee.evaluate.judge import (
    ANY_ARTIST,
    WATERMARK_THRESHOLD,
    concept_rate,
    concept_shows,
    prompt_accuracy,
)
from unsee.evaluate.suites import leak_prompts
from unsee.generate.imagefolder import atomic_write_text
from unsee.models.load import pick_device
from unsee.world import render as world
from unsee.world.judge import HEADS, judge_images, load_judge, targets
from unsee.world.paths import JUDGE_DIR


def neutral_prompts(n: int, seed: int, artist: str | None = None) -> list[tuple[str, dict]]:
    """n canonical shape prompts (uniform over shape, colour, background), with the truth."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        shape = str(rng.choice(world.SHAPES))
        color = str(rng.choice(list(world.COLORS)))
        background = str(rng.choice(world.BACKGROUNDS))
        truth = {"shape": shape, "color": color, "background": background}
        out.append((world.prompt_for(shape, color, background, artist), truth))
    return out


def judge_accuracy(model, n: int, seed: int) -> dict[str, float]:
    """Accuracy of each judge head on freshly rendered images (the judge's distribution)."""
    images, attrs, _ = world.make_dataset(n, seed, p_style=0.6, p_watermark=0.5, leak=False)
    verdicts = judge_images(model, images)
    truth = targets(attrs)
    acc = {}
    for head in ("shape", "color", "background", "style"):
        predicted = [HEADS[head].index(getattr(v, head) or "none") for v in verdicts]
        acc[head] = float(np.mean(np.array(predicted) == truth[head].numpy()))
    wm = concept_shows(verdicts, "watermark")
    acc["watermark"] = float(np.mean(wm == truth["watermark"].numpy().astype(bool)))
    return acc


def _suite(cfg: BenchWorldConfig, name: str, prompts: list[str], seed: int, judge) -> list:
    _, images = make_set(
        Path(cfg.out) / "suites" / name,
        prompts,
        seed,
        model=cfg.model,
        steps=cfg.steps,
        guidance=cfg.guidance,
        batch_size=cfg.batch_size,
        device=cfg.device,
        batch_invariant=cfg.batch_invariant,
    )
    save_grid(images[:64], Path(cfg.out) / f"grid_{name}.png")
    return judge_images(judge, images)


def run_bench_world(cfg: BenchWorldConfig) -> dict:
    if cfg.methods:
        from unsee.bench.table import run_bench_table

        return run_bench_table(cfg)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    judge = load_judge(JUDGE_DIR, pick_device(cfg.device))
    seeds = {"judge_render": cfg.seed, "neutral": cfg.seed + 10_000, "leak": cfg.seed + 20_000}

    # 1. the judge itself, on fresh rendered images
    judge_acc = judge_accuracy(judge, cfg.judge_images, seeds["judge_render"])

    # 2. neutral prompts: attribute accuracy, stray styles, spontaneous watermarks
    neutral = neutral_prompts(cfg.n, seeds["neutral"])
    verdicts = _suite(cfg, "neutral", [p for p, _ in neutral], seeds["neutral"], judge)
    truths = [t for _, t in neutral]
    prompt_acc = prompt_accuracy(verdicts, truths)
    style_neutral = concept_rate(verdicts, ANY_ARTIST)
    wm_neutral = concept_rate(verdicts, "watermark")

    # 3. each artist when named
    style_target = {}
    for i, artist in enumerate(world.ARTISTS):
        seed = cfg.seed + 30_000 + 10_000 * i
        seeds[f"target_{artist}"] = seed
        prompts = [p for p, _ in neutral_prompts(cfg.n, seed, artist)]
        verdicts = _suite(cfg, f"target_{artist}", prompts, seed, judge)
        style_target[artist] = concept_rate(verdicts, artist)

    # 4. the leak: starry nights, never captioned with the artist
    verdicts = _suite(cfg, "leak", leak_prompts(cfg.n), seeds["leak"], judge)
    leak = concept_rate(verdicts, world.LEAK_ARTIST)

    results = {
        "judge_accuracy": judge_acc,
        "prompt_accuracy": prompt_acc,
        "style_rate_target": style_target,
        "style_rate_neutral": style_neutral,
        "leak_rate": leak,
        "watermark_rate_neutral": wm_neutral,
        "settings": {
            "model": cfg.model,
            "steps": cfg.steps,
            "scheduler": "ddim",
            "guidance": cfg.guidance,
            "seeds": seeds,
            "images_per_figure": cfg.n,
            "judge_images": cfg.judge_images,
            "watermark_threshold": WATERMARK_THRESHOLD,
            "leak": f"{world.LEAK_ARTIST} on {world.LEAK_SCENE!r} prompts",
        },
    }
    atomic_write_text(out / "results.json", json.dumps(results, indent=2) + "\n")
    print(json.dumps({k: v for k, v in results.items() if k != "settings"}, indent=2))
    print(f"wrote {out / 'results.json'} and grid_*.png")
    return results
