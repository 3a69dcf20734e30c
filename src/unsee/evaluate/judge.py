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
from PIL import Image, UnidentifiedImageError

from unsee.errors import UnseeError
from unsee.evaluate.config import JudgeConfig
from unsee.generate.imagefolder import METADATA, atomic_write_text
from unsee.world import render as world
from unsee.world.judge import (
    CALL_STRENGTH,
    PRESENT_STRENGTH,
    Verdict,
    judge_images,
    load_world_judge,
)
from unsee.world.prompts import named_attributes

CONCEPTS = (*world.ARTISTS, "watermark")  # what the world's judge can call present
ANY_ARTIST = "any artist"


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
        return np.array([max(v.strengths[a] for a in world.ARTISTS) for v in verdicts])
    return np.array([v.strengths[concept] for v in verdicts])


def concept_rate(verdicts: list[Verdict], concept: str) -> float:
    """The share of images in which the judge sees the concept."""
    return float(concept_shows(verdicts, concept).mean())


def concept_rates(verdicts: list[Verdict]) -> dict[str, float]:
    """{concept: rate} for every concept of the world (each artist and the watermark), so a
    method that adds one concept while removing another shows it."""
    return {c: concept_rate(verdicts, c) for c in CONCEPTS}


def rates(verdicts: list[Verdict], concepts: tuple[str, ...] = CONCEPTS) -> dict[str, dict]:
    """{concept: {"rate", "strength"}}: the share of images showing each concept and its
    mean strength, the figures every evaluation and bench reports."""
    return {
        c: {
            "rate": round(concept_rate(verdicts, c), 4),
            "strength": round(float(concept_strengths(verdicts, c).mean()), 4),
        }
        for c in concepts
    }


def prompt_accuracy(
    verdicts: list[Verdict],
    truths: list[dict],
    keys: tuple[str, ...] = ("shape", "color", "background"),
) -> dict[str, float]:
    """{attribute: share of images whose judged attribute is the truth's}, over the images
    whose truth names it."""
    out = {}
    for key in keys:
        hits = [
            getattr(v, key) == t[key] for v, t in zip(verdicts, truths, strict=True) if key in t
        ]
        if hits:
            out[key] = float(np.mean(hits))
    return out


def read_image_set(folder: Path) -> list[dict]:
    """The metadata records of an image folder, checked: every listed image exists."""
    path = folder / METADATA
    if not path.is_file():
        raise UnseeError(f"{folder} has no {METADATA}; make it with `unsee generate`")
    records = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise UnseeError(f"{path}:{n}: not a JSON line") from None
        if not (folder / record.get("file_name", "")).is_file():
            raise UnseeError(f"{path}:{n}: image {record.get('file_name')!r} is missing")
        records.append(record)
    if not records:
        raise UnseeError(f"{path} lists no images")
    return records


def load_images(folder: Path, records: list[dict], size: int | None) -> np.ndarray:
    """(N, H, W, 3) uint8; a missing or corrupt file, or (with `size`) another size than
    size x size, is a clear error. Without `size`, all images must share one size."""
    images = []
    for record in records:
        path = folder / record["file_name"]
        if not path.is_file():
            raise UnseeError(f"image {path} is missing")
        try:
            with Image.open(path) as im:
                image = im.convert("RGB")
        except (UnidentifiedImageError, OSError) as e:
            raise UnseeError(f"{path} is not a readable image ({e})") from None
        if size is not None and image.size != (size, size):
            raise UnseeError(
                f"{path} is {image.size[0]}x{image.size[1]}; the world judge reads"
                f" {size}x{size} images from minisd"
            )
        if images and image.size != images[0].shape[1::-1]:
            raise UnseeError(f"{path} is {image.size[0]}x{image.size[1]}, unlike the others")
        images.append(np.asarray(image))
    return np.stack(images)


def summarize(records: list[dict], verdicts: list[Verdict]) -> dict:
    """Style shares, watermark rate and prompt agreement of judged images."""
    n = len(verdicts)
    styles = Counter(v.style or "none" for v in verdicts)
    agree: dict[str, list[bool]] = {}
    for record, verdict in zip(records, verdicts, strict=True):
        for attribute, value in named_attributes(record.get("prompt", "")).items():
            if attribute == "watermark":
                continue
            agree.setdefault(attribute, []).append(getattr(verdict, attribute) == value)
    return {
        "images": n,
        "concepts": rates(verdicts),
        "style_rates": {s: styles.get(s, 0) / n for s in ["none", *world.ARTISTS]},
        "watermark_rate": concept_rate(verdicts, "watermark"),
        "present_strength": PRESENT_STRENGTH,
        "call_strength": CALL_STRENGTH,
        "prompt_agreement": {k: sum(v) / len(v) for k, v in sorted(agree.items())},
        "prompt_agreement_counts": {k: len(v) for k, v in sorted(agree.items())},
    }


def judge_folder(cfg: JudgeConfig) -> dict:
    from unsee.models.load import pick_device

    folder = Path(cfg.dir)
    records = read_image_set(folder)
    model = load_world_judge(cfg.judge, pick_device(cfg.device))
    verdicts = judge_images(model, load_images(folder, records, world.SIZE))
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
