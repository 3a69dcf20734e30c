"""`unsee censor`: generate with reward guidance (or rejection sampling) into an image folder.

With --retry, the images the reward still flags after guidance are sampled again
(censor/retry.py); with --reject, rejection sampling replaces guidance (censor/reject.py).

The folder is the one `unsee generate` writes (images/, metadata.jsonl, run.json), each
metadata line with the image's reward scores (unsee.guidance.hook): "reward", "reward_prob"
and "reward_members".
"""

from pathlib import Path

import torch

from unsee.censor.config import CensorConfig, generate_config
from unsee.censor.reject import reject_sample
from unsee.censor.retry import retry_flagged
from unsee.errors import UnseeError
from unsee.generate.run import generate
from unsee.guidance.hook import Censor
from unsee.guidance.reward_guidance import Guidance
from unsee.imageset import read_image_set
from unsee.models.load import pick_device
from unsee.reward.model import load_reward


def make_censor(cfg: CensorConfig, device: torch.device) -> Censor:
    reward = load_reward(cfg.reward, device)
    reward.config["path"] = str(cfg.reward)
    if reward.backbone == "noise-aware" and cfg.backward_steps:
        raise UnseeError("backward guidance needs a clean-image reward (clip or cnn backbone)")
    guidance = Guidance(
        scale=cfg.scale,
        backward_steps=cfg.backward_steps,
        backward_lr=cfg.backward_lr,
        window=(cfg.window[0], cfg.window[1]),
        schedule=cfg.schedule,
        through_unet=cfg.through_unet,
    )
    return Censor(reward, guidance, cfg.recurrence, cfg.checkpointing)


def censor(cfg: CensorConfig) -> Path:
    """Guided generation (or, with --reject, rejection sampling) into cfg.out."""
    if cfg.reject:
        return reject_sample(cfg)
    hook = make_censor(cfg, pick_device(cfg.device))
    out = generate(generate_config(cfg), censor=hook)
    if cfg.retry:
        retry_flagged(out, cfg, hook)
    _report(out)
    return out


def _report(out: Path) -> None:
    records = read_image_set(out)
    probs = [r["reward_prob"] for r in records if "reward_prob" in r]
    if probs:
        flagged = sum(p <= 0.5 for p in probs)
        share = flagged / len(probs)
        print(f"{len(records)} images in {out}; the reward flags {flagged} ({share:.1%})")
