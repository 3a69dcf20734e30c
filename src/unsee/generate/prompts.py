"""Prompt files: plain text (one prompt a line) or CSV in the I2P / COCO-30k layout.

CSV columns: `prompt` (required); optional `evaluation_seed` (seed of the row's first
image), `evaluation_guidance` (its guidance scale), and `case_number` (I2P) or `image_id`
(COCO-30k), kept in the metadata so results join back to the benchmark. The I2P release's
own `sd_seed` and `sd_guidance_scale` stand in when evaluation_* are absent.
"""

import csv
from dataclasses import dataclass, field
from pathlib import Path

from unsee.errors import UnseeError

ID_COLUMNS = ("case_number", "image_id")
SEED_COLUMNS = ("evaluation_seed", "sd_seed")  # the first present is read
GUIDANCE_COLUMNS = ("evaluation_guidance", "sd_guidance_scale")


@dataclass(frozen=True)
class PromptRow:
    prompt: str
    seed: int | None = None
    guidance: float | None = None
    ids: dict[str, str] = field(default_factory=dict)
    line: int = 0  # where it came from, for messages


def read_prompts(path: Path) -> list[PromptRow]:
    """Rows of a prompt file; a .csv is read as CSV, anything else as one prompt a line."""
    if not path.is_file():
        raise UnseeError(f"prompt file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise UnseeError(f"prompt file {path} is not UTF-8 text ({e.reason})") from None
    rows = _read_csv(path, text) if path.suffix.lower() == ".csv" else _read_lines(text)
    if not rows:
        raise UnseeError(f"prompt file {path} holds no prompts")
    return rows


def _read_lines(text: str) -> list[PromptRow]:
    return [
        PromptRow(line.strip(), line=i)
        for i, line in enumerate(text.splitlines(), start=1)
        if line.strip()
    ]


def _read_csv(path: Path, text: str) -> list[PromptRow]:
    reader = csv.DictReader(text.splitlines(keepends=True), strict=True)
    columns = reader.fieldnames or []
    if "prompt" not in columns:
        raise UnseeError(f"{path}: no 'prompt' column (columns: {', '.join(columns) or 'none'})")
    rows = []
    try:
        for record in reader:
            where = f"{path}:{reader.line_num}"
            if None in record:
                raise UnseeError(f"{where}: more fields than the {len(columns)} columns")
            if any(record[c] is None for c in columns):
                raise UnseeError(f"{where}: fewer fields than the {len(columns)} columns")
            prompt = record["prompt"].strip()
            if not prompt:
                raise UnseeError(f"{where}: empty prompt")
            rows.append(
                PromptRow(
                    prompt,
                    seed=_number(record, _first(columns, SEED_COLUMNS), int, where),
                    guidance=_number(record, _first(columns, GUIDANCE_COLUMNS), float, where),
                    ids={c: record[c] for c in ID_COLUMNS if c in columns},
                    line=reader.line_num,
                )
            )
    except csv.Error as e:
        raise UnseeError(f"{path}:{reader.line_num}: malformed CSV ({e})") from None
    return rows


def _first(columns: list[str], names: tuple[str, ...]) -> str:
    return next((c for c in names if c in columns), names[0])


def _number(record: dict, column: str, kind: type, where: str):
    value = (record.get(column) or "").strip()
    if not value:
        return None
    try:
        number = kind(float(value)) if kind is int else kind(value)
    except ValueError:
        raise UnseeError(f"{where}: {column} {value!r} is not a number") from None
    if kind is int and float(value) != number:
        raise UnseeError(f"{where}: {column} {value!r} is not a whole number")
    if kind is int and not 0 <= number < 2**32:
        # torch's CPU generator reads a seed mod 2^32: larger ones would repeat smaller ones
        raise UnseeError(f"{where}: {column} {value} is outside 0..2^32-1")
    return number
