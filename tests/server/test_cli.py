"""``phaser serve`` as a command: local workers, a clear message for a bad database, shutdown."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx

from tests.server.conftest import AUTH, TOKEN, free_port, tiny_plan, wait_for

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def test_a_database_that_cannot_be_opened_is_a_clear_message(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'no' / 'such' / 'folder.db'}"
    done = subprocess.run(
        [sys.executable, "-m", "phaser", "serve", "--db", url, "--port", str(free_port())],
        env=ENV, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert "cannot open the job database" in done.stderr and "folder.db" in done.stderr


def test_serve_with_local_workers_runs_a_job_and_stops_them_at_shutdown(tmp_path: Path, dataset_root: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [
        sys.executable, "-m", "phaser", "serve", "--port", str(port), "--db", f"sqlite:///{tmp_path / 'jobs.db'}",
        "--root", str(dataset_root), "--workers", "1", "--out-dir", str(tmp_path / "out"), "--token", TOKEN,
    ]  # fmt: skip
    server = subprocess.Popen(command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:

        def health() -> bool:
            try:
                return httpx.get(f"{url}/api/health", headers=AUTH).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(health, timeout_s=60, every_s=0.2)
        assert httpx.get(f"{url}/api/health").status_code == 403
        job_id = httpx.post(f"{url}/api/jobs", json={"plan_yaml": tiny_plan()}, headers=AUTH).json()["id"]
        job = wait_for(
            lambda: (j := httpx.get(f"{url}/api/jobs/{job_id}", headers=AUTH).json())["state"] == "done" and j,
            timeout_s=120, every_s=0.2,
        )  # fmt: skip
        assert job["worker"].startswith("local-") and (Path(job["out_dir"]) / "final.h5").is_file()
        assert httpx.post(f"{url}/api/shutdown", headers=AUTH).status_code == 202
        output, _ = server.communicate(timeout=60)
        assert server.returncode == 0, output
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    children = subprocess.run(["pgrep", "-f", f"phaser worker {url}"], capture_output=True, text=True).stdout
    assert children.strip() == ""  # the local worker stopped with the server
