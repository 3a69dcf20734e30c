"""The feedback store: DIR/feedback.sqlite, every decision kept, durable on commit.

SQLite in WAL mode with synchronous=FULL: when a write returns, the decision is on disk,
so the page may show it saved. Nothing is ever deleted: a relabel is a new decision that
supersedes the old one, and an undo marks a decision undone. Several processes (two
servers, a script) may use one store at once; SQLite serialises the writes.

Tables
  meta       key/value, with schema_version
  images     the image set registered from DIR/metadata.jsonl (image_id, file_name, prompt)
  decisions  one row per decision: image, annotator, kind ('label' or 'rank'),
             label ('bad' | 'good' | 'skip') or rank (1 = most like the concept) with the
             ranking_id shared by one ranked group, seconds spent, created_at, undone_at
"""

import json
import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from unsee.errors import UnseeError

SCHEMA_VERSION = 1
STORE_NAME = "feedback.sqlite"
LABELS = ("bad", "good", "skip")
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS images (
    image_id  INTEGER PRIMARY KEY,
    file_name TEXT NOT NULL UNIQUE,
    prompt    TEXT NOT NULL DEFAULT '',
    metadata  TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS decisions (
    decision_id INTEGER PRIMARY KEY AUTOINCREMENT,
    image_id    INTEGER NOT NULL REFERENCES images(image_id),
    annotator   TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('label', 'rank')),
    label       TEXT CHECK (label IN ('bad', 'good', 'skip')),
    rank        INTEGER,
    ranking_id  TEXT,
    seconds     REAL,
    created_at  REAL NOT NULL,
    undone_at   REAL
);
CREATE INDEX IF NOT EXISTS decisions_by_annotator ON decisions (annotator, decision_id);
CREATE INDEX IF NOT EXISTS decisions_by_image ON decisions (image_id);
"""


@dataclass(frozen=True)
class Image:
    image_id: int
    file_name: str
    prompt: str


class FeedbackStore:
    """All reads and writes of DIR/feedback.sqlite. Safe to share between threads: each
    call opens its own short-lived connection."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        with self._connect() as db:
            db.executescript(SCHEMA)
            row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row is None:
                db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif int(row[0]) != SCHEMA_VERSION:
                raise UnseeError(
                    f"{self.path} has feedback schema {row[0]}; this unsee reads"
                    f" {SCHEMA_VERSION}. Upgrade unsee."
                )

    @classmethod
    def for_folder(cls, folder: Path) -> "FeedbackStore":
        return cls(Path(folder) / STORE_NAME)

    @contextmanager
    def _connect(self, write: bool = True) -> Iterator[sqlite3.Connection]:
        """A connection in one transaction: IMMEDIATE (the write lock up front) for writes,
        deferred for reads, which then never wait for a writer (WAL)."""
        try:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        except sqlite3.OperationalError as e:
            raise UnseeError(f"cannot open {self.path}: {e}") from None
        try:
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = FULL")
            db.execute("PRAGMA foreign_keys = ON")
            db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            yield db
            if db.in_transaction:  # executescript() commits on its own
                db.execute("COMMIT")
        except BaseException as e:
            if db.in_transaction:
                with suppress(sqlite3.DatabaseError):  # a damaged file may refuse this too
                    db.execute("ROLLBACK")
            if type(e) in (sqlite3.DatabaseError, sqlite3.OperationalError):
                raise UnseeError(
                    f"cannot read {self.path} ({e}): it is damaged or not an unsee feedback"
                    " store; restore it from a backup, or move it away to start labelling anew"
                ) from None
            raise
        finally:
            db.close()

    # ------------------------------------------------------------ images

    def register_images(self, records: list[dict]) -> int:
        """Add the images of an image-set metadata file (existing ones are kept)."""
        with self._connect() as db:
            before = db.total_changes
            db.executemany(
                "INSERT OR IGNORE INTO images (file_name, prompt, metadata) VALUES (?, ?, ?)",
                [(r["file_name"], r.get("prompt", ""), json.dumps(r)) for r in records],
            )
            return db.total_changes - before

    def images(self) -> list[Image]:
        with self._connect(write=False) as db:
            rows = db.execute("SELECT image_id, file_name, prompt FROM images ORDER BY image_id")
            return [Image(*row) for row in rows]

    def image(self, image_id: int) -> Image | None:
        with self._connect(write=False) as db:
            row = db.execute(
                "SELECT image_id, file_name, prompt FROM images WHERE image_id = ?", (image_id,)
            ).fetchone()
        return Image(*row) if row else None

    # ------------------------------------------------------------ decisions

    def add_label(self, image_id: int, annotator: str, label: str, seconds: float | None) -> int:
        """Record a binary decision; returns its decision_id once it is on disk."""
        if label not in LABELS:
            raise ValueError(f"label must be one of {LABELS}, not {label!r}")
        with self._connect() as db:
            cur = db.execute(
                "INSERT INTO decisions (image_id, annotator, kind, label, seconds, created_at)"
                " VALUES (?, ?, 'label', ?, ?, ?)",
                (image_id, annotator, label, seconds, time.time()),
            )
            return int(cur.lastrowid)

    def add_ranking(self, image_ids: list[int], annotator: str, seconds: float | None) -> str:
        """Record one ranking: image_ids[0] is most like the concept (rank 1)."""
        if len(set(image_ids)) != len(image_ids) or len(image_ids) < 2:
            raise ValueError("a ranking needs at least 2 distinct images, no ties")
        ranking_id = uuid.uuid4().hex
        now = time.time()
        with self._connect() as db:
            db.executemany(
                "INSERT INTO decisions (image_id, annotator, kind, rank, ranking_id, seconds,"
                " created_at) VALUES (?, ?, 'rank', ?, ?, ?, ?)",
                [(i, annotator, r, ranking_id, seconds, now) for r, i in enumerate(image_ids, 1)],
            )
        return ranking_id

    def undo(self, annotator: str) -> dict | None:
        """Mark the annotator's latest live decision (or whole ranking) undone; return it."""
        with self._connect() as db:
            row = db.execute(
                "SELECT decision_id, image_id, kind, label, ranking_id FROM decisions"
                " WHERE annotator = ? AND undone_at IS NULL ORDER BY decision_id DESC LIMIT 1",
                (annotator,),
            ).fetchone()
            if row is None:
                return None
            decision_id, image_id, kind, label, ranking_id = row
            now = time.time()
            if kind == "rank":
                db.execute(
                    "UPDATE decisions SET undone_at = ? WHERE ranking_id = ?", (now, ranking_id)
                )
                ids = [
                    r[0]
                    for r in db.execute(
                        "SELECT image_id FROM decisions WHERE ranking_id = ? ORDER BY rank",
                        (ranking_id,),
                    )
                ]
                return {"kind": "rank", "ranking_id": ranking_id, "image_ids": ids}
            db.execute(
                "UPDATE decisions SET undone_at = ? WHERE decision_id = ?", (now, decision_id)
            )
            return {
                "kind": "label",
                "decision_id": decision_id,
                "image_id": image_id,
                "label": label,
            }

    def decisions(self, include_undone: bool = False) -> list[dict]:
        """Every decision, oldest first, joined with its image's file name and prompt."""
        where = "" if include_undone else "WHERE d.undone_at IS NULL"
        with self._connect(write=False) as db:
            db.row_factory = sqlite3.Row
            rows = db.execute(
                "SELECT d.*, i.file_name, i.prompt FROM decisions d"
                f" JOIN images i USING (image_id) {where} ORDER BY d.decision_id"
            )
            return [dict(r) for r in rows]

    def current_labels(self) -> dict[tuple[int, str], str]:
        """(image_id, annotator) -> the label in force (the latest live binary decision)."""
        with self._connect(write=False) as db:
            rows = db.execute(
                "SELECT image_id, annotator, label FROM decisions WHERE decision_id IN ("
                " SELECT MAX(decision_id) FROM decisions WHERE kind = 'label'"
                " AND undone_at IS NULL GROUP BY image_id, annotator)"
            )
            return {(i, a): label for i, a, label in rows}

    def decided(self, annotator: str) -> set[int]:
        """Images the annotator has a live decision on (labelled, skipped or ranked)."""
        with self._connect(write=False) as db:
            rows = db.execute(
                "SELECT DISTINCT image_id FROM decisions WHERE annotator = ? AND undone_at IS NULL",
                (annotator,),
            )
            return {r[0] for r in rows}

    def recent(self, annotator: str, limit: int = 10) -> list[dict]:
        """The annotator's latest live binary decisions, newest first, one per image."""
        with self._connect(write=False) as db:
            db.row_factory = sqlite3.Row
            rows = db.execute(
                "SELECT d.decision_id, d.image_id, d.label, d.created_at, i.file_name, i.prompt"
                " FROM decisions d JOIN images i USING (image_id)"
                " WHERE d.decision_id IN (SELECT MAX(decision_id) FROM decisions"
                "  WHERE annotator = ? AND kind = 'label' AND undone_at IS NULL"
                "  GROUP BY image_id) ORDER BY d.decision_id DESC LIMIT ?",
                (annotator, limit),
            )
            return [dict(r) for r in rows]


def open_existing(folder: Path) -> FeedbackStore:
    if not (Path(folder) / STORE_NAME).is_file():
        raise UnseeError(
            f"{folder} has no {STORE_NAME}: label it first (`unsee label` or"
            " `unsee feedback simulate`)"
        )
    return FeedbackStore.for_folder(folder)
