"""A real server (uvicorn on a loopback port) and real workers run small plans over HTTP."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from phaser.server.app import ServerConfig
from phaser.server.worker import Worker
from tests.server.conftest import AUTH, GRADIENT_PLAN, TOKEN, LiveServer, tiny_plan, wait_for

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def live(tmp_path: Path, dataset_root: Path):
    config = ServerConfig(
        db_url=f"sqlite:///{tmp_path / 'jobs.db'}",
        roots=[dataset_root],
        token=TOKEN,
        worker_timeout_s=30,
        out_dirs=[tmp_path / "worker_out"],  # the workers' outputs here may be downloaded
    )
    with LiveServer(config) as server:
        yield server


@pytest.fixture
def thread_worker(live: LiveServer, tmp_path: Path):
    worker = Worker(live.url, TOKEN, "thread-worker", poll_s=0.05, out_dir=tmp_path / "out")
    thread = threading.Thread(target=worker.serve, daemon=True)
    thread.start()
    yield worker
    worker.stopping.set()
    thread.join(timeout=30)


def _job(live: LiveServer, job_id: int) -> dict:
    return httpx.get(f"{live.url}/api/jobs/{job_id}", headers=AUTH).json()


def test_a_plan_submitted_over_http_runs_on_a_worker_process_and_leaves_its_outputs(
    live: LiveServer, tmp_path: Path
) -> None:
    from websockets.sync.client import connect

    reply = httpx.post(f"{live.url}/api/jobs", json={"plan_yaml": GRADIENT_PLAN}, headers=AUTH)
    assert reply.status_code == 201, reply.text
    job_id = reply.json()["id"]
    frames: list[dict] = []

    def subscribe() -> None:
        with connect(f"ws://127.0.0.1:{live.port}/ws/jobs/{job_id}?token={TOKEN}", open_timeout=10) as ws:
            for message in ws:
                frames.append(json.loads(message))
                if frames[-1]["type"] == "job" and frames[-1]["state"] in ("done", "failed", "cancelled"):
                    return

    listener = threading.Thread(target=subscribe, daemon=True)
    listener.start()
    out = tmp_path / "worker_out"
    env = {**os.environ, "PHASER_TOKEN": TOKEN, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "phaser", "worker", live.url, "--once", "--name", "proc", "--out-dir", str(out)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    job = _job(live, job_id)
    assert job["state"] == "done", job
    assert job["worker"] == "proc" and job["iteration"] == 3
    out_dir = Path(job["out_dir"])
    assert out_dir.is_relative_to(out) and (out_dir / "final.h5").is_file() and (out_dir / "plan.yaml").is_file()
    assert any(out_dir.glob("probe*.png"))
    # the outputs are listed (as the worker reported them) and each downloads, token required
    outputs = httpx.get(f"{live.url}/api/jobs/{job_id}/outputs", headers=AUTH).json()
    names = {f["name"] for f in outputs["files"]}
    assert outputs["downloadable"] and {"final.h5", "plan.yaml"} <= names
    assert names == {p.relative_to(out_dir).as_posix() for p in out_dir.rglob("*") if p.is_file()}
    png = next(n for n in names if n.endswith(".png"))
    got = httpx.get(f"{live.url}/api/jobs/{job_id}/outputs/{png}", headers=AUTH)
    assert got.status_code == 200 and got.content == (out_dir / png).read_bytes()
    assert got.headers["content-type"] == "image/png"
    assert httpx.get(f"{live.url}/api/jobs/{job_id}/outputs/{png}").status_code == 403
    (tmp_path / "worker_out" / "secret.txt").write_text("not job 1's")
    for name in ("..%2Fsecret.txt", "sub/..%2F..%2Fsecret.txt", "%2Fetc%2Fpasswd"):
        refused = httpx.get(f"{live.url}/api/jobs/{job_id}/outputs/{name}", headers=AUTH)
        assert refused.status_code == 403, (name, refused.text)
        assert "not allowed" in refused.json()["reason"] or "relative" in refused.json()["reason"]
    listener.join(timeout=30)
    updates = [f for f in frames if f["type"] == "update"]
    assert updates and updates[-1]["iteration"] == 3 and len(updates[-1]["errors"]) == 3
    phase = Image.open(io.BytesIO(base64.b64decode(updates[-1]["object_phase_png"])))
    assert phase.mode == "L" and max(phase.size) <= 256 and np.ptp(np.asarray(phase)) > 0
    probe = Image.open(io.BytesIO(base64.b64decode(updates[-1]["probe_png"])))
    assert updates[-1]["nmodes"] == 1 and probe.size[0] <= 512 and "object_slices_png" not in updates[-1]
    log = httpx.get(f"{live.url}/api/jobs/{job_id}/log", headers=AUTH).json()["lines"]
    assert any("claimed by worker proc" in line for line in log) and any("done" in line for line in log)


def test_a_running_job_is_cancelled_within_an_iteration(live: LiveServer, thread_worker: Worker) -> None:
    job_id = httpx.post(f"{live.url}/api/jobs", json={"plan_yaml": tiny_plan(100_000)}, headers=AUTH).json()["id"]
    wait_for(lambda: (_job(live, job_id)["iteration"] or 0) >= 2, timeout_s=60)
    assert httpx.post(f"{live.url}/api/jobs/{job_id}/cancel", headers=AUTH).json() == {"state": "running"}
    job = wait_for(lambda: (j := _job(live, job_id))["state"] != "running" and j, timeout_s=20)
    assert job["state"] == "cancelled" and job["iteration"] < 100_000
    assert Path(job["out_dir"], "interrupted.h5").is_file()


def test_a_job_that_fails_on_the_worker_is_failed_with_its_reason_in_the_log(
    live: LiveServer, thread_worker: Worker, dataset_root: Path
) -> None:
    # the data file is a valid HDF5 file when the plan is checked, and truncated when the worker reads it
    broken = dataset_root / "broken.h5"
    broken.write_bytes((dataset_root / "data.h5").read_bytes())
    plan = tiny_plan().replace("data.h5", "broken.h5")
    thread_worker.stopping.set()  # hold the queue until the file is broken
    job_id = httpx.post(f"{live.url}/api/jobs", json={"plan_yaml": plan}, headers=AUTH).json()["id"]
    broken.write_bytes(b"not hdf5 any more")
    worker = Worker(live.url, TOKEN, "second", poll_s=0.05, out_dir=broken.parent / "out")
    assert worker.serve(once=True) == 0
    job = _job(live, job_id)
    assert job["state"] == "failed" and job["reason"]
    log = httpx.get(f"{live.url}/api/jobs/{job_id}/log", headers=AUTH).json()["lines"]
    assert any(job["reason"] in line for line in log)
    broken.unlink()


def test_shutdown_over_http_stops_the_server(live: LiveServer) -> None:
    assert httpx.post(f"{live.url}/api/shutdown").status_code == 403
    assert httpx.post(f"{live.url}/api/shutdown", headers=AUTH).status_code == 202
    live.thread.join(timeout=15)
    assert not live.thread.is_alive()
