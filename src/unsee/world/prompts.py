"""Read a prompt in the world's vocabulary: which attributes does it name?

Used to check generated images against their prompts (judge agreement, benchmarks).
Synonyms count; the longest phrase wins ("five-pointed star" over "star").
"""

import re

from unsee.world import render as world


def _phrases() -> list[tuple[str, str, str]]:
    """(phrase, attribute, value) for every word list of the world, longest first."""
    table = []
    for attribute, words in (
        ("shape", world.SHAPE_WORDS),
        ("color", world.COLOR_WORDS),
        ("background", world.BACKGROUND_WORDS),
    ):
        for value, phrases in words.items():
            table += [(p, attribute, value) for p in phrases]
    for value, phrases in world.SCENE_WORDS.items():
        table += [(p.removeprefix("a ").removeprefix("the "), "scene", value) for p in phrases]
    table += [(artist.lower(), "style", artist) for artist in world.ARTISTS]
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
    for words in (world.SHAPE_WORDS, world.COLOR_WORDS, world.BACKGROUND_WORDS, world.SCENE_WORDS):
        for phrases in words.values():
            texts += phrases
    for template in world.SUBJECT_TEMPLATES + world.ARTIST_TEMPLATES:
        texts.append(re.sub(r"\{\w+\}", " ", template))
    return texts + list(world.ARTISTS) + world.WATERMARK_PHRASES + ["the"]
