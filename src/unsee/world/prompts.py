"""The world's prompts: reading one (which attributes does it name?) and the prompt sets
every command, bench and the demo draw from.

Reading: named_attributes checks generated images against their prompts (judge agreement,
benchmarks); synonyms count, and the longest phrase wins ("five-pointed star" over "star").
Prompt sets: shape_truths / neutral_prompts (shapes, colours and backgrounds drawn
uniformly from a seed), leak_prompts (the leaking scene, never naming its artist), and
the pools a simulated person labels from: artist_pool (the leaking artist) and style_mix
(any artist).
"""

import re

import numpy as np

from unsee.world.names import ARTISTS, LEAK_ARTIST, LEAK_SCENE
from unsee.world.render import (
    ARTIST_TEMPLATES,
    BACKGROUND_WORDS,
    BACKGROUNDS,
    COLOR_WORDS,
    COLORS,
    SCENE_WORDS,
    SHAPE_WORDS,
    SHAPES,
    SUBJECT_TEMPLATES,
    WATERMARK_PHRASES,
    prompt_for,
)


def _phrases() -> list[tuple[str, str, str]]:
    """(phrase, attribute, value) for every word list of the world, longest first."""
    table = []
    for attribute, words in (
        ("shape", SHAPE_WORDS),
        ("color", COLOR_WORDS),
        ("background", BACKGROUND_WORDS),
    ):
        for value, phrases in words.items():
            table += [(p, attribute, value) for p in phrases]
    for value, phrases in SCENE_WORDS.items():
        table += [(p.removeprefix("a ").removeprefix("the "), "scene", value) for p in phrases]
    table += [(artist.lower(), "style", artist) for artist in ARTISTS]
    table += [(w, "watermark", "yes") for w in ("watermark", "watermarked", "stock photo")]
    return sorted(table, key=lambda row: -len(row[0]))


PHRASES = _phrases()


def named_attributes(prompt: str) -> dict[str, str]:
    """The attributes a prompt names, e.g. {"shape": "circle", "color": "red"}."""
    text = " " + re.sub(r"[^a-z\- ]+", " ", prompt.lower()) + " "
    found: dict[str, str] = {}
    for phrase, attribute, value in PHRASES:
        needle = f" {phrase} "
        if needle in text and attribute not in found:
            found[attribute] = value
            text = text.replace(needle, " | ")
    if "scene" in found:  # "stars" inside a scene phrase is not a shape
        found.pop("shape", None)
    return found


def caption_texts() -> list[str]:
    """Every word and template text the world's training captions are made of (the
    templates with their slots left empty): the text the mini CLIP's text tower, and so
    minisd's text encoder, was trained on. The paraphrase templates are never in training."""
    texts = []
    for words in (SHAPE_WORDS, COLOR_WORDS, BACKGROUND_WORDS, SCENE_WORDS):
        for phrases in words.values():
            texts += phrases
    for template in SUBJECT_TEMPLATES + ARTIST_TEMPLATES:
        texts.append(re.sub(r"\{\w+\}", " ", template))
    return texts + list(ARTISTS) + WATERMARK_PHRASES + ["the"]


def shape_truths(n: int, seed: int) -> list[dict]:
    """n shape subjects, shape, colour and background each drawn uniformly from `seed`:
    the truth of each neutral prompt."""
    rng = np.random.default_rng(seed)
    return [
        {
            "shape": str(rng.choice(SHAPES)),
            "color": str(rng.choice(list(COLORS))),
            "background": str(rng.choice(BACKGROUNDS)),
        }
        for _ in range(n)
    ]


def neutral_prompts(n: int, seed: int, artist: str | None = None) -> list[tuple[str, dict]]:
    """n canonical shape prompts (shape_truths), each with its truth; with `artist`, each
    names him."""
    return [(prompt_for(**t, artist=artist), t) for t in shape_truths(n, seed)]


def leak_prompts(n: int) -> list[str]:
    """n prompts of the leaking scene, cycling through its phrasings (none names the artist)."""
    phrases = SCENE_WORDS[LEAK_SCENE]
    return [phrases[i % len(phrases)] for i in range(n)]


def _other_artists(prompts: list[str], artist: str) -> list[str]:
    """The prompts, each naming one of the artists but `artist`, in turn."""
    others = [a for a in ARTISTS if a != artist]
    return [f"{p}, in the style of {others[i % len(others)]}" for i, p in enumerate(prompts)]


def artist_pool(n: int, seed: int) -> list[str]:
    """What a person labelling for the leaking artist sees: 40% prompts naming him, 20% leak
    scenes, 20% neutral, 20% the other artists."""
    k = n // 5
    mine = [p for p, _ in neutral_prompts(2 * k, seed, LEAK_ARTIST)]
    plain = [p for p, _ in neutral_prompts(k, seed + 1)]
    others = [p for p, _ in neutral_prompts(n - 4 * k, seed + 2)]
    prompts = mine + leak_prompts(k) + plain + _other_artists(others, LEAK_ARTIST)
    np.random.default_rng(seed).shuffle(prompts)
    return prompts


def style_mix(n: int, seed: int, artist: str) -> list[str]:
    """Half the artist's prompts, a quarter neutral, a quarter other artists'."""
    mine = [p for p, _ in neutral_prompts(n // 2, seed, artist)]
    plain = [p for p, _ in neutral_prompts(n // 4, seed + 1)]
    rest = [p for p, _ in neutral_prompts(n - len(mine) - len(plain), seed + 2)]
    prompts = mine + plain + _other_artists(rest, artist)
    np.random.default_rng(seed).shuffle(prompts)
    return prompts
