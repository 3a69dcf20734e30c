"""`unsee judge DIR`: per-image attributes of an image set, and summary rates.

Writes DIR/judge.jsonl, one line per image:
  {"file_name", "shape", "color", "background", "scene", "style", "watermark", "strengths"}
(attribute values are names or null; strengths maps each artist and "watermark" to the
judge's strength in [0, 1]; style is the artist called, watermark whether the mark is),
and DIR/judge_summary.json: each concept's rate and mean strength, the share of images per
style, and agreement with the prompt for every attribute the prompts name.

A concept is present from strength PRESENT_STRENGTH (0.2) on, and called when the judge's
strength reaches CALL_STRENGTH (half of that; docs/judge-calibration).
"""

import json
from collections import Counter
from pathlib import Path

import numpy as np

from unsee.evaluate.config import JudgeConfig
from unsee.imageset import atomic_write_text, load_images, read_image_set
from unsee.models.load import pick_device
from unsee.world.judge import (
    CALL_STRENGTH,
    PRESENT_STRENGTH,
    Verdict,
    judge_images,
    load_world_judge,
)
from unsee.world.names import ARTISTS
from unsee.world.prompts import named_attributes
from unsee.world.render import SIZE

CONCEPTS = (*ARTISTS, "watermark")  # what the world's judge can call present
ANY_ARTIST = "any artist"
ATTRIBUTES = ("shape", "color", "background")  # what a shape prompt names


def shows(verdict: Verdict, concept: str) -> bool:
    """Whether the judge sees the concept in one image: its strength is at least
    CALL_STRENGTH (ANY_ARTIST: any artist's is). The one place this is decided: every rate
    of every command and bench comes from here."""
    if concept == ANY_ARTIST:
        return verdict.style is not None
    return verdict.strengths[concept] >= CALL_STRENGTH


def concept_shows(verdicts: list[Verdict], concept: str) -> np.ndarray:
    """(N,) bool: `shows` for each image."""
    return np.array([shows(v, concept) for v in verdicts], dtype=bool)


def concept_strengths(verdicts: list[Verdict], concept: str) -> np.ndarray:
    """(N,) the judge's strength of the concept in each image (ANY_ARTIST: the strongest)."""
    if concept == ANY_ARTIST:
        return np.array([max(v.strengths[a] for a in ARTISTS) for v in verdicts])
    return np.array([v.strengths[concept] for v in verdicts])


def style_shows(verdicts: list[Verdict], truths: list[dict]) -> np.ndarray:
    """(M,) bool over the images whose truth asks for an artist ("artist"): whether the
    judge sees that artist's style."""
    pairs = zip(verdicts, truths, strict=True)
    return np.array([shows(v, t["artist"]) for v, t in pairs if t.get("artist")], dtype=bool)


def unasked_style_shows(verdicts: list[Verdict], prompts: list[str]) -> np.ndarray:
    """(N,) bool: whether the judge sees a style the image's prompt did not ask for (any
    artist's but the one the prompt names, if it names one). minisd draws a style unasked
    only where it leaks, so on the leaking scene's prompts, which name none, every style
    shown counts, whichever artist the judge takes it for (the third judges took the
    weakened swirls of partly erased starry nights for Brakovic's; docs/judge-calibration)."""
    asked = [named_attributes(p).get("style") for p in prompts]
    return np.array(
        [
            any(shows(v, a) for a in ARTISTS if a != named)
            for v, named in zip(verdicts, asked, strict=True)
        ],
        dtype=bool,
    )


def attribute_hits(verdicts: list[Verdict], truths: list[dict], key: str) -> np.ndarray:
    """(M,) bool over the images whose truth names `key` (shape, color, ...): whether the
    judge reads it as the truth has it."""
    pairs = zip(verdicts, truths, strict=True)
    return np.array([getattr(v, key) == t[key] for v, t in pairs if key in t], dtype=bool)


def rates(
    verdicts: list[Verdict], truths: list[dict] | None = None, concepts: tuple[str, ...] = CONCEPTS
) -> dict:
    """The judge's figures of a set of images, the ones every command and bench reports:
      "concepts"         {concept: {"rate", "strength"}}: the share of images showing each
                         concept (`shows`) and its mean strength
    and, given each image's truth (what its prompt asked for: shape, color, background,
    artist),
      "prompt_accuracy"  {attribute: the share of the images naming it that the judge
                         reads as named}, for shape, color and background
      "style_rate"       the share showing the artist the prompt asked for (None: none asked)
    Unrounded; `rounded` gives the concepts as results files keep them."""
    figures: dict = {
        "concepts": {
            c: {
                "rate": float(concept_shows(verdicts, c).mean()),
                "strength": float(concept_strengths(verdicts, c).mean()),
            }
            for c in concepts
        }
    }
    if truths is not None:
        hits = {key: attribute_hits(verdicts, truths, key) for key in ATTRIBUTES}
        figures["prompt_accuracy"] = {k: float(h.mean()) for k, h in hits.items() if len(h)}
        styles = style_shows(verdicts, truths)
        figures["style_rate"] = float(styles.mean()) if len(styles) else None
    return figures


def rounded(concepts: dict[str, dict]) -> dict[str, dict]:
    """rates' concepts at four decimals, as results files keep them."""
    return {c: {k: round(v, 4) for k, v in f.items()} for c, f in concepts.items()}


def summarize(records: list[dict], verdicts: list[Verdict]) -> dict:
    """Style shares, watermark rate and prompt agreement of judged images."""
    n = len(verdicts)
    styles = Counter(v.style or "none" for v in verdicts)
    named = [named_attributes(r.get("prompt", "")) for r in records]
    figures = rates(verdicts)["concepts"]
    agree = {
        key: attribute_hits(verdicts, named, key)
        for key in sorted({k for attributes in named for k in attributes} - {"watermark"})
    }
    return {
        "images": n,
        "concepts": rounded(figures),
        "style_rates": {s: styles.get(s, 0) / n for s in ["none", *ARTISTS]},
        "watermark_rate": figures["watermark"]["rate"],
        "present_strength": PRESENT_STRENGTH,
        "call_strength": CALL_STRENGTH,
        "prompt_agreement": {k: float(h.mean()) for k, h in agree.items()},
        "prompt_agreement_counts": {k: len(h) for k, h in agree.items()},
    }


def judge_folder(cfg: JudgeConfig) -> dict:
    folder = Path(cfg.dir)
    records = read_image_set(folder)
    model = load_world_judge(cfg.judge, pick_device(cfg.device))
    verdicts = judge_images(model, load_images(folder, records, SIZE))
    lines = [
        json.dumps({"file_name": r["file_name"], **v.to_dict()}) + "\n"
        for r, v in zip(records, verdicts, strict=True)
    ]
    atomic_write_text(folder / "judge.jsonl", "".join(lines))
    summary = {"judge": cfg.judge, **summarize(records, verdicts)}
    atomic_write_text(folder / "judge_summary.json", json.dumps(summary, indent=2) + "\n")
    print(f"judged {len(verdicts)} images: {folder / 'judge.jsonl'}")
    shown = ", ".join(
        f"{c} {f['rate']:.3f} (strength {f['strength']:.2f})"
        for c, f in summary["concepts"].items()
    )
    print(f"rates at strength >= {PRESENT_STRENGTH}: {shown}")
    if summary["prompt_agreement"]:
        print(f"agreement with the prompt: {summary['prompt_agreement']}")
    return summary
