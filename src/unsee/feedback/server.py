"""`unsee label DIR`: the labelling page and its JSON API (Starlette + uvicorn).

API (the page uses it; scripts may too). With a token, every request carries it as the
header `X-Unsee-Token` or the query parameter `token`. Every request must name the served
address in its Host header (localhost forms included) and, when it has an Origin, come from
the page's own origin. Every POST must be `Content-Type: application/json` and carry the
server's page token, a random value written into the page it serves
(`<meta name="unsee-page-token">`; `page_token` reads it), as the header
`X-Unsee-Page-Token`: another web site can neither read it nor send it.
  GET  /api/next?annotator=A      -> {"image_id", "url", "prompt"} | {"done": true}
  POST /api/label  {"image_id", "annotator", "label": "bad"|"good"|"skip", "seconds"?}
                                  -> {"saved": true, "decision_id"}
  POST /api/undo   {"annotator"}  -> {"undone": {...} | null}
  POST /api/rank   {"image_ids": [...], "annotator", "seconds"?}
                                  -> {"saved": true, "ranking_id"}
  GET  /api/stats?annotator=A     -> counters for the page
  GET  /api/recent?annotator=A    -> the last 10 binary decisions, newest first
  GET  /api/config                -> mode, sizes, stop target, key map
  GET  /images/{image_id}         -> the PNG of a registered image (nothing else is served)
A decision is committed to disk before "saved" is answered.
"""

import contextlib
import hmac
import ipaddress
import json
import random
import re
import secrets
import socket
import threading
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from unsee.errors import UnseeError
from unsee.feedback.config import LabelConfig
from unsee.feedback.store import LABELS, FeedbackStore
from unsee.imageset import read_image_set

KEYMAP = {
    "binary": {"b": "bad", "g": "good", "s": "skip", "u": "undo"},
    "grid": {
        "1-9, a-p": "toggle bad",
        "Enter": "submit page (the rest are good)",
        "u": "undo last image",
    },
    "rank": {
        "1-9": "next most like the concept",
        "Backspace": "take back a pick",
        "Enter": "submit the ranking",
        "u": "undo last ranking",
    },
}
MAX_BODY = 64 * 1024
PAGE_TOKEN_HEADER = "X-Unsee-Page-Token"
SAFE_METHODS = ("GET", "HEAD")
WILDCARD_HOSTS = ("0.0.0.0", "::", "")


