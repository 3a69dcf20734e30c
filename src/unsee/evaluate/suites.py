"""The world's prompt suites: prompts with the truth of each, and reference renders.

  target         prompts naming the concept (an artist: "..., in the style of Vanmond";
                 the watermark: "..., with a watermark")
  leak           the leaking scene, which shows the leaking artist without naming him
  neutral        shape prompts naming no artist and no watermark
  other-artists  prompts naming the other artists (what removal must preserve)
  paraphrase     the artist named with templates no training caption used
Every prompt has a truth dict: shape, color, background (where named), artist (the
style the prompt asks for, or the leak's), and the suite's reference render draws that
truth with the world's own watermark rate, for the world FID.
"""

from dataclasses import dataclass

import numpy as np

from unsee.errors import UnseeError
from unsee.evaluate.config import SUITES
from unsee.world.names import ARTISTS, CONCEPTS, LEAK_ARTIST, LEAK_SCENE
from unsee.world.prompts import leak_prompts, shape_truths
from unsee.world.render import (
    P_WATERMARK,
    PARAPHRASE_TEMPLATES,
    WATERMARK_PHRASES,
    Attributes,
    prompt_for,
    render,
)


@dataclass(frozen=True)
class Suite:
    name: str
    prompts: list[str]
    truths: list[dict]


def suite_seed(seed: int, name: str) -> int:
    """The seed of a suite's prompts (which shapes, colours, backgrounds): fixed by the
    suite's name, so two evaluations with the same --seed ask for the same things whatever
    else they run. (Its images take seeds --seed + index, in every suite.)"""
    return seed + 100_000 * SUITES.index(name)


def _text(t: dict) -> str:
    return prompt_for(t["shape"], t["color"], t["background"])


def world_suite(name: str, n: int, seed: int, concept: str) -> Suite:
    """n prompts of suite `name` for `concept` (an artist of the world, or watermark)."""
    if name not in SUITES:
        raise UnseeError(f"unknown suite {name!r}; one of {', '.join(SUITES)}")
    if concept not in CONCEPTS:
        raise UnseeError(f"--concept must be one of {', '.join(CONCEPTS)}, not {concept!r}")
    artist = None if concept == "watermark" else concept
    truths = shape_truths(n, seed)
    if name == "neutral":
        return Suite(name, [_text(t) for t in truths], truths)
    if name == "leak":
        truths = [{"scene": LEAK_SCENE, "artist": LEAK_ARTIST} for _ in range(n)]
        return Suite(name, leak_prompts(n), truths)
    if name == "target" and artist is None:
        phrases = WATERMARK_PHRASES
        prompts = [_text(t) + phrases[i % len(phrases)] for i, t in enumerate(truths)]
        return Suite(name, prompts, [t | {"watermark": True} for t in truths])
    if name == "other-artists":
        others = [a for a in ARTISTS if a != artist]
        truths = [t | {"artist": others[i % len(others)]} for i, t in enumerate(truths)]
        return Suite(name, [prompt_for(**_shape(t), artist=t["artist"]) for t in truths], truths)
    if artist is None:
        raise UnseeError(f"the {name} suite names an artist; give --concept ARTIST")
    truths = [t | {"artist": artist} for t in truths]
    if name == "target":
        return Suite(name, [prompt_for(**_shape(t), artist=artist) for t in truths], truths)
    templates = PARAPHRASE_TEMPLATES  # paraphrase
    prompts = [
        templates[i % len(templates)].format(text=_text(t), artist=artist)
        for i, t in enumerate(truths)
    ]
    return Suite(name, prompts, truths)


def _shape(t: dict) -> dict:
    return {k: t[k] for k in ("shape", "color", "background")}


def reference_renders(suite: Suite, seed: int) -> np.ndarray:
    """(N, 32, 32, 3) renders of the suite's truths: the world as it should look, with the
    training data's watermark rate."""
    rng = np.random.default_rng(seed)
    images = []
    for t in suite.truths:
        watermark = bool(rng.random() < P_WATERMARK)
        common = {
            "style": t.get("artist"),
            "watermark": watermark,
            "seed": int(rng.integers(2**31)),
        }
        if "scene" in t:
            attrs = Attributes("scene", scene=t["scene"], **common)
        else:
            attrs = Attributes("shape", **_shape(t), **common)
        images.append(render(attrs))
    return np.stack(images)
