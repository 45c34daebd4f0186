"""The HTTP and WebSocket API of ``phaser serve`` (Starlette): the queue, the hub, files, the page.

Database calls run in worker threads (``run_in_threadpool``) so the event loop only moves
frames; a worker's ``update`` is published to the hub before anything else and never waits for
a subscriber. See ``phaser/server/__init__.py`` for the routes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket, WebSocketDisconnect

from phaser import __version__
from phaser.server.dashboards import Dashboards, dashboard_refusal
from phaser.server.hub import Hub
from phaser.server.security import BodyLimitMiddleware, Forbidden, Roots, TokenMiddleware, check_relative_name, file_in
from phaser.server.store import FINAL_STATES, JobStore
from phaser.server.submit import PlanProblems, check_submission

logger = logging.getLogger("phaser.server")

STATIC_DIR = Path(__file__).parent / "static"
MiB = 2**20
PLAN_BODY_LIMIT = 2 * MiB
UPDATE_BODY_LIMIT = 4 * MiB
WS_MESSAGE_CHARS = 4096  # what a browser may send on the job socket (it is read and ignored)
MAX_LOG_LINES = 1000  # per worker POST
MAX_LOG_LINE_CHARS = 2000
MAX_OUTPUTS = 2000  # output files listed per job


@dataclass
class ServerConfig:
    """What ``phaser serve`` was started with."""

    db_url: str
    roots: list[Path]
    token: str | None = None
    allow_custom_hooks: bool = False
    out_dirs: list[Path] = field(default_factory=list)  # besides the roots: where outputs may be served from
    worker_timeout_s: float = 60.0
    host: str = "127.0.0.1"  # the address the server binds (dashboards bind it too)
    allow_open_dashboards: bool = False  # serve optuna-dashboards (no authentication) beyond loopback
    requeue_every_s: float | None = None  # default: a quarter of the worker timeout, at most 5 s
    on_shutdown: Callable[[], None] | None = None
    on_started: list[Callable[[], Any]] = field(default_factory=list)
    on_stopping: list[Callable[[], Any]] = field(default_factory=list)


def _finite(value: Any) -> Any:
    """JSON has no NaN: non-finite numbers (a diverged error) become null, recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value


async def _json_body(request: Request) -> Any:
    try:
        return json.loads(await request.body())
    except (ValueError, UnicodeDecodeError):
        raise HTTPException(400, "the body is not valid JSON") from None


def _job_id(request: Request) -> int:
    return int(request.path_params["job_id"])


