"""Evaluation metrics as plain functions of arrays, each with a bootstrap interval.

- rate:              share of images flagged (a concept rate, an accuracy)
- frechet_distance:  ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2))   (Heusel et al.
                     2017), on any features: the world's (judge or mini CLIP) or Inception's
- clip_score:        mean cosine of paired image and text embeddings (Hessel et al. 2021;
                     SDD reports it with ViT-L/14 and "A photo depicts " before the caption)
- same_seed_distance: mean distance between an image and the original model's image of the
                     same prompt and seed (LPIPS when given LPIPS features, else 1 - cosine
                     of image embeddings)
Intervals: the percentile bootstrap over images (seeded), 95% by default; for the Frechet
distance centred on the statistic (see `bootstrap`).
"""

from collections.abc import Callable

import numpy as np


def bootstrap(
    statistic: Callable[..., float],
    *samples: np.ndarray,
    paired: bool = True,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    centred: bool = False,
) -> dict[str, float]:
    """{"mean", "low", "high"}: the statistic on the samples, and the percentile interval
    of the statistic over n_boot resamples (with replacement). paired: the samples are rows
    of one table (same length), resampled together; else each is resampled on its own.
    centred: shift the interval by the bootstrap's bias (median of the draws minus the
    statistic), for statistics that resampling itself inflates, like a Frechet distance
    (a resample repeats images, which shrinks its spread and moves its mean)."""
    rng = np.random.default_rng(seed)
    value = float(statistic(*samples))
    n = len(samples[0])
    if paired and any(len(s) != n for s in samples):
        raise ValueError("paired samples must have the same length")
    draws = []
    for _ in range(n_boot):
        if paired:
            idx = rng.integers(0, n, n)
            draws.append(statistic(*(s[idx] for s in samples)))
        else:
            draws.append(statistic(*(s[rng.integers(0, len(s), len(s))] for s in samples)))
    draws = np.asarray(draws, float)
    low, high = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2])
    if centred:
        bias = float(np.median(draws)) - value
        low, high = low - bias, high - bias
    return {"mean": value, "low": float(low), "high": float(high)}


def rate(flags: np.ndarray) -> float:
    """Share of True in a boolean array."""
    return float(np.mean(np.asarray(flags, bool)))


def mean(values: np.ndarray) -> float:
    """Mean of numbers (a judge's strengths)."""
    return float(np.mean(np.asarray(values, float)))


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to features a (N, D) and b (M, D).

    Tr((S_a S_b)^(1/2)) is the sum of the square roots of the eigenvalues of
    S_a^(1/2) S_b S_a^(1/2) (symmetric, positive semi-definite), so no general matrix
    square root is needed."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    w, v = np.linalg.eigh(s_a)
    root_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    inner = np.linalg.eigvalsh(root_a @ s_b @ root_a)
    trace_root = np.sqrt(np.clip(inner, 0, None)).sum()
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a) + np.trace(s_b) - 2 * trace_root)


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of paired embeddings (N, D), (N, D) -> (N,)."""
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    return (a * b).sum(-1)


def clip_score(image_embeds: np.ndarray, text_embeds: np.ndarray) -> float:
    """Mean cosine of each image's embedding with its caption's."""
    return float(cosine(image_embeds, text_embeds).mean())


def same_seed_distance(embeds: np.ndarray, original_embeds: np.ndarray) -> float:
    """Mean (1 - cosine) between each image and the original model's same-seed image."""
    return float((1 - cosine(embeds, original_embeds)).mean())
