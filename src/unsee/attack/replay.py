"""Replay: prompts found elsewhere (an I2P-layout CSV: a transfer attack, or a public set of
adversarial prompts such as UnlearnDiffAtk's or Ring-A-Bell's) sampled as they are with the
attacked model, each row at its own seed and guidance; the rate is the share the detector
flags."""

from pathlib import Path

from unsee.generate.prompts import read_prompts
from unsee.generate.run import Job, plan_jobs


def replay_jobs(path: Path, n: int, seed: int, guidance: float) -> list[Job]:
    """The file's first n rows as images to make, as `unsee generate --prompts FILE` plans
    them (a row's evaluation_seed and evaluation_guidance win over seed + index and guidance)."""
    return plan_jobs(read_prompts(path)[:n], 1, seed, guidance)