@dataclass
class LabelState:
    """What one server knows beyond the store: the order and what it has handed out."""

    store: FeedbackStore
    folder: Path
    cfg: LabelConfig
    order: list[int] = field(default_factory=list)
    served: dict[str, set[int]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    page_token: str = field(default_factory=lambda: secrets.token_urlsafe(32))


def _order(ids: dict[str, int], cfg: LabelConfig) -> list[int]:
    """Image ids (by file name) in serving order."""
    if cfg.order == "sequential":
        return sorted(ids.values())
    if cfg.order == "shuffled":
        shuffled = sorted(ids.values())
        random.Random(cfg.seed).shuffle(shuffled)
        return shuffled
    path = Path(cfg.dir) / "reward.jsonl"
    if not path.is_file():
        raise UnseeError(
            f"--order {cfg.order} needs {path}: run `unsee reward score REWARD {cfg.dir}` first"
        )
    p_bad = {}
    fix = f"run `unsee reward score REWARD {cfg.dir}` again"
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise UnseeError(f"{path}:{n}: not a JSON line; {fix}") from None
        if (
            not isinstance(row, dict)
            or not isinstance(row.get("file_name"), str)
            or not isinstance(row.get("p_bad"), int | float)
            or isinstance(row["p_bad"], bool)
            or not 0 <= row["p_bad"] <= 1
        ):
            raise UnseeError(f"{path}:{n}: not a score (file_name, p_bad from 0 to 1); {fix}")
        p_bad[row["file_name"]] = row["p_bad"]
    key = (
        (lambda f: abs(p_bad.get(f, 0.5) - 0.5))
        if cfg.order == "uncertain"
        else (lambda f: -p_bad.get(f, 0.0))
    )
    return [ids[f] for f in sorted(ids, key=key)]


def _bad(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _json_body(request: Request) -> dict:
    """The body as a JSON object, read in chunks: refused (413) past MAX_BODY bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and not declared.isdigit():
        raise HTTPException(400, "Content-Length must be a number of bytes")
    if declared is not None and int(declared) > MAX_BODY:
        raise HTTPException(413, f"request body too large (at most {MAX_BODY} bytes)")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise HTTPException(413, f"request body too large (at most {MAX_BODY} bytes)")
    try:
        data = json.loads(bytes(body) or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise HTTPException(400, "body is not JSON") from None
    except RecursionError:
        raise HTTPException(400, "body is JSON nested too deeply") from None
    if not isinstance(data, dict):
        raise HTTPException(400, "body must be a JSON object")
    return data


def _annotator(value: object) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 64:
        raise HTTPException(400, "annotator must be a non-empty string of at most 64 characters")
    return value.strip()


def _seconds(value: object) -> float | None:
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value < 86400:
        raise HTTPException(400, "seconds must be a number between 0 and 86400")
    return float(value)


def _image_id(state: LabelState, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise HTTPException(400, "image_id must be an integer")
    if state.store.image(value) is None:
        raise HTTPException(404, f"no image {value} in this set")
    return value


def build_app(state: LabelState, hosts: frozenset[str]) -> Starlette:
    """The app; `hosts` are the Host header values it answers (`served_hosts`)."""
    store, cfg = state.store, state.cfg

    def stats(annotator: str) -> dict:
        labels = [lbl for (_, a), lbl in store.current_labels().items() if a == annotator]
        decided = store.decided(annotator)
        counts = {name: labels.count(name) for name in LABELS}
        done = cfg.until_bad is not None and counts["bad"] >= cfg.until_bad
        return {
            "labelled": len(decided),
            **counts,
            "remaining": len(state.order) - len(decided),
            "until_bad": cfg.until_bad,
            "stopped": done,
        }

    async def page(request: Request) -> Response:
        html = files("unsee.feedback").joinpath("page.html").read_text(encoding="utf-8")
        html = html.replace("{{PAGE_TOKEN}}", state.page_token)
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    async def config(request: Request) -> Response:
        return JSONResponse(
            {
                "mode": cfg.mode,
                "rank_size": cfg.rank_size,
                "grid_size": cfg.grid_size,
                "until_bad": cfg.until_bad,
                "annotator": cfg.annotator,
                "keys": KEYMAP[cfg.mode],
                "images": len(state.order),
            }
        )

    async def next_image(request: Request) -> Response:
        annotator = _annotator(request.query_params.get("annotator"))
        if stats(annotator)["stopped"]:
            return JSONResponse({"done": True, "reason": "until-bad target reached"})
        with state.lock:
            served = state.served.setdefault(annotator, set())
            decided = store.decided(annotator)
            for image_id in state.order:
                if image_id not in served and image_id not in decided:
                    served.add(image_id)
                    image = store.image(image_id)
                    return JSONResponse(
                        {"image_id": image_id, "url": f"/images/{image_id}", "prompt": image.prompt}
                    )
        return JSONResponse({"done": True})

    async def label(request: Request) -> Response:
        data = await _json_body(request)
        annotator = _annotator(data.get("annotator"))
        image_id = _image_id(state, data.get("image_id"))
        if data.get("label") not in LABELS:
            return _bad(f"label must be one of {', '.join(LABELS)}")
        decision_id = await run_in_threadpool(
            store.add_label, image_id, annotator, data["label"], _seconds(data.get("seconds"))
        )
        return JSONResponse({"saved": True, "decision_id": decision_id})

    async def rank(request: Request) -> Response:
        if cfg.mode != "rank":
            return _bad(f"this server labels in {cfg.mode} mode; rankings need --mode rank", 409)
        data = await _json_body(request)
        annotator = _annotator(data.get("annotator"))
        ids = data.get("image_ids")
        if not isinstance(ids, list) or len(ids) < 2:
            return _bad(
                "image_ids must be a list of at least 2 images, most like the concept first"
            )
        ids = [_image_id(state, i) for i in ids]
        if len(set(ids)) != len(ids):
            return _bad("a ranking cannot hold an image twice (ties are refused)")
        ranking_id = await run_in_threadpool(
            store.add_ranking, ids, annotator, _seconds(data.get("seconds"))
        )
        return JSONResponse({"saved": True, "ranking_id": ranking_id})

    async def undo(request: Request) -> Response:
        data = await _json_body(request)
        annotator = _annotator(data.get("annotator"))
        undone = await run_in_threadpool(store.undo, annotator)
        if undone is not None:  # serve the undone images again
            with state.lock:
                served = state.served.setdefault(annotator, set())
                served -= set(undone.get("image_ids", [undone.get("image_id")]))
        return JSONResponse({"undone": undone})

    async def get_stats(request: Request) -> Response:
        return JSONResponse(stats(_annotator(request.query_params.get("annotator"))))

    async def recent(request: Request) -> Response:
        annotator = _annotator(request.query_params.get("annotator"))
        return JSONResponse(
            {
                "recent": [
                    {
                        "image_id": r["image_id"],
                        "label": r["label"],
                        "url": f"/images/{r['image_id']}",
                        "prompt": r["prompt"],
                    }
                    for r in store.recent(annotator)
                ]
            }
        )

    async def image(request: Request) -> Response:
        try:
            image_id = int(request.path_params["image_id"])
        except ValueError:
            raise HTTPException(404, "no such image") from None
        record = store.image(image_id)
        if record is None:
            raise HTTPException(404, "no such image")
        path = (state.folder / record.file_name).resolve()
        if state.folder.resolve() not in path.parents or not path.is_file():
            raise HTTPException(404, "no such image")
        return FileResponse(
            path, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"}
        )

    async def on_http_error(request: Request, exc: HTTPException) -> Response:
        return _bad(exc.detail, exc.status_code)

    app = Starlette(
        routes=[
            Route("/", page),
            Route("/api/config", config),
            Route("/api/next", next_image),
            Route("/api/label", label, methods=["POST"]),
            Route("/api/rank", rank, methods=["POST"]),
            Route("/api/undo", undo, methods=["POST"]),
            Route("/api/stats", get_stats),
            Route("/api/recent", recent),
            Route("/images/{image_id}", image),
        ],
        exception_handlers={HTTPException: on_http_error},
    )
    app.add_middleware(_GuardMiddleware, state=state, hosts=hosts)
    return app


def _same(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


class _GuardMiddleware:
    """Refuse what another web site could make the labeller's browser send.

    Host must be an address this server is reached under (a foreign name is DNS rebinding);
    an Origin, when sent, must be the page's own; the --token, when set, on every request;
    a POST must be JSON and carry the page token, which only the served page holds.
    """

    def __init__(self, app, state: LabelState, hosts: frozenset[str]) -> None:
        self.app, self.state, self.hosts = app, state, hosts

    def _refusal(self, request: Request) -> JSONResponse | None:
        host = request.headers.get("host", "").lower()
        if host not in self.hosts:
            return _bad(f"Host {host!r} is not this server's address", 403)
        origin = request.headers.get("origin")
        if origin is not None and origin.lower() != f"http://{host}":
            return _bad("cross-origin requests are refused", 403)
        token = self.state.cfg.token
        if token is not None and not _same(
            request.headers.get("x-unsee-token") or request.query_params.get("token"), token
        ):
            return _bad("missing or wrong token", 401)
        if request.method in SAFE_METHODS:
            return None
        if not _same(request.headers.get(PAGE_TOKEN_HEADER), self.state.page_token):
            return _bad(f"missing or wrong {PAGE_TOKEN_HEADER} (send the page's token)", 403)
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type != "application/json":
            return _bad("requests that change labels must be Content-Type application/json", 415)
        return None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            refusal = self._refusal(Request(scope))
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)


def page_token(html: str) -> str:
    """The page token written into a served page (for scripts that post to the API)."""
    found = re.search(r'<meta name="unsee-page-token" content="([^"]+)">', html)
    if found is None:
        raise UnseeError("the page carries no unsee-page-token: is this an unsee label server?")
    return found.group(1)


def _host_form(name: str) -> str:
    return f"[{name}]" if ":" in name else name


def served_hosts(host: str, port: int) -> frozenset[str]:
    """The Host header values a server listening on host:port is reached under.

    The listening address itself, the localhost forms when it is a loopback or wildcard
    address, and for a wildcard address also this machine's names and addresses.
    """
    names = {host.lower()}
    if _is_loopback(host) or host in WILDCARD_HOSTS:
        names |= {"localhost", "127.0.0.1", "::1"}
    if host in WILDCARD_HOSTS:
        for name in (socket.gethostname(), socket.getfqdn()):
            names.add(name.lower())
            with contextlib.suppress(OSError):  # a name that does not resolve adds none
                names |= {info[4][0] for info in socket.getaddrinfo(name, None)}
    forms = {_host_form(name) for name in names - {""}}
    return frozenset({f"{form}:{port}" for form in forms} | (forms if port == 80 else set()))


def open_state(cfg: LabelConfig) -> LabelState:
    folder = Path(cfg.dir)
    records = read_image_set(folder)
    store = FeedbackStore.for_folder(folder)
    store.register_images(records)
    names = {r["file_name"] for r in records}
    ids = {i.file_name: i.image_id for i in store.images() if i.file_name in names}
    return LabelState(store=store, folder=folder, cfg=cfg, order=_order(ids, cfg))


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A listening socket, or a clear error when the port is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise UnseeError(
            f"cannot listen on {host}:{port} ({e.strerror}); is another server using it?"
            " Pass --port N, or --port 0 for any free port"
        ) from None
    sock.listen(128)
    return sock


def serve(cfg: LabelConfig) -> None:
    import uvicorn

    if not _is_loopback(cfg.host) and cfg.token is None:
        cfg.token = secrets.token_urlsafe(16)
    state = open_state(cfg)
    sock = bind(cfg.host, cfg.port)
    port = sock.getsockname()[1]
    url = f"{page_url(cfg.host, port)}/?annotator={cfg.annotator}"
    if cfg.token:
        url += f"&token={cfg.token}"
    print(f"labelling {len(state.order)} images of {cfg.dir} ({cfg.mode} mode)", flush=True)
    print(f"open {url}", flush=True)
    print("stop with Ctrl-C; every decision is saved as it is made", flush=True)
    if cfg.open_browser:
        import webbrowser

        webbrowser.open(url)
    app = build_app(state, served_hosts(cfg.host, port))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    server.run(sockets=[sock])


def page_url(host: str, port: int) -> str:
    """The address to open for a server listening on host:port (localhost for 127.0.0.1)."""
    shown = "localhost" if host in ("127.0.0.1", "localhost") else _host_form(host)
    return f"http://{shown}:{port}"


class BackgroundServer:
    """The labelling server on a free local port, in a thread (tests and benchmarks)."""

    def __init__(self, cfg: LabelConfig) -> None:
        import uvicorn

        self.state = open_state(cfg)
        self.sock = bind(cfg.host, cfg.port)
        port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        app = build_app(self.state, served_hosts(cfg.host, port))
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    def __enter__(self) -> "BackgroundServer":
        self.thread.start()
        while not self.server.started:
            threading.Event().wait(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()
