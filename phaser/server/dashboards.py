"""optuna-dashboard for a study job, served by this server's process on a port of its own.

optuna-dashboard's page fetches absolute ``/static`` and ``/api`` paths, so it cannot be mounted
under a prefix of ``phaser serve``: each study gets its own WSGI server (``wsgiref`` with a thread
per request) on a free port of the host the server binds, started once and stopped with the server.
The dashboard has no authentication (it can also edit the study's notes), so a server bound beyond
loopback refuses to start one unless it was started with ``--allow-open-dashboards``.
"""

from __future__ import annotations

import logging
import socket
import threading
from dataclasses import dataclass
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from phaser.server.security import is_loopback

logger = logging.getLogger("phaser.server")


def dashboard_refusal(host: str, allow_open: bool) -> str | None:
    """Why a dashboard may not be started for a server bound to ``host`` (None: it may)."""
    if is_loopback(host) or allow_open:
        return None
    return (
        f"the server binds {host}, beyond this machine, and optuna-dashboard has no authentication: "
        "start `phaser serve` with --allow-open-dashboards to serve dashboards anyway, or run "
        "`phaser-opt dashboard STUDY.yaml` where the study's files are"
    )


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _IPv6Server(_ThreadingServer):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        logger.debug("dashboard: " + format, *args)


@dataclass
class Dashboard:
    server: WSGIServer
    thread: threading.Thread
    study_id: int

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])


class Dashboards:
    """The running dashboards, one per (storage URL, study name)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[tuple[str, str], Dashboard] = {}

    def start(self, storage_url: str, study_name: str, artifact_dir: Any, host: str) -> Dashboard:
        """The dashboard of the study (started on a free port of ``host`` unless it runs already);
        raises LookupError when the storage holds no such study yet."""
        key = (storage_url, study_name)
        with self._lock:
            running = self._running.get(key)
            if running is not None and running.thread.is_alive():
                return running
            import optuna_dashboard

            from phaser_opt.artifacts import artifact_store
            from phaser_opt.storage import open_storage

            storage = open_storage(storage_url)
            try:
                study_id = storage.get_study_id_from_name(study_name)
            except KeyError:
                raise LookupError(f"the storage holds no study {study_name!r} yet (no trial has started)") from None
            app = optuna_dashboard.wsgi(storage, artifact_store=artifact_store(artifact_dir))
            server_class = _IPv6Server if ":" in host else _ThreadingServer
            server = make_server(host, 0, app, server_class=server_class, handler_class=_QuietHandler)
            thread = threading.Thread(target=server.serve_forever, name=f"dashboard-{study_name}", daemon=True)
            thread.start()
            dashboard = Dashboard(server, thread, study_id)
            self._running[key] = dashboard
            logger.info("optuna-dashboard for study %r on port %d", study_name, dashboard.port)
            return dashboard

    def stop_all(self) -> None:
        with self._lock:
            running, self._running = list(self._running.values()), {}
        for dashboard in running:
            dashboard.server.shutdown()
            dashboard.server.server_close()
            dashboard.thread.join(timeout=5)
