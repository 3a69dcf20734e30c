"""The image-set format, the one every command reads and writes: images/*.png +
metadata.jsonl + run.json, written crash-safely.

- an image is written to a temporary name and renamed, so a PNG on disk is whole;
- its metadata line is appended (one write, fsync) only after the image is in place, so
  every line names a finished image; a line cut short by a kill is dropped on resume;
- run.json says whether the run finished ("complete": true) and with which settings.
The layout is the datasets library's imagefolder: load_dataset("imagefolder", data_dir=DIR).

A metadata line (a record) names its image and how it was made: "file_name" and "index"
(`image_record`), then "prompt", "negative_prompt", "seed", "guidance", "steps",
"scheduler", "height", "width", "model", "unsee_version", and whatever the command that
made it adds (a reward's scores, an I2P case number, ...). Each PNG carries its record too,
as a JSON text chunk named "unsee".

Writing: atomic_file / atomic_write_text (any file, whole or not at all), save_png,
append_line, ImageWriter; resuming: read_finished, rewrite_metadata, write_run_file;
reading a finished set: read_image_set, load_images, read_run_file.
"""

import json
import os
import secrets
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np
from PIL import Image, PngImagePlugin, UnidentifiedImageError

from unsee.errors import UnseeError

METADATA = "metadata.jsonl"
RUN_FILE = "run.json"
IMAGES = "images"


def image_name(index: int) -> str:
    return f"{IMAGES}/{index:06d}.png"


def image_record(index: int, **fields: Any) -> dict[str, Any]:
    """The metadata record of image `index`: its file and index, then `fields`."""
    return {"file_name": image_name(index), "index": index, **fields}


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


def read_indexed(path: Path) -> dict[int, dict[str, Any]]:
    """The records of a jsonl file of indexed lines, by index; a line that does not parse
    (cut short by a kill) or has no index is dropped, a later line wins over an earlier."""
    if not path.is_file():
        return {}
    records = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and "index" in record:
            records[int(record["index"])] = record
    return records


def read_finished(out: Path) -> dict[int, dict[str, Any]]:
    """Metadata of the images already finished in `out`, by index.

    A line counts when it parses and its image file exists; the rest (a line cut short by
    a kill, an image deleted by hand) is dropped, and that image is made again.
    """
    return {
        index: record
        for index, record in read_indexed(out / METADATA).items()
        if (out / str(record.get("file_name"))).is_file()
    }


def rewrite_metadata(out: Path, records: dict[int, dict[str, Any]]) -> None:
    """Replace metadata.jsonl with `records`, ordered by index."""
    lines = [json.dumps(records[i], ensure_ascii=False) + "\n" for i in sorted(records)]
    atomic_write_text(out / METADATA, "".join(lines))


def write_run_file(out: Path, run: dict[str, Any]) -> None:
    atomic_write_text(out / RUN_FILE, json.dumps(run, indent=2, ensure_ascii=False) + "\n")


def read_run_file(out: Path) -> dict[str, Any]:
    """run.json of an image set: the settings, "complete", the sampling "seconds", ..."""
    return json.loads((out / RUN_FILE).read_text())


class ImageWriter:
    """Saves images and appends their metadata lines on a background thread, in the order
    given, so PNG encoding and fsync overlap with sampling instead of stalling it.

    Each image is still written whole before its line (save_png, then append_line); an
    error in the thread is raised by the next put() or by close(). At most `pending`
    images wait in memory."""

    def __init__(self, out: Path, pending: int = 64) -> None:
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
