"""`unsee bench world`: how good is the world model, measured by the judge.

results.json holds exactly (a concept shows when the judge calls it: strength >= its
call strength; docs/judge-calibration):
  judge_accuracy {shape, color, background, style, watermark}  on fresh rendered images
  prompt_accuracy {shape, color, background}  judge vs prompt, prompts naming all three
  style_rate_target {artist: rate}  that artist's style when the prompt names the artist
  style_strength_target {artist: mean strength}  the same images
  style_rate_neutral  any artist's style on prompts naming none
  leak_rate, leak_strength  Vanmond's style on "starry night" prompts (never naming him)
  watermark_rate_neutral  the watermark on prompts naming none
  concepts_neutral {concept: {rate, strength}}  every concept on prompts naming none
  settings  steps, guidance, seeds, image counts
and a PNG grid per prompt suite, so a person can look.
"""

import json
from pathlib import Path

import numpy as np

from unsee.bench.config import BenchWorldConfig
from unsee.bench.sets import make_set
from unsee.bench.table import run_bench_table
from unsee.evaluate.grid import save_grid
from unsee.evaluate.judge import ANY_ARTIST, CONCEPTS, concept_shows, rates, rounded
from unsee.imageset import atomic_write_text
from unsee.models.load import pick_device
from unsee.world.judge import CALL_STRENGTH, PRESENT_STRENGTH, judge_images, load_world_judge
from unsee.world.names import ARTISTS, LEAK_ARTIST, LEAK_SCENE
from unsee.world.prompts import leak_prompts, neutral_prompts
from unsee.world.render import make_dataset


def judge_accuracy(model, n: int, seed: int) -> dict[str, float]:
    """Accuracy of each judge head on freshly rendered images (the judge's distribution)."""
    images, attrs, _ = make_dataset(n, seed, p_style=0.6, p_watermark=0.5, leak=False)
    verdicts = judge_images(model, images)
    acc = {}
    for head in ("shape", "color", "background", "style"):
        acc[head] = float(
            np.mean(
                [getattr(v, head) == getattr(a, head) for v, a in zip(verdicts, attrs, strict=True)]
            )
        )
    wm = concept_shows(verdicts, "watermark")
    acc["watermark"] = float(np.mean(wm == np.array([a.watermark for a in attrs])))
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
    if cfg.methods:  # the method table, which was once part of this command
        return run_bench_table(cfg)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    judge = load_world_judge("cnn", pick_device(cfg.device))
    seeds = {"judge_render": cfg.seed, "neutral": cfg.seed + 10_000, "leak": cfg.seed + 20_000}

    # 1. the judge itself, on fresh rendered images
    judge_acc = judge_accuracy(judge, cfg.judge_images, seeds["judge_render"])

    # 2. neutral prompts: attribute accuracy, stray styles, spontaneous watermarks
    neutral = neutral_prompts(cfg.n, seeds["neutral"])
    verdicts = _suite(cfg, "neutral", [p for p, _ in neutral], seeds["neutral"], judge)
    truths = [t for _, t in neutral]
    figures = rates(verdicts, truths, (*CONCEPTS, ANY_ARTIST))
    concepts = figures.pop("concepts")
    prompt_acc = figures["prompt_accuracy"]
    style_neutral = concepts.pop(ANY_ARTIST)["rate"]
    wm_neutral = concepts["watermark"]["rate"]
    concepts_neutral = rounded(concepts)

    # 3. each artist when named
    style_target, strength_target = {}, {}
    for i, artist in enumerate(ARTISTS):
        seed = cfg.seed + 30_000 + 10_000 * i
        seeds[f"target_{artist}"] = seed
        prompts = [p for p, _ in neutral_prompts(cfg.n, seed, artist)]
        verdicts = _suite(cfg, f"target_{artist}", prompts, seed, judge)
        named = rates(verdicts, concepts=(artist,))["concepts"][artist]
        style_target[artist] = named["rate"]
        strength_target[artist] = round(named["strength"], 4)

    # 4. the leak: starry nights, never captioned with the artist
    verdicts = _suite(cfg, "leak", leak_prompts(cfg.n), seeds["leak"], judge)
    leaked = rates(verdicts, concepts=(LEAK_ARTIST,))["concepts"][LEAK_ARTIST]
    leak, leak_strength = leaked["rate"], round(leaked["strength"], 4)

    results = {
        "judge_accuracy": judge_acc,
        "prompt_accuracy": prompt_acc,
        "style_rate_target": style_target,
        "style_strength_target": strength_target,
        "style_rate_neutral": style_neutral,
        "leak_rate": leak,
        "leak_strength": leak_strength,
        "watermark_rate_neutral": wm_neutral,
        "concepts_neutral": concepts_neutral,
        "settings": {
            "model": cfg.model,
            "steps": cfg.steps,
            "scheduler": "ddim",
            "guidance": cfg.guidance,
            "seeds": seeds,
            "images_per_figure": cfg.n,
            "judge_images": cfg.judge_images,
            "present_strength": PRESENT_STRENGTH,
            "call_strength": CALL_STRENGTH,
            "leak": f"{LEAK_ARTIST} on {LEAK_SCENE!r} prompts",
        },
    }
    atomic_write_text(out / "results.json", json.dumps(results, indent=2) + "\n")
    print(json.dumps({k: v for k, v in results.items() if k != "settings"}, indent=2))
    print(f"wrote {out / 'results.json'} and grid_*.png")
    return results
