"""``phaser serve`` and ``phaser worker``: the subcommands (added to ``phaser``'s parser)."""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

TOKEN_ENV = "PHASER_TOKEN"
DEFAULT_DB = "sqlite:///phaser_serve.db"


def add_parsers(subparsers: Any) -> None:
    """Add ``serve`` and ``worker`` to an argparse ``subparsers`` object (handlers in ``args.handler``)."""
    serve = subparsers.add_parser(
        "serve",
        help="the job server: a web page, a job queue and live views of running jobs",
        description="Serve the phaser web page and job queue; workers (local or `phaser worker` anywhere) run "
        "the jobs. Binds to 127.0.0.1 unless --host says otherwise; beyond loopback a token is required "
        f"(--token or ${TOKEN_ENV}; one is generated and printed when missing).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind")
    serve.add_argument("--port", type=int, default=8765, help="port to bind")
    serve.add_argument("--db", default=DEFAULT_DB, help="SQLAlchemy URL of the job database (SQLite or PostgreSQL)")
    serve.add_argument(
        "--root",
        action="append",
        default=None,
        metavar="DIR",
        help="folder plans and the file picker may use (repeatable; default: the current folder)",
    )
    serve.add_argument("--workers", type=int, default=0, help="local worker processes to start with the server")
    serve.add_argument("--token", default=None, help=f"bearer token required of every client (or ${TOKEN_ENV})")
    serve.add_argument(
        "--allow-custom-hooks",
        action="store_true",
        help="accept plans naming module:function hooks of any (non-standard-library) module: "
        "only on a trusted network",
    )
    serve.add_argument(
        "--allow-open-dashboards",
        action="store_true",
        help="serve a study's optuna-dashboard (which has no authentication) on a port of --host even when "
        "it is beyond loopback: only on a trusted network",
    )
    serve.add_argument("--out-dir", default="phaser_jobs", help="where local workers write each job's outputs")
    serve.add_argument(
        "--worker-timeout",
        type=float,
        default=60.0,
        help="seconds without a heartbeat after which a running job goes back to the queue",
    )
    serve.set_defaults(handler=_serve)

    worker = subparsers.add_parser(
        "worker",
        help="run jobs from a phaser server",
        description="Claim jobs from a `phaser serve` over HTTP, run them, send progress and logs.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    worker.add_argument("url", help="the server, e.g. http://127.0.0.1:8765")
    worker.add_argument("--token", default=None, help=f"the server's token (or ${TOKEN_ENV})")
    worker.add_argument("--name", default=None, help="this worker's name (default: host name and a number)")
    worker.add_argument("--poll", type=float, default=1.0, help="seconds between claims when idle (backs off)")
    worker.add_argument("--once", action="store_true", help="run at most one job, and stop when the queue is empty")
    worker.add_argument("--out-dir", default="phaser_jobs", help="folder for the jobs' outputs")
    worker.set_defaults(handler=_worker)


def _worker(args: argparse.Namespace) -> int:
    from phaser.server.worker import main_worker

    token = args.token or os.environ.get(TOKEN_ENV) or None
    return main_worker(args.url, token, args.name, args.poll, args.once, args.out_dir)


class LocalWorkers:
    """``phaser worker`` child processes started and stopped with the server."""

    def __init__(self, n: int, url: str, token: str | None, out_dir: Path):
        self.n, self.url, self.token, self.out_dir = n, url, token, out_dir
        self.names = [f"local-{os.getpid()}-{i}" for i in range(n)]
        self.processes: list[subprocess.Popen] = []

    def start(self) -> None:
        env = {**os.environ}
        if self.token:
            env[TOKEN_ENV] = self.token  # not on the command line, where `ps` shows it
        for name in self.names:
            command = [
                sys.executable,
                "-m",
                "phaser",
                "worker",
                self.url,
                "--name",
                name,
                "--out-dir",
                str(self.out_dir),
            ]
            self.processes.append(subprocess.Popen(command, env=env))

    def stop(self, wait_s: float = 10.0) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + wait_s
        for process in self.processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from phaser.server.app import ServerConfig, create_app
    from phaser.server.security import is_loopback
    from phaser.server.store import JobStore, StoreError

    token = args.token or os.environ.get(TOKEN_ENV) or None
    if token is None and not is_loopback(args.host):
        token = secrets.token_urlsafe(24)
        print(f"binding to {args.host}: every request needs this token (--token to choose one): {token}", flush=True)
    roots = [Path(r) for r in (args.root or ["."])]
    for root in roots:
        if not root.is_dir():
            print(f"error: --root {root}: not a folder", file=sys.stderr)
            return 2
    try:
        store = JobStore(args.db)
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    config = ServerConfig(
        db_url=args.db,
        roots=roots,
        token=token,
        allow_custom_hooks=args.allow_custom_hooks,
        worker_timeout_s=args.worker_timeout,
        out_dirs=[Path(args.out_dir).resolve()],
        host=args.host,
        allow_open_dashboards=args.allow_open_dashboards,
    )
    url_host = "127.0.0.1" if args.host in ("0.0.0.0", "::", "") else args.host
    locals_ = LocalWorkers(args.workers, f"http://{url_host}:{args.port}", token, Path(args.out_dir).resolve())
    if args.workers:
        config.on_started.append(locals_.start)
        config.on_stopping.append(lambda: (locals_.stop(), store.release(locals_.names)))
    app = create_app(config, store)
    server = uvicorn.Server(
        uvicorn.Config(app, host=args.host, port=args.port, ws_max_size=64 * 1024, log_level="warning")
    )
    config.on_shutdown = lambda: setattr(server, "should_exit", True)
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(
        f"phaser serve: http://{shown}:{args.port}/  (jobs in {store.url.split('://')[0]}, roots: "
        f"{', '.join(str(r.resolve()) for r in roots)}, {args.workers} local worker(s))",
        flush=True,
    )
    try:
        server.run()
    finally:
        store.close()
    return 0