class Api:
    """The route handlers over one store, one hub and the roots."""

    def __init__(self, config: ServerConfig, store: JobStore):
        self.config = config
        self.store = store
        self.hub = Hub()
        self.roots = Roots(config.roots)
        self.dashboards = Dashboards()

    # -- clients ---------------------------------------------------------------------------------
    async def page(self, request: Request) -> Response:
        index = STATIC_DIR / "index.html"
        if not index.is_file():
            return JSONResponse({"reason": "the web page is not installed (phaser/server/static/index.html)"}, 404)
        return FileResponse(index)

    async def health(self, request: Request) -> Response:
        return JSONResponse({"ok": True, "version": __version__})

    async def _check(self, request: Request) -> Any:
        body = await _json_body(request)
        try:
            return await run_in_threadpool(
                check_submission, body, self.roots, self.config.allow_custom_hooks, PLAN_BODY_LIMIT
            )
        except PlanProblems as exc:
            raise _Problems(exc.problems) from None

    async def validate(self, request: Request) -> Response:
        sub = await self._check(request)
        reply = {"valid": True, "kind": sub.kind, "plans": [{"name": n} for n in sub.names], "niter": sub.niter}
        if sub.kind == "study":
            reply["study"] = sub.info
        return JSONResponse(reply)

    async def submit(self, request: Request) -> Response:
        sub = await self._check(request)
        job = await run_in_threadpool(
            self.store.submit,
            sub.name,
            sub.plan_yaml,
            str(sub.base_dir),
            sub.niter,
            sub.allow_hooks,
            sub.kind,
            sub.info,
        )
        return JSONResponse({"id": job["id"], "state": job["state"], "name": job["name"], "kind": job["kind"]}, 201)

    async def list_jobs(self, request: Request) -> Response:
        return JSONResponse({"jobs": await run_in_threadpool(self.store.list)})

    async def get_job(self, request: Request) -> Response:
        job = await run_in_threadpool(self.store.get, _job_id(request), True)
        if job is None:
            raise HTTPException(404, "no such job")
        return JSONResponse(job)

    async def cancel(self, request: Request) -> Response:
        job = await run_in_threadpool(self.store.cancel, _job_id(request))
        if job is None:
            raise HTTPException(404, "no such job")
        self._publish_job(job)
        return JSONResponse({"state": job["state"]})

    async def delete_job(self, request: Request) -> Response:
        job_id = _job_id(request)
        before = await run_in_threadpool(self.store.delete, job_id)
        if before is None:
            raise HTTPException(404, "no such job")
        if before == "running":
            raise HTTPException(409, "the job is running: cancel it first")
        self.hub.forget(job_id)
        return Response(status_code=204)

    async def read_log(self, request: Request) -> Response:
        job_id = _job_id(request)
        try:
            since = int(request.query_params.get("since", "0"))
        except ValueError:
            raise HTTPException(400, "since: expected an integer") from None
        if await run_in_threadpool(self.store.get, job_id) is None:
            raise HTTPException(404, "no such job")
        lines, next_index = await run_in_threadpool(self.store.read_log, job_id, since)
        return JSONResponse({"lines": lines, "next": next_index})

    async def latest(self, request: Request) -> Response:
        frame = self.hub.latest.get(_job_id(request))
        if frame is None:
            raise HTTPException(404, "no update from a worker yet")
        return JSONResponse(frame)

    async def files(self, request: Request) -> Response:
        relative = request.query_params.get("dir", "")
        folder = self.roots.resolve(relative) if relative not in ("", ".") else self.roots.first
        if not folder.is_dir():
            raise HTTPException(404, f"{relative!r} is not a folder")
        entries = await run_in_threadpool(self._entries, folder)
        return JSONResponse({"dir": self.roots.relative_name(folder), "entries": entries})

    def _entries(self, folder: Path) -> list[dict]:
        entries = []
        for child in sorted(folder.iterdir(), key=lambda p: p.name)[:5000]:
            resolved = child.resolve()
            if not self.roots.contains(resolved):
                continue  # a symbolic link out of the root is not shown
            entries.append({"name": child.name, "is_dir": resolved.is_dir()})
        return entries

    def _served_folder(self, out_dir: str | None) -> Path | None:
        """The job's output folder when this server may read it (inside a root or an ``out_dirs``
        folder, e.g. the local workers'); None otherwise (a remote worker's machine)."""
        if not out_dir:
            return None
        folder = Path(out_dir).resolve()
        allowed = [*self.roots.roots, *(Path(d).resolve() for d in self.config.out_dirs)]
        if not any(folder.is_relative_to(a) for a in allowed) or not folder.is_dir():
            return None
        return folder

    async def outputs(self, request: Request) -> Response:
        job_id = _job_id(request)
        found = await run_in_threadpool(self.store.outputs, job_id)
        if found is None:
            raise HTTPException(404, "no such job")
        out_dir, reported = found
        folder = await run_in_threadpool(self._served_folder, out_dir)
        if folder is None:
            files = [{"name": name} for name in reported[:MAX_OUTPUTS]]
            why = "the outputs are on the worker's machine, not readable here" if out_dir else "no output folder yet"
            return JSONResponse({"out_dir": out_dir, "downloadable": False, "reason": why, "files": files})
        files = await run_in_threadpool(_list_files, folder)
        return JSONResponse({"out_dir": out_dir, "downloadable": True, "files": files})

    async def output_file(self, request: Request) -> Response:
        job_id = _job_id(request)
        found = await run_in_threadpool(self.store.outputs, job_id)
        if found is None:
            raise HTTPException(404, "no such job")
        check_relative_name(request.path_params["name"])  # 403 for a name climbing out, wherever the outputs are
        folder = await run_in_threadpool(self._served_folder, found[0])
        if folder is None:
            raise Forbidden(f"the outputs of job {job_id} are not readable by this server (on the worker's machine)")
        path = file_in(folder, request.path_params["name"])
        if not path.is_file():
            raise HTTPException(404, f"{request.path_params['name']!r}: no such output file")
        disposition = "inline" if _inline(path) else "attachment"
        return FileResponse(path, filename=path.name, content_disposition_type=disposition)

    async def dashboard(self, request: Request) -> Response:
        """Start (once) optuna-dashboard for a study job's storage; reply with its study page's URL."""
        job = await run_in_threadpool(self.store.get, _job_id(request), True)
        if job is None:
            raise HTTPException(404, "no such job")
        if job.get("kind") != "study":
            raise HTTPException(409, "only a study job has a dashboard")
        refused = dashboard_refusal(self.config.host, self.config.allow_open_dashboards)
        if refused is not None:
            raise Forbidden(refused)
        try:
            dashboard = await run_in_threadpool(self._start_dashboard, job)
        except LookupError as exc:
            raise HTTPException(409, str(exc.args[0])) from None
        except ImportError as exc:
            raise HTTPException(501, f"optuna-dashboard is not installed here ({exc})") from None
        host = self.config.host
        if host in ("0.0.0.0", "::", ""):  # a wildcard: the name the client reached this server by
            host = request.url.hostname or "127.0.0.1"
        shown = f"[{host}]" if ":" in host else host
        return JSONResponse({"url": f"http://{shown}:{dashboard.port}/dashboard/studies/{dashboard.study_id}"})

    def _start_dashboard(self, job: dict) -> Any:
        from phaser.server.studies import study_of_job

        loaded = study_of_job(job)
        return self.dashboards.start(loaded.storage_url, loaded.spec.name, loaded.artifact_dir, self.config.host)

    async def shutdown(self, request: Request) -> Response:
        if self.config.token is None:
            raise Forbidden("shutting down over HTTP needs a token: start the server with --token")
        if self.config.on_shutdown is None:
            raise HTTPException(501, "this server cannot be shut down over HTTP")
        asyncio.get_running_loop().call_later(0.1, self.config.on_shutdown)
        return JSONResponse({"stopping": True}, 202)

    # -- workers ---------------------------------------------------------------------------------
    async def claim(self, request: Request) -> Response:
        body = await _json_body(request)
        worker = body.get("worker") if isinstance(body, dict) else None
        if not isinstance(worker, str) or not worker.strip():
            raise HTTPException(400, "worker: a name is needed")
        job = await run_in_threadpool(self.store.claim, worker.strip())
        if job is None:
            return Response(status_code=204)
        job["heartbeat_s"] = self.heartbeat_interval
        full = await run_in_threadpool(self.store.get, job["id"])
        if full is not None:
            self._publish_job(full)
        return JSONResponse(job)

    @property
    def heartbeat_interval(self) -> float:
        return max(0.1, min(10.0, self.config.worker_timeout_s / 4))

    async def heartbeat(self, request: Request) -> Response:
        body = await _json_body(request) if await request.body() else {}
        worker = body.get("worker") if isinstance(body, dict) else None
        stop = await run_in_threadpool(self.store.heartbeat, _job_id(request), worker)
        if stop is None:
            raise HTTPException(404, "no such job")
        return JSONResponse({"cancel": stop})

    async def update(self, request: Request) -> Response:
        job_id = _job_id(request)
        body = await _json_body(request)
        if not isinstance(body, dict):
            raise HTTPException(400, "expected a JSON object")
        body = _finite(body)
        frame = {**body, "type": "update", "job": job_id, "received": time.time()}
        self.hub.publish(job_id, frame)  # first: subscribers never wait for the database
        progress = {k: body.get(k) for k in ("iteration", "niter")}
        progress["error"] = body.get("error") if isinstance(body.get("error"), (int, float)) else None
        stop = await run_in_threadpool(self.store.heartbeat, job_id, body.get("worker"), progress)
        if stop is None:
            self.hub.forget(job_id)
            raise HTTPException(404, "no such job")
        return JSONResponse({"cancel": stop})

    async def post_log(self, request: Request) -> Response:
        job_id = _job_id(request)
        body = await _json_body(request)
        lines = body.get("lines") if isinstance(body, dict) else None
        if not isinstance(lines, list) or len(lines) > MAX_LOG_LINES:
            raise HTTPException(400, f"lines: expected a list of at most {MAX_LOG_LINES} strings")
        lines = [str(line)[:MAX_LOG_LINE_CHARS] for line in lines]
        first = await run_in_threadpool(self.store.log_length, job_id)
        if not await run_in_threadpool(self.store.append_log, job_id, lines):
            raise HTTPException(404, "no such job")
        self.hub.publish(job_id, {"type": "log", "lines": lines, "first": first, "next": first + len(lines)})
        return JSONResponse({"next": first + len(lines)})

    async def finish(self, request: Request) -> Response:
        job_id = _job_id(request)
        body = await _json_body(request)
        if not isinstance(body, dict) or body.get("state") not in (*FINAL_STATES, "queued"):
            raise HTTPException(400, f"state: one of {', '.join(FINAL_STATES)} (or queued to hand the job back)")
        reason, out_dir, outputs = body.get("reason"), body.get("out_dir"), body.get("outputs")
        reason = None if reason is None else str(reason)[:MAX_LOG_LINE_CHARS]
        out_dir = None if out_dir is None else str(out_dir)[:MAX_LOG_LINE_CHARS]
        if outputs is not None:
            if not isinstance(outputs, list):
                raise HTTPException(400, "outputs: expected a list of file names relative to out_dir")
            outputs = [str(name)[:MAX_LOG_LINE_CHARS] for name in outputs[:MAX_OUTPUTS]]
        job = await run_in_threadpool(
            self.store.finish, job_id, body["state"], reason, out_dir, body.get("worker"), outputs
        )
        if job is None:
            raise HTTPException(409, "the job is not running on this worker (requeued, cancelled or deleted)")
        self._publish_job(job)
        return JSONResponse(job)

    # -- WebSocket -------------------------------------------------------------------------------
    async def job_socket(self, websocket: WebSocket) -> None:
        job_id = int(websocket.path_params["job_id"])
        job = await run_in_threadpool(self.store.get, job_id)
        if job is None:
            await websocket.close(code=4404, reason="no such job")
            return
        await websocket.accept()
        sub = self.hub.subscribe(job_id)
        try:
            latest = self.hub.latest.get(job_id)
            if latest is not None:
                await websocket.send_json(latest)
            await websocket.send_json({"type": "job", **job})
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(self._ignore_messages, websocket, tasks.cancel_scope)
                while True:
                    for frame in await sub.next_frames():
                        await websocket.send_json(frame)
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass
        finally:
            self.hub.unsubscribe(job_id, sub)

    async def _ignore_messages(self, websocket: WebSocket, scope: anyio.CancelScope) -> None:
        """Read (and drop) what the browser sends; a disconnect or an oversized message ends the socket."""
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                data = message.get("text") or message.get("bytes") or ""
                if len(data) > WS_MESSAGE_CHARS:
                    await websocket.close(code=1009, reason="message too large")
                    break
        finally:
            scope.cancel()

    # -- background ------------------------------------------------------------------------------
    def _publish_job(self, job: dict) -> None:
        self.hub.publish(job["id"], {"type": "job", **job})

    async def requeue_loop(self) -> None:
        every = self.config.requeue_every_s or max(0.05, min(5.0, self.config.worker_timeout_s / 4))
        while True:
            await anyio.sleep(every)
            try:
                changed = await run_in_threadpool(self.store.requeue_lost, self.config.worker_timeout_s)
            except Exception as exc:  # noqa: BLE001 - the loop must outlive a database hiccup
                logger.warning("requeue check failed: %s", exc)
                continue
            for job in changed:
                logger.warning("job %d: worker lost; now %s", job["id"], job["state"])
                self._publish_job(job)


