"""``phaser worker``: claims jobs from a ``phaser serve`` over HTTP, runs them, reports back.

The whole worker interface is five calls (so a batch-system worker can reuse it): ``claim``,
``heartbeat`` (answers whether to stop), ``update`` (progress and previews), ``log`` and
``finish`` (with the output folder and the files written there). A heartbeat thread keeps the
job alive while an iteration or a compile takes long; the observer sends progress at most
:data:`UPDATES_PER_S` times a second and stops the run when the server asks. A failure ends the
job as ``failed`` with its one-line reason; a worker stopped by Ctrl-C or SIGTERM hands its job
back to the queue.
"""

from __future__ import annotations

import json
import logging
import random
import signal
import socket
import threading
import time
import traceback
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from phaser.observers import Observer
from phaser.state import ReconsState

logger = logging.getLogger("phaser.worker")

UPDATES_PER_S = 2.0
MAX_ERRORS_SENT = 5000  # the error history sent with each update (its tail)
MAX_BACKOFF_S = 15.0


class JobCancelled(Exception):
    """The server asked this worker to stop its job (a cancel, or the job was given to another)."""


class ServerError(RuntimeError):
    """The server answered with an error status."""

    def __init__(self, status: int, reason: str):
        super().__init__(f"HTTP {status}: {reason}")
        self.status = status


class Client:
    """JSON over HTTP to one server, with the bearer token."""

    def __init__(self, url: str, token: str | None = None, timeout_s: float = 30.0):
        self.url = url.rstrip("/")
        self.token = token
        self.timeout_s = timeout_s

    def post(self, path: str, body: Any = None) -> tuple[int, Any]:
        """``(status, decoded JSON or None)``; raises :class:`ServerError` on 4xx/5xx, OSError when unreachable."""
        data = json.dumps(body if body is not None else {}, allow_nan=False).encode()
        request = urllib.request.Request(self.url + path, data=data, method="POST")
        request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                raw = response.read()
                return response.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as exc:
            try:
                reason = json.loads(exc.read()).get("reason", exc.reason)
            except (ValueError, AttributeError):
                reason = str(exc.reason)
            raise ServerError(exc.code, reason) from None


def _finite(values: list[float]) -> list[float | None]:
    return [v if np.isfinite(v) else None for v in values]


class JobLink:
    """One claimed job's line to the server: heartbeats, progress, log lines; thread-safe."""

    def __init__(self, client: Client, job_id: int, worker: str, heartbeat_s: float):
        self.client, self.job_id, self.worker = client, job_id, worker
        self.heartbeat_s = heartbeat_s
        self.cancel = threading.Event()
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{job_id}", daemon=True)

    def __enter__(self) -> JobLink:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.flush_log()

    def _path(self, action: str) -> str:
        return f"/api/jobs/{self.job_id}/{action}"

    def _answer(self, reply: Any) -> None:
        if isinstance(reply, dict) and reply.get("cancel"):
            self.cancel.set()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                self._answer(self.client.post(self._path("heartbeat"), {"worker": self.worker})[1])
                self.flush_log()
            except ServerError as exc:
                if exc.status == 404:
                    self.cancel.set()  # the job was deleted
                logger.warning("job %d: heartbeat refused: %s", self.job_id, exc)
            except OSError as exc:
                logger.warning("job %d: heartbeat failed (server unreachable?): %s", self.job_id, exc)

    def log(self, line: str) -> None:
        with self._lock:
            self._lines.append(line)

    def flush_log(self) -> None:
        with self._lock:
            lines, self._lines = self._lines[:1000], self._lines[1000:]
        if not lines:
            return
        try:
            self.client.post(self._path("log"), {"lines": lines})
        except (ServerError, OSError) as exc:
            logger.warning("job %d: could not send %d log lines: %s", self.job_id, len(lines), exc)

    def update(self, progress: dict) -> None:
        try:
            self._answer(self.client.post(self._path("update"), {**progress, "worker": self.worker})[1])
        except ServerError as exc:
            if exc.status == 404:
                self.cancel.set()
            logger.warning("job %d: update refused: %s", self.job_id, exc)
        except OSError as exc:
            logger.warning("job %d: update failed: %s", self.job_id, exc)

    def finish(
        self, state: str, reason: str | None, out_dir: str | None, attempts: int = 8, outputs: list[str] | None = None
    ) -> bool:
        """Report the end (with the files written under ``out_dir``); retried with backoff while the
        server is unreachable."""
        self.flush_log()
        body = {"state": state, "reason": reason, "out_dir": out_dir, "worker": self.worker}
        if outputs is not None:
            body["outputs"] = outputs
        for attempt in range(attempts):
            try:
                self.client.post(self._path("finish"), body)
                return True
            except ServerError as exc:
                logger.warning("job %d: finish refused: %s", self.job_id, exc)
                return False
            except OSError as exc:
                logger.warning("job %d: finish failed (attempt %d): %s", self.job_id, attempt + 1, exc)
                time.sleep(min(MAX_BACKOFF_S, 0.5 * 2**attempt))
        return False


