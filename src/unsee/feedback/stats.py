"""`unsee feedback stats|export|import`: what the store holds, in other tools' formats."""

import csv
import io
import json
import math
import os
import shutil
import statistics
from collections import Counter, defaultdict
from itertools import combinations
from pathlib import Path

from unsee.errors import UnseeError
from unsee.feedback.config import FeedbackExportConfig, FeedbackImportConfig, FeedbackStatsConfig
from unsee.feedback.store import LABELS, STORE_NAME, FeedbackStore, open_existing
from unsee.imageset import atomic_write_text, read_image_set


def feedback_stats(store: FeedbackStore) -> dict:
    """Counts per label and annotator, seconds per decision, agreement where labels overlap."""
    decisions = store.decisions()
    current = store.current_labels()
    per_annotator: dict[str, Counter] = defaultdict(Counter)
    for (_, annotator), label in current.items():
        per_annotator[annotator][label] += 1
    rankings = Counter(d["annotator"] for d in decisions if d["kind"] == "rank" and d["rank"] == 1)
    seconds = [d["seconds"] for d in decisions if d["seconds"] is not None]
    by_image: dict[int, dict[str, str]] = defaultdict(dict)
    for (image_id, annotator), label in current.items():
        if label != "skip":
            by_image[image_id][annotator] = label
    agreement = {}
    for a, b in combinations(sorted(per_annotator), 2):
        both = [(v[a], v[b]) for v in by_image.values() if a in v and b in v]
        if both:
            agreement[f"{a} ~ {b}"] = {
                "images": len(both),
                "agreement": sum(x == y for x, y in both) / len(both),
            }
    totals = Counter()
    for counts in per_annotator.values():
        totals.update(counts)
    return {
        "images": len(store.images()),
        "labels": {label: totals.get(label, 0) for label in LABELS},
        "annotators": {
            a: {**{label: c.get(label, 0) for label in LABELS}, "rankings": rankings.get(a, 0)}
            for a, c in sorted(per_annotator.items())
        }
        | {
            a: {**dict.fromkeys(LABELS, 0), "rankings": n}
            for a, n in rankings.items()
            if a not in per_annotator
        },
        "labelled_images": len({image_id for image_id, _ in current}),
        "labels_in_force": len(current),
        "rankings": sum(rankings.values()),
        "decisions": len(decisions),
        "median_seconds": statistics.median(seconds) if seconds else None,
        "agreement": agreement,
    }


def run_stats(cfg: FeedbackStatsConfig) -> dict:
    stats = feedback_stats(open_existing(cfg.dir))
    if cfg.json:
        print(json.dumps(stats, indent=2))
        return stats
    print(
        f"{stats['images']} images, {stats['labelled_images']} labelled by"
        f" {len(stats['annotators'])} annotators: {stats['labels_in_force']} labels in force"
        f" (the latest per image and annotator), {stats['rankings']} rankings;"
        f" {stats['decisions']} decisions not undone (relabels and ranked images included)"
    )
    print(f"{'annotator':20s} {'bad':>6s} {'good':>6s} {'skip':>6s} {'rankings':>9s}")
    for name, c in stats["annotators"].items():
        print(f"{name:20s} {c['bad']:6d} {c['good']:6d} {c['skip']:6d} {c['rankings']:9d}")
    if stats["median_seconds"] is not None:
        print(f"median seconds per decision: {stats['median_seconds']:.2f}")
    for pair, a in stats["agreement"].items():
        print(f"agreement {pair}: {a['agreement']:.2f} on {a['images']} images")
    return stats


def export_rows(store: FeedbackStore, per_decision: bool) -> list[dict]:
    """Rows for export: per image (majority label, counts, mean rank) or per decision."""
    if per_decision:
        return [
            {
                k: d[k]
                for k in (
                    "file_name",
                    "prompt",
                    "annotator",
                    "kind",
                    "label",
                    "rank",
                    "ranking_id",
                    "seconds",
                    "created_at",
                )
            }
            for d in store.decisions()
        ]
    labels: dict[int, Counter] = defaultdict(Counter)
    for (image_id, _), label in store.current_labels().items():
        labels[image_id][label] += 1
    ranks: dict[int, list[int]] = defaultdict(list)
    for d in store.decisions():
        if d["kind"] == "rank":
            ranks[d["image_id"]].append(d["rank"])
    rows = []
    for image in store.images():
        c, r = labels.get(image.image_id, Counter()), ranks.get(image.image_id, [])
        if not c and not r:
            continue
        label = None
        if c["bad"] != c["good"]:
            label = "bad" if c["bad"] > c["good"] else "good"
        rows.append(
            {
                "file_name": image.file_name,
                "prompt": image.prompt,
                "label": label,
                "n_bad": c["bad"],
                "n_good": c["good"],
                "n_skip": c["skip"],
                "mean_rank": sum(r) / len(r) if r else None,
                "n_ranked": len(r),
            }
        )
    return rows


