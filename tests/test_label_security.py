"""The labelling server refuses what another web site could make the labeller's browser send."""

import json
import random
import shutil
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from unsee.bench.label import make_world_set
from unsee.feedback.config import LabelConfig
from unsee.feedback.server import (
    MAX_BODY,
    PAGE_TOKEN_HEADER,
    BackgroundServer,
    build_app,
    open_state,
    page_token,
    page_url,
    served_hosts,
)
from unsee.feedback.store import FeedbackStore

LABEL = {"image_id": 1, "annotator": "me", "label": "bad"}


@pytest.fixture(scope="module")
def world_set(tmp_path_factory) -> Path:
    return make_world_set(tmp_path_factory.mktemp("security") / "set", 6)


@pytest.fixture
def folder(world_set, tmp_path) -> Path:
    shutil.copytree(world_set, tmp_path / "set")
    return tmp_path / "set"


def decisions(folder: Path) -> list[dict]:
    return FeedbackStore.for_folder(folder).decisions(include_undone=True)


def test_the_cross_site_curl_is_refused(folder):
    """The issue's probe: a text/plain POST from another origin, to a loopback server."""
    with BackgroundServer(LabelConfig(dir=folder, port=0)) as server:
        body = json.dumps(LABEL)
        for path in ("/api/label", "/api/undo", "/api/rank"):
            r = httpx.post(
                server.url + path,
                content=body,
                headers={"Content-Type": "text/plain", "Origin": "http://evil.example"},
            )
            assert r.status_code == 403, (path, r.text)
        # what a browser sends for a cross-origin form or fetch: still no write
        r = httpx.post(
            server.url + "/api/label",
            data={"image_id": "1", "annotator": "me", "label": "bad"},
            headers={"Origin": "http://evil.example"},
        )
        assert r.status_code == 403
        r = httpx.post(
            server.url + "/api/label",
            json=LABEL,
            headers={"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"},
        )
        assert r.status_code == 403
    assert not decisions(folder)


def test_a_write_needs_the_page_token_even_on_loopback(folder):
    with BackgroundServer(LabelConfig(dir=folder, port=0)) as server:
        assert httpx.post(server.url + "/api/label", json=LABEL).status_code == 403
        wrong = {PAGE_TOKEN_HEADER: "guess"}
        assert httpx.post(server.url + "/api/label", json=LABEL, headers=wrong).status_code == 403
        assert not decisions(folder)
        token = page_token(httpx.get(server.url + "/").text)
        assert token == server.state.page_token
        ok = {PAGE_TOKEN_HEADER: token, "Origin": server.url}
        r = httpx.post(server.url + "/api/label", json=LABEL, headers=ok)
        assert r.status_code == 200 and r.json()["saved"] is True
        # the token alone is not enough: JSON only
        r = httpx.post(
            server.url + "/api/label",
            content=json.dumps(LABEL),
            headers={PAGE_TOKEN_HEADER: token, "Content-Type": "text/plain"},
        )
        assert r.status_code == 415
    assert len(decisions(folder)) == 1


def test_a_foreign_host_is_refused_dns_rebinding(folder):
    with BackgroundServer(LabelConfig(dir=folder, port=0)) as server:
        port = server.url.rsplit(":", 1)[1]
        rebound = {"Host": f"evil.example:{port}"}
        assert httpx.get(server.url + "/", headers=rebound).status_code == 403
        assert httpx.get(server.url + "/api/config", headers=rebound).status_code == 403
        wrong_port = {"Host": "127.0.0.1:1"}
        assert httpx.get(server.url + "/", headers=wrong_port).status_code == 403
        for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}"):
            assert httpx.get(server.url + "/api/config", headers={"Host": host}).status_code == 200


def test_served_hosts_and_the_printed_url():
    assert served_hosts("127.0.0.1", 8765) == {
        "127.0.0.1:8765",
        "localhost:8765",
        "[::1]:8765",
    }
    assert "127.0.0.2:9000" in served_hosts("127.0.0.2", 9000)
    assert served_hosts("192.0.2.7", 80) == {"192.0.2.7:80", "192.0.2.7"}
    assert page_url("127.0.0.1", 8765) == "http://localhost:8765"
    assert page_url("127.0.0.2", 8765) == "http://127.0.0.2:8765"  # localhost would not connect
    assert page_url("::1", 8765) == "http://[::1]:8765"


def client(folder: Path, **kw) -> tuple[TestClient, str]:
    state = open_state(LabelConfig(dir=folder, **kw))
    app = build_app(state, frozenset({"testserver"}))
    return TestClient(app, raise_server_exceptions=False), state.page_token


def test_a_ranking_is_refused_in_binary_mode(folder):
    c, token = client(folder)
    r = c.post(
        "/api/rank",
        json={"image_ids": [1, 2], "annotator": "me"},
        headers={PAGE_TOKEN_HEADER: token},
    )
    assert r.status_code == 409 and "--mode rank" in r.json()["error"]
    assert not decisions(folder)


