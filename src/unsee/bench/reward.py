"""`unsee bench reward`: how well rewards learn from a few simulated labels.

On minisd, with the judge as the simulated person and as the truth on fresh images:
- watermark_clip_auc: clip ensemble (K=5) from 10 bad + 10 good labels;
- watermark_cnn_auc: cnn ensemble (K=5, augmented) from 20 bad + 20 good labels;
  both on `eval_images` fresh images from neutral prompts;
- style_rank_auc: clip ensemble, Bradley-Terry, from 10 rankings of 5 images, on fresh
  images from a mix of the artist's prompts and others;
- clip_ensemble_train_seconds: the clip ensemble on 200 labels, feature extraction
  included (cold cache), cross-validation off.
AUC: the reward's -score ranks images showing the concept (per the judge) above the rest.
"""

import json
import shutil
import time
from pathlib import Path

import numpy as np

from unsee.bench.config import BenchRewardConfig
from unsee.bench.sets import drop_feedback, make_set
from unsee.evaluate.judge import concept_shows
from unsee.feedback.config import FeedbackSimulateConfig
from unsee.feedback.simulate import simulate
from unsee.imageset import atomic_write_text
from unsee.models.load import pick_device
from unsee.reward.config import RewardTrainConfig
from unsee.reward.metrics import auc
from unsee.reward.model import load_reward
from unsee.reward.train import train_reward
from unsee.world.judge import judge_images, load_world_judge
from unsee.world.prompts import neutral_prompts, style_mix


def _auc(reward_dir: Path, images: np.ndarray, positive: np.ndarray, device) -> float:
    reward = load_reward(reward_dir, device)
    log_prob = -np.logaddexp(0, -reward.score_images(images)).sum(-1)
    return auc(-log_prob, positive)


def run_bench_reward(cfg: BenchRewardConfig) -> dict:
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    device = pick_device(cfg.device)
    judge = load_world_judge("cnn", device)
    gen = {"steps": cfg.steps, "device": cfg.device}

    # 1. image sets: labelling pools and fresh evaluation sets
    pool = out / "pool-neutral"
    make_set(pool, [p for p, _ in neutral_prompts(240, cfg.seed)], cfg.seed, **gen)
    _, eval_neutral = make_set(
        out / "eval-neutral",
        [p for p, _ in neutral_prompts(cfg.eval_images, cfg.seed + 1)],
        cfg.seed + 10_000,
        **gen,
    )
    style_pool = out / "pool-style"
    make_set(style_pool, style_mix(60, cfg.seed + 2, cfg.artist), cfg.seed + 20_000, **gen)
    _, eval_style = make_set(
        out / "eval-style",
        style_mix(cfg.eval_images, cfg.seed + 3, cfg.artist),
        cfg.seed + 30_000,
        **gen,
    )
    for folder in (pool, style_pool):
        drop_feedback(folder / "images")
    wm_truth = concept_shows(judge_images(judge, eval_neutral), "watermark")
    style_verdicts = judge_images(judge, eval_style)
    style_truth = concept_shows(style_verdicts, cfg.artist)

    def reward(folder: Path, name: str, **kw) -> Path:
        return train_reward(
            RewardTrainConfig(dir=folder / "images", out=out / name, device=cfg.device, **kw)
        )

    def sim(folder: Path, annotator: str, **kw) -> dict:
        return simulate(
            FeedbackSimulateConfig(
                dir=folder / "images", annotator=annotator, device=cfg.device, **kw
            )
        )

    # 2. watermark: clip from 10 + 10, cnn from 20 + 20
    counts = {
        "clip": sim(pool, "sim-20", concept="watermark", budget=20, balanced=True),
        "cnn": sim(pool, "sim-40", concept="watermark", budget=40, balanced=True),
    }
    clip_dir = reward(pool, "watermark-clip", annotator="sim-20")
    cnn_dir = reward(pool, "watermark-cnn", annotator="sim-40", backbone="cnn", augment=True)

    # 3. the artist's style from 10 rankings of 5
    counts["rank"] = sim(style_pool, "sim-rank", concept=cfg.artist, mode="rank", budget=10)
    rank_dir = reward(style_pool, "style-rank", annotator="sim-rank")

    # 4. speed: a clip ensemble on 200 labels, cold feature cache
    counts["speed"] = sim(pool, "sim-200", concept="watermark", budget=200)
    shutil.rmtree(pool / "images" / ".unsee-cache", ignore_errors=True)
    start = time.perf_counter()
    reward(pool, "speed-clip", annotator="sim-200", cv_folds=0)
    train_seconds = time.perf_counter() - start

    results = {
        "watermark_clip_auc": _auc(clip_dir, eval_neutral, wm_truth, device),
        "watermark_cnn_auc": _auc(cnn_dir, eval_neutral, wm_truth, device),
        "style_rank_auc": _auc(rank_dir, eval_style, style_truth, device),
        "clip_ensemble_train_seconds": round(train_seconds, 2),
        "settings": {
            "eval_images": cfg.eval_images,
            "eval_watermark_rate": float(wm_truth.mean()),
            "eval_style_rate": float(style_truth.mean()),
            "artist": cfg.artist,
            "labels": counts,
            "ensemble": 5,
            "steps": cfg.steps,
            "seeds_from": cfg.seed,
            "cross_validation": {
                name: json.loads((out / name / "report.json").read_text())["cross_validation"]
                for name in ("watermark-clip", "watermark-cnn", "style-rank")
            },
        },
    }
    atomic_write_text(out / "results.json", json.dumps(results, indent=2) + "\n")
    print(json.dumps({k: v for k, v in results.items() if k != "settings"}, indent=2))
    return results
