"""Screenshots of optuna-dashboard on a phaser-opt study: the study page (with the gallery of the
best trials' phases) and the best trial's page (with its artifact images).

    python benchmarks/dashboard_screenshots.py                       # quickstart study -> docs/dashboard/
    python benchmarks/dashboard_screenshots.py --study S.yaml --out DIR

1. runs the study (``phaser-opt STUDY``) when its storage holds no complete trial, else reuses it;
2. serves the dashboard (``optuna_dashboard.wsgi`` on the study's storage and artifact store, as
   ``phaser-opt dashboard`` does) on 127.0.0.1 at a free port, in a background thread;
3. takes headless-Chromium screenshots of ``/dashboard/studies/<id>`` and of
   ``/dashboard/studies/<id>/trials?numbers=<best>`` (the dashboard's own client-side routes);
4. stops the server, whatever happened.

Needs Debian's Chromium (``apt-get install -y chromium``) or ``--chromium PATH``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

ROOT = Path(__file__).resolve().parents[1]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
INSTALL_HINT = "install it with: apt-get update && apt-get install -y chromium (or pass --chromium PATH)"


class QuietHandler(WSGIRequestHandler):
    """No access log on stderr."""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass


class ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    """The browser fetches the bundle and the API in parallel."""

    daemon_threads = True


def find_chromium(given: str | None) -> str:
    if given is not None:
        if shutil.which(given) is None and not Path(given).is_file():
            sys.exit(f"error: Chromium not found at {given}; {INSTALL_HINT}")
        return given
    for name in CHROMIUM_CANDIDATES:
        path = shutil.which(name)
        if path is not None:
            return path
    sys.exit(f"error: no Chromium on PATH ({', '.join(CHROMIUM_CANDIDATES)}); {INSTALL_HINT}")


def complete_trials(loaded: Any) -> int:
    """Complete trials of the study in its storage (0 when the storage or the study is absent)."""
    import optuna

    from phaser_opt.storage import open_storage

    if loaded.storage_url.startswith("sqlite:///"):
        path = Path(loaded.storage_url.removeprefix("sqlite:///"))
        if not path.is_file():
            return 0
    try:
        study = optuna.load_study(study_name=loaded.spec.name, storage=open_storage(loaded.storage_url))
    except KeyError:
        return 0
    return len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))


def ensure_study(study_file: Path, timeout_s: float) -> Any:
    """The loaded study, run first (``phaser-opt STUDY``) when it has no complete trial."""
    from phaser_opt.study import load_study

    loaded = load_study(study_file)
    if complete_trials(loaded) > 0:
        print(f"reusing the study {loaded.spec.name!r} in {loaded.storage_url}", file=sys.stderr)
        return loaded
    command = shutil.which("phaser-opt")
    argv = (
        [command]
        if command
        else [sys.executable, "-c", "import sys; from phaser_opt.cli import main; sys.exit(main())"]
    )
    print(f"running the study: phaser-opt {study_file} (at most {timeout_s:.0f} s)", file=sys.stderr)
    subprocess.run([*argv, str(study_file)], check=True, timeout=timeout_s)
    if complete_trials(loaded) == 0:
        sys.exit(f"error: the study {loaded.spec.name!r} has no complete trial to show")
    return loaded


def get_json(url: str, timeout_s: float = 10.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 - our own local server
        return json.load(response)


def wait_until_up(base: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            get_json(f"{base}/api/meta", timeout_s=2.0)
            return
        except OSError as exc:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the dashboard at {base} did not answer within {timeout_s:.0f} s ({exc})") from None
            time.sleep(0.1)


def screenshot(chromium: str, url: str, out: Path, size: tuple[int, int], budget_ms: int, timeout_s: float) -> None:
    """One headless-Chromium screenshot of ``url`` into ``out`` (PNG), checked."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="phaser-chromium-") as profile:
        argv = [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            f"--window-size={size[0]},{size[1]}",
            f"--virtual-time-budget={budget_ms}",
            f"--screenshot={out}",
            url,
        ]
        # its own process group, so that a timeout ends its helper processes too
        process = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True
        )
        try:
            _, stderr = process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise TimeoutError(f"Chromium took over {timeout_s:.0f} s on {url}") from None
    if process.returncode != 0 or not out.is_file() or out.read_bytes()[:8] != PNG_SIGNATURE:
        tail = "\n".join((stderr or "").strip().splitlines()[-10:])
        raise RuntimeError(f"Chromium made no screenshot of {url} (exit {process.returncode}):\n{tail}")
    print(f"wrote {out} ({out.stat().st_size / 1e3:.0f} kB) of {url}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--study", type=Path, default=ROOT / "studies" / "quickstart.yaml", help="study file")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "dashboard", help="folder of the PNGs")
    parser.add_argument("--chromium", default=None, help="Chromium executable (default: found on PATH)")
    parser.add_argument("--width", type=int, default=1400, help="window width [px]")
    parser.add_argument("--height", type=int, default=2000, help="window height [px]")
    parser.add_argument("--budget-ms", type=int, default=15000, help="Chromium's virtual time budget per page")
    parser.add_argument("--page-timeout", type=float, default=120.0, help="wall-clock limit per screenshot [s]")
    parser.add_argument("--study-timeout", type=float, default=1800.0, help="wall-clock limit to run the study [s]")
    args = parser.parse_args(argv)

    chromium = find_chromium(args.chromium)
    loaded = ensure_study(args.study.resolve(), args.study_timeout)

    import optuna_dashboard

    from phaser_opt.artifacts import artifact_store
    from phaser_opt.storage import open_storage

    app = optuna_dashboard.wsgi(open_storage(loaded.storage_url), artifact_store=artifact_store(loaded.artifact_dir))
    server = make_server("127.0.0.1", 0, app, server_class=ThreadingWSGIServer, handler_class=QuietHandler)
    base = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    thread.start()
    try:
        wait_until_up(base, timeout_s=30.0)
        summaries = get_json(f"{base}/api/studies")["study_summaries"]
        study_id = next(s["study_id"] for s in summaries if s["study_name"] == loaded.spec.name)
        detail = get_json(f"{base}/api/studies/{study_id}")
        if not detail["best_trials"]:
            raise RuntimeError(f"study {loaded.spec.name!r} has no best trial")
        best = detail["best_trials"][0]
        n_images = sum(a["mimetype"] == "image/png" for a in best["artifacts"])
        gallery = [g["id"] for g in detail["plotly_graph_objects"]]
        print(
            f"dashboard on {base}: study {loaded.spec.name!r} (id {study_id}), {len(detail['trials'])} trials, "
            f"best #{best['number']} with {n_images} images; graph objects: {', '.join(gallery) or 'none'}",
            file=sys.stderr,
        )
        size = (args.width, args.height)
        pages = {
            "study.png": f"{base}/dashboard/studies/{study_id}",
            "trial.png": f"{base}/dashboard/studies/{study_id}/trials?numbers={best['number']}",
        }
        for name, url in pages.items():
            screenshot(chromium, url, args.out / name, size, args.budget_ms, args.page_timeout)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
