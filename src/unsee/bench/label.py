"""`unsee bench label`: how fast the labelling page answers and how fast keys can go.

1. round trip: POST /api/label, one decision after another, against a local server
   (each answer comes after the decision is committed to disk): p50 / p95 / max in ms;
2. keyboard: headless Chromium presses "g" the moment each image is on screen, so the
   rate is what the page allows, a person's reaction time aside: decisions per minute.
The images are rendered world images (no model needed).
"""

import json
import statistics
import time
import urllib.request
from pathlib import Path

from PIL import Image

from unsee.bench.config import BenchLabelConfig
from unsee.feedback.browser import open_browser, press, wait_for
from unsee.feedback.config import LabelConfig
from unsee.feedback.server import PAGE_TOKEN_HEADER, BackgroundServer
from unsee.feedback.store import FeedbackStore
from unsee.imageset import IMAGES, atomic_write_text, image_record, rewrite_metadata, save_png
from unsee.world.render import make_dataset


def make_world_set(folder: Path, n: int, seed: int = 0) -> Path:
    """An image folder of n rendered world images with their captions as prompts."""
    (folder / IMAGES).mkdir(parents=True, exist_ok=True)
    images, _, captions = make_dataset(n, seed)
    records = {}
    for i, (image, text) in enumerate(zip(images, captions, strict=True)):
        records[i] = image_record(i, prompt=text)
        save_png(Image.fromarray(image), folder / records[i]["file_name"], records[i])
    rewrite_metadata(folder, records)
    return folder


def _post(url: str, body: dict, page_token: str) -> dict:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", PAGE_TOKEN_HEADER: page_token},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def time_api(folder: Path, n: int) -> dict:
    with BackgroundServer(LabelConfig(dir=folder, port=0)) as server:
        ms = []
        for i in range(n):
            start = time.perf_counter()
            answer = _post(
                server.url + "/api/label",
                {"image_id": 1 + i % 50, "annotator": "bench", "label": "good"},
                server.state.page_token,
            )
            ms.append((time.perf_counter() - start) * 1000)
            assert answer["saved"]
    return {
        "decisions": n,
        "p50_ms": round(statistics.median(ms), 2),
        "p95_ms": round(_percentile(ms, 0.95), 2),
        "max_ms": round(max(ms), 2),
    }


def time_keyboard(folder: Path, n: int) -> dict:
    driver = open_browser()
    try:
        with BackgroundServer(LabelConfig(dir=folder, port=0, order="sequential")) as server:
            driver.get(server.url + "/?annotator=keys")
            wait_for(driver, "document.getElementById('current')")
            start = time.perf_counter()
            for _ in range(n):
                wait_for(
                    driver,
                    "document.getElementById('current') &&"
                    " document.getElementById('current').complete",
                )
                shown = driver.execute_script("return document.getElementById('current').src")
                press(driver, "g")
                wait_for(
                    driver,
                    f"!document.getElementById('current') ||"
                    f" document.getElementById('current').src !== {shown!r}",
                )
            seconds = time.perf_counter() - start
            wait_for(driver, "!document.getElementById('status').textContent.includes('saving')")
        stored = len(
            [d for d in FeedbackStore.for_folder(folder).decisions() if d["annotator"] == "keys"]
        )
    finally:
        driver.quit()
    return {
        "decisions": n,
        "seconds": round(seconds, 2),
        "decisions_per_minute": round(60 * n / seconds),
        "stored": stored,
    }


def run_bench_label(cfg: BenchLabelConfig) -> dict:
    out = Path(cfg.out)
    folder = make_world_set(out / "image-set", max(200, cfg.browser_decisions + 10))
    for name in ("feedback.sqlite", "feedback.sqlite-wal", "feedback.sqlite-shm"):
        (folder / name).unlink(missing_ok=True)
    results = {"round_trip": time_api(folder, cfg.decisions)}
    if cfg.browser:
        results["keyboard"] = time_keyboard(folder, cfg.browser_decisions)
    results["settings"] = {
        "server": "unsee label on 127.0.0.1, SQLite WAL, synchronous=FULL",
        "client": "sequential POSTs (urllib) / headless Chromium keys",
    }
    atomic_write_text(out / "results.json", json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return results