def test_deep_nesting_is_a_400(folder):
    c, token = client(folder)
    depth = MAX_BODY // 2 - 10
    body = "[" * depth + "]" * depth
    r = c.post(
        "/api/label",
        content=body,
        headers={PAGE_TOKEN_HEADER: token, "Content-Type": "application/json"},
    )
    assert r.status_code == 400 and "nested" in r.json()["error"]


async def _call(app, headers: dict[str, str], chunks: int) -> tuple[int, int]:
    """POST `chunks` chunks of 1 MiB straight into the app: (status, chunks it read)."""
    read = 0
    sent = []

    async def receive() -> dict:
        nonlocal read
        read += 1
        return {"type": "http.request", "body": b"x" * 2**20, "more_body": read < chunks}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/label",
        "raw_path": b"/api/label",
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 1),
        "server": ("testserver", 80),
    }
    await app(scope, receive, send)
    return sent[0]["status"], read


@pytest.mark.anyio
@pytest.mark.parametrize("declared", [True, False])
async def test_a_300_mb_body_is_refused_before_it_is_read(folder, declared):
    state = open_state(LabelConfig(dir=folder))
    app = build_app(state, frozenset({"testserver"}))
    headers = {
        "Host": "testserver",
        "Content-Type": "application/json",
        PAGE_TOKEN_HEADER: state.page_token,
    }
    if declared:
        headers["Content-Length"] = str(300 * 2**20)
    status, read = await _call(app, headers, chunks=300)
    assert status == 413
    assert read <= 1  # at most the first chunk, never the 300 MB


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_fuzz_never_a_5xx_never_a_write_without_the_token(folder):
    """Random bodies, content types, origins, hosts, sizes and nesting (seeded, bounded)."""
    c, token = client(folder, mode="rank")
    rng = random.Random(22)
    paths = ["/api/label", "/api/undo", "/api/rank", "/api/next", "/api/config", "/", "/x"]
    types = [None, "application/json", "application/json; charset=utf-8", "text/plain"]
    types += ["application/x-www-form-urlencoded", "multipart/form-data", "APPLICATION/JSON"]
    origins = [None, "http://testserver", "http://evil.example", "null", "http://testserver:1"]
    hosts = ["testserver", "evil.example", "testserver:80", "localhost", "", "TESTSERVER"]
    tokens = [None, token, "wrong", token + "x", ""]

    def body() -> bytes:
        kind = rng.randrange(7)
        if kind == 0:
            return json.dumps({**LABEL, "image_id": rng.randrange(-2, 9)}).encode()
        if kind == 1:
            ids = [rng.randrange(0, 8) for _ in range(rng.randrange(0, 5))]
            return json.dumps({"image_ids": ids, "annotator": "me"}).encode()
        if kind == 2:
            depth = rng.choice([1, 50, 900, 5000, 30000])
            return b"[" * depth + b"]" * depth
        if kind == 3:
            return bytes(rng.randrange(256) for _ in range(rng.randrange(0, 200)))
        if kind == 4:
            return b"x" * rng.choice([0, MAX_BODY, MAX_BODY + 1, 3 * MAX_BODY])
        if kind == 5:
            value = rng.choice(["NaN", "Infinity", "1e400", "null", '"a"', "[]", "{}"])
            return json.dumps({**LABEL, "seconds": "@"}).replace('"@"', value).encode()
        return json.dumps({"annotator": rng.choice(["", " ", "me", "x" * 100, 5])}).encode()

    writes_before = 0
    for _ in range(400):
        # the page's own request, each part of it replaced by a random one 4 times in 10
        def pick(page, choices):
            return rng.choice(choices) if rng.random() < 0.4 else page

        headers = {"Host": pick("testserver", hosts)}
        for name, value in (
            ("Content-Type", pick("application/json", types)),
            ("Origin", pick("http://testserver", origins)),
            (PAGE_TOKEN_HEADER, pick(token, tokens)),
        ):
            if value is not None:
                headers[name] = value
        method = pick("POST", ["POST", "GET", "PUT", "DELETE"])
        path = pick(rng.choice(paths[:3]), paths)
        r = c.request(method, path, content=body(), headers=headers)
        assert r.status_code < 500, (headers, r.text)
        writes = len(decisions(folder))
        if writes != writes_before:
            assert headers.get(PAGE_TOKEN_HEADER) == token, headers
            assert headers["Host"].lower() == "testserver"  # names are case-blind
            assert headers.get("Origin", "http://testserver").lower() == "http://testserver"
            assert headers["Content-Type"].split(";")[0].lower() == "application/json"
        writes_before = writes
    assert writes_before > 0  # the loop did reach the store with the page's requests
