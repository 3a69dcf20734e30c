"""Feedback from the store as training data: labelled images, or rankings."""

from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from unsee.errors import UnseeError
from unsee.feedback.store import open_existing
from unsee.imageset import load_images


@dataclass
class Feedback:
    file_names: list[str]
    images: np.ndarray  # (N, H, W, 3) uint8
    y: np.ndarray | None  # (N,) 1 = good (benign), 0 = bad; None for rankings
    rankings: list[list[int]]  # indices into images, most like the concept first

    @property
    def kind(self) -> str:
        return "binary" if self.y is not None else "rank"

    def counts(self) -> dict:
        if self.y is not None:
            return {"bad": int((self.y == 0).sum()), "good": int((self.y == 1).sum())}
        return {"rankings": len(self.rankings), "images": len(self.file_names)}


def load_feedback(folder: Path, kind: str, annotator: str | None = None) -> Feedback:
    """Binary: one label per image (the majority of annotators; skips and ties left out).
    Rank: every live ranking. Raises UnseeError when the data cannot train a reward."""
    store = open_existing(folder)
    decisions = [d for d in store.decisions() if annotator is None or d["annotator"] == annotator]
    if kind == "binary":
        votes: dict[str, Counter] = defaultdict(Counter)
        for (image_id, who), label in store.current_labels().items():
            if label != "skip" and (annotator is None or who == annotator):
                votes[image_id][label] += 1
        names = {i.image_id: i.file_name for i in store.images()}
        chosen = {names[i]: c for i, c in votes.items() if c["bad"] != c["good"]}
        file_names = sorted(chosen)
        y = np.array([int(chosen[f]["good"] > chosen[f]["bad"]) for f in file_names])
        bad, good = int((y == 0).sum()), int((y == 1).sum())
        if bad == 0 or good == 0:
            raise UnseeError(
                f"{folder} has labels of one class only ({bad} bad, {good} good): a reward"
                " needs both; label some images of the other class"
            )
        if min(bad, good) < 2:
            raise UnseeError(
                f"{folder} has {bad} bad and {good} good labels; a reward needs at least 2 of each"
            )
        images = load_images(folder, [{"file_name": f} for f in file_names], None)
        return Feedback(file_names, images, y, [])
    groups: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for d in decisions:
        if d["kind"] == "rank":
            groups[d["ranking_id"]].append((d["rank"], d["file_name"]))
    if not groups:
        raise UnseeError(f"{folder} holds no rankings: label with `unsee label --mode rank`")
    file_names = sorted({f for g in groups.values() for _, f in g})
    index = {f: i for i, f in enumerate(file_names)}
    rankings = [[index[f] for _, f in sorted(g)] for g in groups.values()]
    images = load_images(folder, [{"file_name": f} for f in file_names], None)
    return Feedback(file_names, images, None, rankings)


def ranking_pairs(rankings: list[list[int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All ordered pairs (better, worse, M): a later rank is less like the concept, i.e.
    more acceptable, so it is the better one."""
    better, worse, size = [], [], []
    for ranking in rankings:
        for i, most_like in enumerate(ranking):
            for less_like in ranking[i + 1 :]:
                better.append(less_like)
                worse.append(most_like)
                size.append(len(ranking))
    return np.array(better), np.array(worse), np.array(size)
