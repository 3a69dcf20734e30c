"""`unsee label DIR`: the labelling page and its JSON API (Starlette + uvicorn).

API (the page uses it; scripts may too). With a token, every request carries it as the
header `X-Unsee-Token` or the query parameter `token`.
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

import hmac
import json
import random
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


@dataclass
class LabelState:
    """What one server knows beyond the store: the order and what it has handed out."""

    store: FeedbackStore
    folder: Path
    cfg: LabelConfig
    order: list[int] = field(default_factory=list)
    served: dict[str, set[int]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


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
    for line in path.read_text().splitlines():
        row = json.loads(line)
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
    body = await request.body()
    if len(body) > MAX_BODY:
        raise HTTPException(413, "request body too large")
    try:
        data = json.loads(body or b"null")
    except json.JSONDecodeError:
        raise HTTPException(400, "body is not JSON") from None
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


def build_app(state: LabelState) -> Starlette:
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
    if cfg.token is not None:
        app.add_middleware(_TokenMiddleware, token=cfg.token)
    return app


class _TokenMiddleware:
    """Refuse any request that does not carry the token (header or query parameter)."""

    def __init__(self, app, token: str) -> None:
        self.app, self.token = app, token.encode()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            request = Request(scope)
            given = request.headers.get("x-unsee-token") or request.query_params.get("token")
            if not given or not hmac.compare_digest(given.encode(), self.token):
                await _bad("missing or wrong token", 401)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def open_state(cfg: LabelConfig) -> LabelState:
    from unsee.evaluate.judge import read_image_set

    folder = Path(cfg.dir)
    records = read_image_set(folder)
    store = FeedbackStore.for_folder(folder)
    store.register_images(records)
    names = {r["file_name"] for r in records}
    ids = {i.file_name: i.image_id for i in store.images() if i.file_name in names}
    return LabelState(store=store, folder=folder, cfg=cfg, order=_order(ids, cfg))


def _is_loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


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
    shown = "localhost" if _is_loopback(cfg.host) else cfg.host
    url = f"http://{shown}:{port}/?annotator={cfg.annotator}"
    if cfg.token:
        url += f"&token={cfg.token}"
    print(f"labelling {len(state.order)} images of {cfg.dir} ({cfg.mode} mode)", flush=True)
    print(f"open {url}", flush=True)
    print("stop with Ctrl-C; every decision is saved as it is made", flush=True)
    if cfg.open_browser:
        import webbrowser

        webbrowser.open(url)
    server = uvicorn.Server(uvicorn.Config(build_app(state), log_level="warning"))
    server.run(sockets=[sock])


class BackgroundServer:
    """The labelling server on a free local port, in a thread (tests and benchmarks)."""

    def __init__(self, cfg: LabelConfig) -> None:
        import uvicorn

        self.state = open_state(cfg)
        self.sock = bind(cfg.host, cfg.port)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(build_app(self.state), log_level="warning"))
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