INLINE_SUFFIXES = (".png", ".jpg", ".jpeg", ".svg", ".txt", ".log", ".yaml", ".yml", ".json")


def _inline(path: Path) -> bool:
    return path.suffix.lower() in INLINE_SUFFIXES and path.suffix.lower() != ".svg"  # an SVG may hold script


def _list_files(folder: Path) -> list[dict]:
    """Files under ``folder`` (recursively, not through links out of it), names relative to it."""
    files = []
    for path in sorted(folder.rglob("*")):
        if len(files) >= MAX_OUTPUTS:
            break
        resolved = path.resolve()
        if resolved.is_file() and resolved.is_relative_to(folder):
            files.append({"name": path.relative_to(folder).as_posix(), "size": resolved.stat().st_size})
    return files


class _Problems(Exception):
    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems


async def _problems_response(request: Request, exc: _Problems) -> Response:
    return JSONResponse({"problems": [list(p) for p in exc.problems]}, 422)


async def _http_error(request: Request, exc: HTTPException) -> Response:
    if exc.status_code == 204:
        return Response(status_code=204)
    return JSONResponse({"reason": exc.detail}, exc.status_code)


def create_app(config: ServerConfig, store: JobStore | None = None) -> Starlette:
    """The ASGI app; opens the job database unless ``store`` is given (raises StoreError)."""
    store = store or JobStore(config.db_url)
    api = Api(config, store)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(api.requeue_loop)
            for hook in config.on_started:
                hook()
            try:
                yield
            finally:
                for hook in config.on_stopping:
                    hook()
                await run_in_threadpool(api.dashboards.stop_all)
                tasks.cancel_scope.cancel()

    job = "/api/jobs/{job_id:int}"
    routes = [
        Route("/", api.page),
        Route("/api/health", api.health),
        Route("/api/validate", api.validate, methods=["POST"]),
        Route("/api/jobs", api.list_jobs, methods=["GET"]),
        Route("/api/jobs", api.submit, methods=["POST"]),
        Route(job, api.get_job, methods=["GET"]),
        Route(job, api.delete_job, methods=["DELETE"]),
        Route(f"{job}/cancel", api.cancel, methods=["POST"]),
        Route(f"{job}/log", api.read_log, methods=["GET"]),
        Route(f"{job}/log", api.post_log, methods=["POST"]),
        Route(f"{job}/latest", api.latest),
        Route(f"{job}/heartbeat", api.heartbeat, methods=["POST"]),
        Route(f"{job}/update", api.update, methods=["POST"]),
        Route(f"{job}/finish", api.finish, methods=["POST"]),
        Route(f"{job}/dashboard", api.dashboard, methods=["POST"]),
        Route(f"{job}/outputs", api.outputs, methods=["GET"]),
        Route(f"{job}/outputs/{{name:path}}", api.output_file, methods=["GET"]),
        Route("/api/files", api.files),
        Route("/api/workers/claim", api.claim, methods=["POST"]),
        Route("/api/shutdown", api.shutdown, methods=["POST"]),
        WebSocketRoute("/ws/jobs/{job_id:int}", api.job_socket),
        Mount("/static", app=StaticFiles(directory=STATIC_DIR, check_dir=False), name="static"),
    ]
    middleware = [
        Middleware(TokenMiddleware, token=config.token),
        Middleware(
            BodyLimitMiddleware,
            default_limit=PLAN_BODY_LIMIT,
            limits={"/update": UPDATE_BODY_LIMIT, "/log": UPDATE_BODY_LIMIT},
        ),
    ]
    app = Starlette(
        routes=routes,
        middleware=middleware,
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error, _Problems: _problems_response},
    )
    app.state.api = api
    return app