class LogForwarder(logging.Handler):
    """Sends the records of phaser's loggers to the job's log."""

    def __init__(self, link: JobLink):
        super().__init__(logging.INFO)
        self.link = link
        # phaser's loggers are process-wide: only the records of the thread running this job are its own
        self.thread = threading.get_ident()
        self.addFilter(lambda record: record.thread == self.thread)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.link.log(self.format(record))
        except Exception:  # noqa: BLE001 - logging must never break the run
            self.handleError(record)


class ServerObserver(Observer):
    """Sends progress and previews (rate-limited) and stops the run when the server says so."""

    def __init__(self, link: JobLink, plan_index: int = 0, iterations_before: int = 0, total_niter: int = 0):
        self.link = link
        self.plan_index = plan_index
        self.iterations_before = iterations_before  # of the job's earlier plans
        self.total_niter = total_niter
        self.engine_index = 0
        self.engine_type = ""
        self._last_sent = 0.0

    def _check_cancel(self) -> None:
        if self.link.cancel.is_set():
            raise JobCancelled("cancelled by the server")

    def engine_started(self, index: int, engine: Any, state: ReconsState) -> None:
        self.engine_index, self.engine_type = index, engine.type
        self.link.log(f"engine {index} ({engine.type}): {engine.niter} iterations")
        self._check_cancel()

    def iteration_done(self, state: ReconsState, sync: Callable[[], Any], i: int, niter: int) -> bool:
        now = time.monotonic()
        if i == niter or now - self._last_sent >= 1.0 / UPDATES_PER_S:
            self._last_sent = now
            self.link.update(self.progress(state, sync, i, niter))
        self._check_cancel()
        return False

    def progress(self, state: ReconsState, sync: Callable[[], Any], i: int, niter: int) -> dict:
        from phaser.backend import to_numpy
        from phaser.server.previews import state_previews

        sync()
        errors = _finite(state.error_history[-MAX_ERRORS_SENT:])
        update = {
            "time": time.time(),
            "iteration": self.iterations_before + state.iteration,
            "niter": self.total_niter,
            "plan": self.plan_index,
            "engine": self.engine_index,
            "engine_type": self.engine_type,
            "engine_iteration": i,
            "engine_niter": niter,
            "error": errors[-1] if errors else None,
            "errors": errors,
        }
        try:
            update.update(state_previews(to_numpy(state.object_slices), to_numpy(state.probe_modes)))
        except Exception as exc:  # noqa: BLE001 - a preview is never worth a failed run
            logger.warning("preview failed: %s", exc)
        return update


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".strip().rstrip(":")[:500]


MAX_OUTPUTS = 2000


def output_files(out_dir: str | None) -> list[str] | None:
    """The files under ``out_dir`` (relative ``/``-separated names, at most :data:`MAX_OUTPUTS`); None without one."""
    if not out_dir or not Path(out_dir).is_dir():
        return None
    folder = Path(out_dir)
    names = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    return names[:MAX_OUTPUTS]


