import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from unsee.errors import UnseeError
from unsee.feedback.config import LabelConfig
from unsee.feedback.server import PAGE_TOKEN_HEADER, bind, build_app, open_state, page_token
from unsee.feedback.store import FeedbackStore
from unsee.generate.config import GenerateConfig
from unsee.generate.run import generate


@pytest.fixture(scope="module")
def image_set(tiny_sd, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("label") / "set"
    return generate(
        GenerateConfig(
            model=str(tiny_sd), device="cpu", prompt="a red circle", n=12, steps=2, out=out
        )
    )


@pytest.fixture
def fresh_set(image_set, tmp_path) -> Path:
    import shutil

    folder = tmp_path / "set"
    shutil.copytree(image_set, folder)
    return folder


def client(folder: Path, **kw) -> TestClient:
    """A client as the served page is: same origin, the page token on every request."""
    state = open_state(LabelConfig(dir=folder, **kw))
    app = build_app(state, frozenset({"testserver"}))
    return TestClient(app, headers={PAGE_TOKEN_HEADER: state.page_token})


def test_binary_flow_every_endpoint(fresh_set):
    c = client(fresh_set, order="sequential")
    cfg = c.get("/api/config").json()
    assert cfg["mode"] == "binary" and cfg["images"] == 12 and cfg["keys"]["b"] == "bad"
    page = c.get("/")
    assert page.status_code == 200 and "unsee" in page.text
    assert "http://" not in page.text and "https://" not in page.text  # nothing from outside

    first = c.get("/api/next", params={"annotator": "ann"}).json()
    assert set(first) == {"image_id", "url", "prompt"} and first["prompt"] == "a red circle"
    img = c.get(first["url"])
    assert img.status_code == 200 and img.headers["content-type"] == "image/png"
    saved = c.post(
        "/api/label",
        json={"image_id": first["image_id"], "annotator": "ann", "label": "bad", "seconds": 1.5},
    ).json()
    assert saved["saved"] is True
    # each image is served to each annotator once
    served = {first["image_id"]}
    while True:
        r = c.get("/api/next", params={"annotator": "ann"}).json()
        if r.get("done"):
            break
        assert r["image_id"] not in served
        served.add(r["image_id"])
    assert len(served) == 12
    other = c.get("/api/next", params={"annotator": "bob"}).json()  # bob sees them too
    assert "image_id" in other

    stats = c.get("/api/stats", params={"annotator": "ann"}).json()
    assert (stats["labelled"], stats["bad"], stats["remaining"]) == (1, 1, 11)
    recent = c.get("/api/recent", params={"annotator": "ann"}).json()["recent"]
    assert [r["label"] for r in recent] == ["bad"]

    undone = c.post("/api/undo", json={"annotator": "ann"}).json()["undone"]
    assert undone["image_id"] == first["image_id"] and undone["label"] == "bad"
    assert c.post("/api/undo", json={"annotator": "ann"}).json()["undone"] is None
    # the undone image is served again
    assert c.get("/api/next", params={"annotator": "ann"}).json()["image_id"] == first["image_id"]
    store = FeedbackStore.for_folder(fresh_set)
    assert [d["undone_at"] is not None for d in store.decisions(include_undone=True)] == [True]


def test_relabel_supersedes_and_rank(fresh_set):
    c = client(fresh_set, mode="rank")
    assert c.post("/api/label", json={"image_id": 1, "annotator": "a", "label": "bad"}).json()
    assert c.post("/api/label", json={"image_id": 1, "annotator": "a", "label": "good"}).json()
    store = FeedbackStore.for_folder(fresh_set)
    assert store.current_labels() == {(1, "a"): "good"}
    r = c.post("/api/rank", json={"image_ids": [3, 2, 4], "annotator": "a", "seconds": 4}).json()
    assert r["saved"] is True
    ranks = [(d["image_id"], d["rank"]) for d in store.decisions() if d["kind"] == "rank"]
    assert ranks == [(3, 1), (2, 2), (4, 3)]
    assert c.post("/api/undo", json={"annotator": "a"}).json()["undone"]["image_ids"] == [3, 2, 4]
    assert not [d for d in store.decisions() if d["kind"] == "rank"]


@pytest.mark.parametrize(
    "method,path,body,status,message",
    [
        ("post", "/api/label", "not json", 400, "not JSON"),
        ("post", "/api/label", [1, 2], 400, "JSON object"),
        ("post", "/api/label", {"image_id": 1, "annotator": "a", "label": "meh"}, 400, "label"),
        ("post", "/api/label", {"image_id": 999, "annotator": "a", "label": "bad"}, 404, "999"),
        ("post", "/api/label", {"image_id": "1", "annotator": "a", "label": "bad"}, 400, "integer"),
        ("post", "/api/label", {"image_id": 1, "label": "bad"}, 400, "annotator"),
        (
            "post",
            "/api/label",
            {"image_id": 1, "annotator": "a", "label": "bad", "seconds": -3},
            400,
            "seconds",
        ),
        ("post", "/api/rank", {"image_ids": [1, 1, 2], "annotator": "a"}, 400, "ties"),
        ("post", "/api/rank", {"image_ids": [1], "annotator": "a"}, 400, "at least 2"),
        ("post", "/api/undo", {}, 400, "annotator"),
        ("get", "/api/next", None, 400, "annotator"),
        ("get", "/images/..%2F..%2Fmetadata.jsonl", None, 404, None),
        ("get", "/images/abc", None, 404, "no such image"),
        ("get", "/images/12345", None, 404, "no such image"),
        ("get", "/nowhere", None, 404, None),
        ("get", "/api/label", None, 405, None),
    ],
)
def test_bad_requests_get_a_4xx_with_a_message(fresh_set, method, path, body, status, message):
    c = client(fresh_set, mode="rank")  # rank mode takes labels and rankings
    if body is None:
        r = getattr(c, method)(path)
    elif isinstance(body, str):
        r = c.post(path, content=body, headers={"Content-Type": "application/json"})
    else:
        r = c.post(path, json=body)
    assert r.status_code == status
    if message:
        assert message in r.json()["error"]
    assert not FeedbackStore.for_folder(fresh_set).decisions()


def test_huge_body_is_refused(fresh_set):
    r = client(fresh_set).post(
        "/api/label", content=b"x" * 100_000, headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 413


def test_token_is_required_when_set(fresh_set):
    c = client(fresh_set, token="s3cret")
    assert c.get("/api/config").status_code == 401
    assert c.get("/").status_code == 401
    assert c.get("/api/config", headers={"X-Unsee-Token": "wrong"}).status_code == 401
    assert c.get("/api/config", headers={"X-Unsee-Token": "s3cret"}).status_code == 200
    assert c.get("/api/config?token=s3cret").status_code == 200
    assert c.get("/images/1?token=s3cret").status_code == 200


def test_until_bad_stops_serving(fresh_set):
    c = client(fresh_set, until_bad=2)
    for image_id in (1, 2):
        c.post("/api/label", json={"image_id": image_id, "annotator": "a", "label": "bad"})
    assert c.get("/api/next", params={"annotator": "a"}).json()["done"] is True
    assert c.get("/api/stats", params={"annotator": "a"}).json()["stopped"] is True


def test_port_in_use_is_a_clear_error():
    taken = bind("127.0.0.1", 0)
    port = taken.getsockname()[1]
    with pytest.raises(UnseeError, match=f"cannot listen on 127.0.0.1:{port}.*--port"):
        bind("127.0.0.1", port)
    taken.close()


def test_label_cli_errors(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "unsee", "label", str(tmp_path)], capture_output=True, text=True
    )
    assert out.returncode == 2 and "no metadata.jsonl" in out.stderr


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _start_server(folder: Path, port: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "unsee", "label", str(folder), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    for _ in range(300):
        try:
            httpx.get(f"http://127.0.0.1:{port}/api/config", timeout=1)
            return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError(proc.stdout.read().decode())


def _page_client(port: int) -> httpx.Client:
    """A client that posts as the page does: with the token read from the served page."""
    base = f"http://127.0.0.1:{port}"
    token = page_token(httpx.get(base + "/", timeout=30).text)
    return httpx.Client(base_url=base, timeout=30, headers={PAGE_TOKEN_HEADER: token})


def test_eight_annotators_400_decisions_all_stored(fresh_set):
    port = _free_port()
    proc = _start_server(fresh_set, port)
    acked = []
    errors = []

    def annotate(k: int) -> None:
        with _page_client(port) as http:
            for j in range(50):
                body = {
                    "image_id": 1 + (k + j) % 12,
                    "annotator": f"a{k}",
                    "label": ("bad", "good", "skip")[j % 3],
                    "seconds": 0.1,
                }
                r = http.post("/api/label", json=body)
                if r.status_code != 200:
                    errors.append(r.text)
                else:
                    acked.append(r.json()["decision_id"])

    threads = [threading.Thread(target=annotate, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    proc.terminate()
    proc.wait(timeout=30)
    assert not errors
    stored = FeedbackStore.for_folder(fresh_set).decisions()
    assert len(acked) == 400 and len(stored) == 400
    assert {d["decision_id"] for d in stored} == set(acked)


def test_sigkill_loses_no_acknowledged_decision(fresh_set):
    port = _free_port()
    proc = _start_server(fresh_set, port)
    acked = []
    with _page_client(port) as http:
        for j in range(60):
            r = http.post(
                "/api/label", json={"image_id": 1 + j % 12, "annotator": "k", "label": "bad"}
            )
            acked.append(r.json()["decision_id"])
    os.kill(proc.pid, signal.SIGKILL)  # right after the last answer
    proc.wait(timeout=30)
    stored = {d["decision_id"] for d in FeedbackStore.for_folder(fresh_set).decisions()}
    assert set(acked) <= stored and len(acked) == 60


def test_two_servers_on_one_folder(fresh_set):
    a, b = client(fresh_set), client(fresh_set)
    for i in range(1, 7):
        (a if i % 2 else b).post(
            "/api/label", json={"image_id": i, "annotator": "x", "label": "good"}
        )
    assert len(FeedbackStore.for_folder(fresh_set).decisions()) == 6


def test_store_schema_version_is_checked(fresh_set):
    store = FeedbackStore.for_folder(fresh_set)
    import sqlite3

    db = sqlite3.connect(store.path)
    db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    db.commit()
    db.close()
    with pytest.raises(UnseeError, match="schema 99"):
        FeedbackStore.for_folder(fresh_set)


def test_bench_label_measures_round_trips(tmp_path):
    from unsee.bench.config import BenchLabelConfig
    from unsee.bench.label import run_bench_label

    results = run_bench_label(BenchLabelConfig(out=tmp_path, decisions=20, browser=False))
    assert results["round_trip"]["decisions"] == 20
    assert 0 < results["round_trip"]["p50_ms"] <= results["round_trip"]["p95_ms"]
    stored = FeedbackStore.for_folder(tmp_path / "image-set").decisions()
    assert len(stored) == 20
