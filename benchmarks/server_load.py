"""Load test of ``phaser serve``: one server, N workers on loopback, many short real jobs.

Measures that every job finishes and none runs twice (claims counted from the server's job
logs), the server process's resident memory over the run (``VmRSS`` from /proc, sampled), and
the latency of a worker's update to a WebSocket subscriber (the worker stamps each update with
its send time; a subscriber of every job notes the receive time; one clock, one machine).

    python benchmarks/server_load.py                  # 8 workers, 100 jobs of 2 ePIE iterations
    python benchmarks/server_load.py --jobs 20 --workers 4 --niter 3

Everything binds to 127.0.0.1 and stops by itself (``--deadline`` seconds at most). Results:
``benchmarks/results/server_load.json`` and a table on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
PLAN = """\
name: load{index}
backend: numpy
seed: {index}
raw_data: {{type: manual, path: data.h5}}
init:
  probe: {{type: focused, conv_angle: 20.0, defocus: 100.0}}
  scan: {{type: raster}}
engines:
- type: conventional
  niter: {niter}
  grouping: 16
  noise_model: {{type: amplitude, eps: 0.1}}
  solver: {{type: epie, beta_object: 0.3, beta_probe: 0.3}}
  save_options: {{images: []}}  # matplotlib figures take ~2 s a job; the load test is about the server
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid: int) -> float | None:
    """Resident memory of process ``pid`` [MiB] (VmRSS), None once it has gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class RssSampler(threading.Thread):
    def __init__(self, pid: int, every_s: float = 0.25):
        super().__init__(daemon=True)
        self.pid, self.every_s = pid, every_s
        self.samples: list[tuple[float, float]] = []
        self.stop = threading.Event()
        self.t0 = time.monotonic()

    def run(self) -> None:
        while not self.stop.wait(self.every_s):
            value = rss_mib(self.pid)
            if value is not None:
                self.samples.append((time.monotonic() - self.t0, value))


async def subscribe_all(
    port: int, token: str, job_ids: list[int], latencies: list[float], done: set[int], deadline: float
):
    """One WebSocket per job; records update latencies until every job has ended."""
    from websockets.asyncio.client import connect

    async def one(job_id: int) -> None:
        uri = f"ws://127.0.0.1:{port}/ws/jobs/{job_id}?token={token}"
        async with connect(uri, open_timeout=30, max_size=2**23) as ws:
            async for message in ws:
                received = time.time()
                frame = json.loads(message)
                if frame["type"] == "update" and "time" in frame and frame.get("fresh", True):
                    latencies.append(received - frame["time"])
                if frame["type"] == "job" and frame["state"] in ("done", "failed", "cancelled"):
                    done.add(job_id)
                    return

    tasks = [asyncio.create_task(one(job_id)) for job_id in job_ids]
    await asyncio.wait(tasks, timeout=max(1.0, deadline - time.monotonic()))
    for task in tasks:
        task.cancel()


def _timeline(jobs: list[dict]) -> dict:
    """Median job duration (claim to finish) and median idle gap of a worker between two jobs [s]."""
    durations = [j["finished"] - j["started"] for j in jobs if j["finished"] and j["started"]]
    gaps = []
    for worker in {j["worker"] for j in jobs}:
        mine = sorted((j["started"], j["finished"]) for j in jobs if j["worker"] == worker and j["finished"])
        gaps += [nxt[0] - prev[1] for prev, nxt in zip(mine, mine[1:], strict=False)]
    first = min((j["started"] for j in jobs if j["started"]), default=0)
    last = max((j["finished"] for j in jobs if j["finished"]), default=0)
    return {
        "job_median": round(float(np.median(durations)), 3) if durations else None,
        "job_max": round(float(np.max(durations)), 3) if durations else None,
        "gap_median": round(float(np.median(gaps)), 3) if gaps else None,
        "first_claim_to_last_finish": round(last - first, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--niter", type=int, default=2, help="ePIE iterations per job")
    parser.add_argument("--deadline", type=float, default=900.0, help="seconds before everything is stopped")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "server_load.json")
    args = parser.parse_args()
    start = time.monotonic()
    deadline = start + args.deadline
    token = secrets.token_urlsafe(16)
    headers = {"Authorization": f"Bearer {token}"}
    env = {**os.environ, "PHASER_TOKEN": token, "PYTHONPATH": str(REPO)}
    processes: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory(prefix="phaser_load_") as tmp:
        work = Path(tmp)
        sys.path.insert(0, str(REPO))
        from phaser.simulate import simulate_dataset
        from phaser.simulate.files import write_dataset

        dataset = simulate_dataset(
            kv=200.0, conv_angle_mrad=20.0, defocus_A=100.0, diff_step_mrad=2.0, scan_step_A=0.6,
            pattern_shape=(32, 32), scan_shape=(8, 8), dose_per_pattern=1e5, seed=0,
        )  # fmt: skip
        write_dataset(dataset, work / "data.h5")
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server_cmd = [
            sys.executable, "-m", "phaser", "serve", "--port", str(port), "--db", f"sqlite:///{work / 'jobs.db'}",
            "--root", str(work), "--worker-timeout", "60",
        ]  # fmt: skip
        try:
            server = subprocess.Popen(server_cmd, env=env, stdout=subprocess.DEVNULL)
            processes.append(server)
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"{url}/api/health", headers=headers).status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)
            sampler = RssSampler(server.pid)
            sampler.start()
            time.sleep(1.0)
            rss_start = rss_mib(server.pid)
            t_submit = time.monotonic()
            job_ids = []
            with httpx.Client(headers=headers, timeout=60) as client:
                for index in range(args.jobs):
                    reply = client.post(
                        f"{url}/api/jobs", json={"plan_yaml": PLAN.format(index=index, niter=args.niter)}
                    )
                    reply.raise_for_status()
                    job_ids.append(reply.json()["id"])
            submit_s = time.monotonic() - t_submit
            latencies: list[float] = []
            ended: set[int] = set()
            listener = threading.Thread(
                target=lambda: asyncio.run(subscribe_all(port, token, job_ids, latencies, ended, deadline)), daemon=True
            )
            listener.start()
            time.sleep(1.0)  # the subscribers are connected before the first update
            t_run = time.monotonic()
            for i in range(args.workers):
                command = [sys.executable, "-m", "phaser", "worker", url, "--name", f"bench-{i}", "--poll", "0.2",
                           "--out-dir", str(work / "out")]  # fmt: skip
                processes.append(
                    subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                )
            rss_half = None
            with httpx.Client(headers=headers, timeout=60) as client:
                while time.monotonic() < deadline:
                    jobs = client.get(f"{url}/api/jobs").json()["jobs"]
                    n_ended = sum(j["state"] in ("done", "failed", "cancelled") for j in jobs)
                    if rss_half is None and n_ended >= args.jobs // 2:
                        rss_half = rss_mib(server.pid)
                    if n_ended == len(jobs):
                        break
                    time.sleep(0.5)
                run_s = time.monotonic() - t_run
                listener.join(timeout=30)
                time.sleep(1.0)
                rss_end = rss_mib(server.pid)
                states = Counter(j["state"] for j in jobs)
                claims = {}
                for job_id in job_ids:
                    log = client.get(f"{url}/api/jobs/{job_id}/log").json()["lines"]
                    claims[job_id] = sum("claimed by worker" in line for line in log)
                workers_used = Counter(j["worker"] for j in jobs)
                timeline = _timeline(jobs)
                outputs = sum((Path(j["out_dir"]) / "final.h5").is_file() for j in jobs if j["out_dir"])
                client.post(f"{url}/api/shutdown")
            sampler.stop.set()
            server.wait(timeout=30)
        finally:
            for process in processes:
                if process.poll() is None:
                    process.terminate()
            for process in processes:
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
    rss = [value for _, value in sampler.samples]
    lat_ms = np.asarray(latencies) * 1e3
    result = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "jobs": args.jobs,
        "workers": args.workers,
        "niter_per_job": args.niter,
        "states": dict(states),
        "all_done": states.get("done", 0) == args.jobs,
        "claims_per_job": dict(Counter(claims.values())),
        "ran_twice": sorted(job_id for job_id, n in claims.items() if n > 1),
        "jobs_with_final_h5": outputs,
        "jobs_per_worker": dict(workers_used),
        "submit_s": round(submit_s, 2),
        "run_s": round(run_s, 2),
        "jobs_per_s": round(args.jobs / run_s, 2),
        "server_rss_mib": {
            "start": round(rss_start or 0, 1),
            "half_done": round(rss_half or 0, 1),
            "end": round(rss_end or 0, 1),
            "max": round(max(rss), 1) if rss else None,
            "samples": [[round(t, 2), round(v, 1)] for t, v in sampler.samples[:: max(1, len(rss) // 200)]],
        },
        "update_latency_ms": {
            "n": int(lat_ms.size),
            "median": round(float(np.median(lat_ms)), 2) if lat_ms.size else None,
            "p95": round(float(np.percentile(lat_ms, 95)), 2) if lat_ms.size else None,
            "max": round(float(lat_ms.max()), 2) if lat_ms.size else None,
        },
        "job_timeline_s": timeline,
        "total_s": round(time.monotonic() - start, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    lat, mem = result["update_latency_ms"], result["server_rss_mib"]
    rows = [
        ("jobs finished (done)", f"{states.get('done', 0)} / {args.jobs}"),
        ("jobs run more than once", str(len(result["ran_twice"]))),
        ("jobs with final.h5", str(outputs)),
        ("workers", f"{args.workers} ({len(workers_used)} ran jobs)"),
        ("run time [s] (with worker start-up)", f"{run_s:.1f} ({result['jobs_per_s']} jobs/s)"),
        ("first claim to last finish [s]", f"{timeline['first_claim_to_last_finish']}"),
        (
            "server RSS start / half / end / max [MiB]",
            f"{mem['start']} / {mem['half_done']} / {mem['end']} / {mem['max']}",
        ),
        ("job claim-to-finish median [s]", f"{timeline['job_median']} (worker idle gap {timeline['gap_median']})"),
        ("update latency median / p95 / max [ms]", f"{lat['median']} / {lat['p95']} / {lat['max']} (n={lat['n']})"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"| {'measure'.ljust(width)} | value |\n|{'-' * (width + 2)}|-------|")
    for name, value in rows:
        print(f"| {name.ljust(width)} | {value} |")
    print(f"results: {args.out}")
    return 0 if result["all_done"] and not result["ran_twice"] else 1


if __name__ == "__main__":
    sys.exit(main())
