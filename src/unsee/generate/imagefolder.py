"""The image-set folder: images/*.png + metadata.jsonl + run.json, written crash-safely.

- an image is written to a temporary name and renamed, so a PNG on disk is whole;
- its metadata line is appended (one write, fsync) only after the image is in place, so
  every line names a finished image; a line cut short by a kill is dropped on resume;
- run.json says whether the run finished ("complete": true) and with which settings.
The layout is the datasets library's imagefolder: load_dataset("imagefolder", data_dir=DIR).
"""

import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from PIL import Image, PngImagePlugin

METADATA = "metadata.jsonl"
RUN_FILE = "run.json"
IMAGES = "images"


def image_name(index: int) -> str:
    return f"{IMAGES}/{index:06d}.png"


@contextmanager
def atomic_file(path: Path, mode: str = "w") -> Iterator[IO]:
    """Open a temporary file beside `path`; on success it is synced and renamed to `path`,
    on failure removed: readers never see half a file.

    The file is created 0o666 less the umask, as any other tool creates files (mkstemp would
    make it 0o600 whatever the umask).
    """
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            break
        except FileExistsError:  # a name another writer holds: draw again
            continue
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_stale_temporaries(folder: Path) -> None:
    """Remove the temporary files (`.NAME.*.tmp`) a killed run left in `folder`.

    Only for a folder no other writer is using: a resuming run calls it before it writes.
    """
    for tmp in folder.glob(".*.tmp"):
        if tmp.is_file():
            tmp.unlink()


def atomic_write_text(path: Path, text: str) -> None:
    with atomic_file(path) as f:
        f.write(text)


def save_png(image: Image.Image, path: Path, info: dict[str, Any]) -> None:
    """Save a PNG atomically, with its metadata as a JSON text chunk named 'unsee'."""
    png_info = PngImagePlugin.PngInfo()
    png_info.add_text("unsee", json.dumps(info, ensure_ascii=False))
    with atomic_file(path, "wb") as f:
        image.save(f, format="PNG", pnginfo=png_info)


def append_line(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line in a single write (safe with several processes appending)."""
    data = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_finished(out: Path) -> dict[int, dict[str, Any]]:
    """Metadata of the images already finished in `out`, by index.

    A line counts when it parses and its image file exists; the rest (a line cut short by
    a kill, an image deleted by hand) is dropped, and that image is made again.
    """
    path = out / METADATA
    if not path.exists():
        return {}
    finished = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and (out / str(record.get("file_name"))).is_file():
            finished[int(record["index"])] = record
    return finished


def rewrite_metadata(out: Path, records: dict[int, dict[str, Any]]) -> None:
    """Replace metadata.jsonl with `records`, ordered by index."""
    lines = [json.dumps(records[i], ensure_ascii=False) + "\n" for i in sorted(records)]
    atomic_write_text(out / METADATA, "".join(lines))


def write_run_file(out: Path, run: dict[str, Any]) -> None:
    atomic_write_text(out / RUN_FILE, json.dumps(run, indent=2, ensure_ascii=False) + "\n")


class ImageWriter:
    """Saves images and appends their metadata lines on a background thread, in the order
    given, so PNG encoding and fsync overlap with sampling instead of stalling it.

    Each image is still written whole before its line (save_png, then append_line); an
    error in the thread is raised by the next put() or by close(). At most `pending`
    images wait in memory."""

    def __init__(self, out: Path, pending: int = 64) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.out = out
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="unsee-writer")
        self.futures: list = []
        self.pending = pending

    def _write(self, image: Image.Image, record: dict[str, Any]) -> None:
        save_png(image, self.out / record["file_name"], record)
        append_line(self.out / METADATA, record)

    def put(self, image: Image.Image, record: dict[str, Any]) -> None:
        done = [f for f in self.futures if f.done()]
        for f in done:
            f.result()  # raises the thread's error here
        self.futures = [f for f in self.futures if not f.done()]
        while len(self.futures) >= self.pending:
            self.futures.pop(0).result()
        self.futures.append(self.pool.submit(self._write, image, record))

    def close(self) -> None:
        """Wait for every image to be written; raise the first error, if any."""
        try:
            for f in self.futures:
                f.result()
        finally:
            self.pool.shutdown(wait=True)
            self.futures = []
