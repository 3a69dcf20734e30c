"""`unsee reward score R DIR`: DIR/reward.jsonl, one line per image.

{"file_name", "score": sum_i log sigmoid(r_i) (log P(benign), higher is better),
 "p_bad": 1 - mean_i sigmoid(r_i), "scores": [r_i]}; the labelling page orders by it
(`unsee label DIR --order uncertain|bad-first`).
"""

import json
from pathlib import Path

import numpy as np

from unsee.imageset import atomic_write_text, load_images, read_image_set
from unsee.models.load import pick_device
from unsee.reward.config import RewardScoreConfig
from unsee.reward.model import load_reward, p_bad

SCORES = "reward.jsonl"


def score_folder(cfg: RewardScoreConfig) -> Path:
    reward = load_reward(cfg.reward, pick_device(cfg.device))
    records = read_image_set(cfg.dir)
    logits = reward.score_images(load_images(cfg.dir, records, None))  # (N, K)
    log_prob = -np.logaddexp(0, -logits)  # log sigmoid
    bad = p_bad(logits)
    lines = [
        json.dumps(
            {
                "file_name": r["file_name"],
                "score": round(float(lp.sum()), 5),
                "p_bad": round(float(pb), 5),
                "scores": [round(float(x), 5) for x in lg],
            }
        )
        + "\n"
        for r, lp, pb, lg in zip(records, log_prob, bad, logits, strict=True)
    ]
    path = Path(cfg.dir) / SCORES
    atomic_write_text(path, "".join(lines))
    print(f"scored {len(lines)} images: {path} (mean p_bad {float(bad.mean()):.3f})")
    return path


def p_bad_by_file(
    folder: Path, reward: Path, device: str = "auto", skip: set[str] = frozenset()
) -> dict[str, float]:
    """file_name -> the reward's P(bad) for every image in `folder` (but those in `skip`)."""
    records = [r for r in read_image_set(folder) if r["file_name"] not in skip]
    if not records:
        return {}
    logits = load_reward(reward, pick_device(device)).score_images(
        load_images(folder, records, None)
    )
    return {r["file_name"]: float(b) for r, b in zip(records, p_bad(logits), strict=True)}


def benign_prompts(folder: Path, reward: Path, device: str = "auto") -> list[str]:
    """The prompts (each once, in folder order) of the images in `folder` the reward scores
    benign (p_bad < 0.5): what `unsee erase --preserve` should keep."""
    records = read_image_set(folder)
    bad = p_bad_by_file(folder, reward, device)
    return list(dict.fromkeys(r["prompt"] for r in records if bad[r["file_name"]] < 0.5))