def run_export(cfg: FeedbackExportConfig) -> Path:
    store = open_existing(cfg.dir)
    rows = export_rows(store, cfg.decisions)
    if not rows:
        raise UnseeError(f"{cfg.dir} holds no decisions to export")
    out = Path(cfg.out) if cfg.out is not None else Path(cfg.dir) / "labelled"
    out.mkdir(parents=True, exist_ok=True)
    if cfg.format == "parquet":
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise UnseeError("parquet export needs pyarrow: pip install pyarrow") from None
        path = out / ("decisions.parquet" if cfg.decisions else "labels.parquet")
        pq.write_table(pa.Table.from_pylist(rows), path)
    else:
        if cfg.decisions:
            path = out / f"decisions.{cfg.format}"
        else:  # an imagefolder dataset: metadata beside (hard links to) the images
            path = out / f"metadata.{cfg.format}"
            for row in rows:
                _link(Path(cfg.dir) / row["file_name"], out / row["file_name"])
        if cfg.format == "jsonl":
            atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        else:
            buf = io.StringIO()
            writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
            atomic_write_text(path, buf.getvalue())
    print(f"exported {len(rows)} rows to {path}")
    return path


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        return
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _import_seconds(value: object, path: Path, line: int) -> float | None:
    """A row's seconds: empty, or a number from 0 to a day (as the labelling page sends)."""
    if value is None or value == "":
        return None
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        seconds = math.nan
    if isinstance(value, bool) or not 0 <= seconds < 86400:
        raise UnseeError(f"{path}:{line}: seconds {value!r} is not a number from 0 to 86400")
    return seconds


def run_import(cfg: FeedbackImportConfig) -> int:
    folder = Path(cfg.dir)
    path = Path(cfg.file)
    if not path.is_file():
        raise UnseeError(f"{path} does not exist")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise UnseeError(f"{path} is not UTF-8 text") from None
    if path.suffix == ".csv":
        reader = csv.DictReader(io.StringIO(text))
        rows = list(reader)
        missing = [c for c in ("file_name", "label") if c not in (reader.fieldnames or [])]
        if missing:
            raise UnseeError(
                f"{path} has no {' or '.join(missing)} column (its header:"
                f" {','.join(reader.fieldnames or [])}); give file_name,label"
                "[,annotator,seconds]"
            )
        lines = range(2, len(rows) + 2)
    else:
        rows, lines = [], []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    raise UnseeError(f"{path}:{n}: not a JSON line") from None
                lines.append(n)
    store = FeedbackStore.for_folder(folder)
    store.register_images(read_image_set(folder))
    ids = {i.file_name: i.image_id for i in store.images()}
    checked = []
    for n, row in zip(lines, rows, strict=True):
        if not isinstance(row, dict):
            raise UnseeError(f"{path}:{n}: not a JSON object with file_name and label")
        if "file_name" not in row:
            raise UnseeError(f"{path}:{n}: no file_name")
        name, label = row["file_name"], row.get("label")
        if name not in ids:
            raise UnseeError(f"{path}:{n}: {name!r} is not an image of {folder}")
        if label not in LABELS:
            raise UnseeError(f"{path}:{n}: label {label!r} is not one of {', '.join(LABELS)}")
        annotator = row.get("annotator") or cfg.annotator
        if not isinstance(annotator, str) or len(annotator) > 64:
            raise UnseeError(
                f"{path}:{n}: annotator {annotator!r} is not a name of <= 64 characters"
            )
        checked.append((ids[name], annotator, label, _import_seconds(row.get("seconds"), path, n)))
    for image_id, annotator, label, seconds in checked:  # all rows checked before any is stored
        store.add_label(image_id, annotator, label, seconds)
    print(f"imported {len(checked)} decisions into {folder / STORE_NAME}")
    return len(checked)