def run_job(link: JobLink, job: dict, out_root: Path) -> tuple[str, str | None, str | None]:
    """Run a claimed job's plan(s), or its study's trials; returns ``(state, reason, out_dir)``."""
    from phaser.output import OutputObserver
    from phaser.plan import PlanError, validate_plan
    from phaser.plan.read import read_yaml_documents
    from phaser.run import run_plan

    out_dir = out_root / f"job-{job['id']}"
    if job.get("kind") == "study":
        out_dir = None
    phaser_logger = logging.getLogger("phaser")
    handler = LogForwarder(link)
    phaser_logger.addHandler(handler)
    previous_level = phaser_logger.level
    phaser_logger.setLevel(min(previous_level or logging.INFO, logging.INFO))
    try:
        if out_dir is None:
            from phaser.server.studies import run_study_job

            return run_study_job(link, job, JobCancelled)
        docs = read_yaml_documents(job["plan_yaml"])
        base = Path(job.get("base_dir") or ".")
        allow = job.get("allow_hooks", [])
        plans = [validate_plan(doc, f"job {job['id']}", base=base, allow_hooks=allow) for doc in docs]
        total = sum(engine.niter for plan in plans for engine in plan.engines)
        done = 0
        for index, plan in enumerate(plans):
            folder = out_dir if len(plans) == 1 else out_dir / plan.name
            link.log(f"running {plan.name!r} on {plan.resolved_backend()} ({plan.dtype}); outputs in {folder}")
            observer = ServerObserver(link, index, done, total)
            state = run_plan(plan, [OutputObserver(plan, folder), observer])
            done += state.iteration
        return "done", None, str(out_dir)
    except JobCancelled:
        link.log("stopped: cancelled")
        return "cancelled", "cancelled", str(out_dir) if out_dir and out_dir.exists() else None
    except PlanError as exc:
        for line in str(exc).splitlines():
            link.log(line)
        return "failed", _one_line(exc), None
    except Exception as exc:  # noqa: BLE001 - any failure ends the job, never the worker
        for line in traceback.format_exc().splitlines()[-30:]:
            link.log(line)
        return "failed", _one_line(exc), str(out_dir) if out_dir and out_dir.exists() else None
    finally:
        phaser_logger.removeHandler(handler)
        phaser_logger.setLevel(previous_level)


class Worker:
    """Polls ``claim`` with exponential backoff and jitter, runs each job, reports its end."""

    def __init__(
        self,
        url: str,
        token: str | None = None,
        name: str | None = None,
        poll_s: float = 1.0,
        out_dir: str | Path = "phaser_jobs",
        runner: Callable[[JobLink, dict, Path], tuple[str, str | None, str | None]] = run_job,
    ):
        self.client = Client(url, token)
        self.name = name or f"{socket.gethostname()}-{id(self) % 10000:04d}"
        self.poll_s = poll_s
        self.out_root = Path(out_dir).resolve()
        self.runner = runner
        self.stopping = threading.Event()
        self.jobs_run = 0

    def claim(self) -> dict | None:
        status, job = self.client.post("/api/workers/claim", {"worker": self.name})
        return job if status == 200 else None

    def run_one(self, job: dict) -> str:
        heartbeat_s = float(job.get("heartbeat_s", 10.0))
        with JobLink(self.client, job["id"], self.name, heartbeat_s) as link:
            try:
                state, reason, out_dir = self.runner(link, job, self.out_root)
            except KeyboardInterrupt:
                link.finish("queued", f"worker {self.name} was stopped", None)
                raise
            link.finish(state, reason, out_dir, outputs=output_files(out_dir))
        self.jobs_run += 1
        logger.info("job %d: %s%s", job["id"], state, f" ({reason})" if reason else "")
        return state

    def serve(self, once: bool = False, max_idle_s: float | None = None) -> int:
        """Claim and run jobs until stopped (``once``: at most one job, and stop at an empty queue)."""
        idle_since, failures = time.monotonic(), 0
        while not self.stopping.is_set():
            try:
                job = self.claim()
                failures = 0
            except (ServerError, OSError) as exc:
                failures += 1
                logger.warning("claim failed: %s", exc)
                if isinstance(exc, ServerError) and exc.status == 403:
                    return 2
                job = None
            if job is not None:
                self.run_one(job)
                idle_since, failures = time.monotonic(), 0
                if once:
                    return 0
                continue
            if once and failures == 0:
                return 0
            if max_idle_s is not None and time.monotonic() - idle_since > max_idle_s:
                return 0
            self.stopping.wait(self.backoff(time.monotonic() - idle_since, failures))
        return 0

    def backoff(self, idle_s: float, failures: int) -> float:
        """The next wait [s]: the poll interval, doubling with idle time and failures, +-25% jitter."""
        steps = min(6, int(idle_s // max(self.poll_s * 10, 1.0)) + failures)
        return min(MAX_BACKOFF_S, self.poll_s * 2**steps) * random.uniform(0.75, 1.25)


def main_worker(url: str, token: str | None, name: str | None, poll_s: float, once: bool, out_dir: str) -> int:
    """Entry of ``phaser worker``: SIGTERM stops it like Ctrl-C (the running job is handed back)."""
    worker = Worker(url, token, name, poll_s, out_dir)

    def _terminate(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    import phaser.output  # noqa: F401 - imported before the first claim, so no claimed job waits on imports
    import phaser.run  # noqa: F401

    logger.warning("worker %s polling %s; outputs under %s", worker.name, worker.client.url, worker.out_root)
    try:
        return worker.serve(once=once)
    except KeyboardInterrupt:
        return 130
