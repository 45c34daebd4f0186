"""Crash recovery, timed: a worker killed mid-trial (SIGKILL) -> its trial marked FAIL -> the retry,
with the same parameters, complete.

Two workers share one SQLite study of short trials (the tests' 8x8-scan dataset, 60 gradient
iterations per trial) with heartbeats every ``--interval`` s and a grace period of ``--grace`` s.
Worker 0 is killed while it runs a trial; worker 1 carries on, finds the stale trial between two
of its own trials, fails it, and runs the retry. Prints and writes (benchmarks/results/
kill_retry_timeline.json) the seconds from the kill to FAIL and to the retry's completion.

    python benchmarks/kill_retry_timeline.py [--interval 2 --grace 6]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import optuna
import yaml
from optuna.trial import TrialState

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from phaser_opt.workers import worker_command  # noqa: E402
from tests.phaser_opt.conftest import TEMPLATE  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=int, default=2, help="heartbeat interval [s]")
    parser.add_argument("--grace", type=int, default=6, help="grace period [s]")
    parser.add_argument("--trials", type=int, default=6, help="trials in the study")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="kill_retry_"))
    subprocess.run(
        ["phaser", "simulate", "--out", str(folder / "data.h5"), "--scan", "8", "8", "--pattern-size", "32"],
        check=True,
        capture_output=True,
    )
    (folder / "template.yaml").write_text(TEMPLATE.replace("niter: 6", "niter: 60"))
    study_file = folder / "study.yaml"
    study_file.write_text(
        yaml.safe_dump(
            {
                "name": "kill_retry",
                "template": "template.yaml",
                "truth": {"file": "data.h5"},
                "objectives": [{"metric": "mse"}],
                "sampler": {"type": "random", "seed": 0},
                "pruner": {"type": "none"},
                "n_trials": args.trials,
                "artifacts": {"enabled": False},
                "heartbeat": {"interval": args.interval, "grace_period": args.grace, "max_retry": 1},
            }
        )
    )
    subprocess.run(["phaser-opt", str(study_file), "--n-trials", "0"], check=True, capture_output=True)
    storage = f"sqlite:///{folder / 'kill_retry.db'}"
    env = {**os.environ, "PHASER_CPU_DEVICES": "1"}
    workers = [
        subprocess.Popen(worker_command(study_file, k, None), env=env, stderr=subprocess.DEVNULL) for k in (0, 1)
    ]
    study = optuna.load_study(study_name="kill_retry", storage=storage)
    pids = {w.pid: w for w in workers}
    victim = None
    while victim is None:
        running = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.RUNNING]
        # past the first trials (which compile), kill the worker of a running trial mid-run
        victim = next((t for t in running if t.number >= 2 and "worker" in t.user_attrs), None)
        time.sleep(0.2)
    time.sleep(1.0)
    killed_pid = int(victim.user_attrs["worker"].rsplit(":", 1)[1])
    killed_at = datetime.now()
    os.kill(killed_pid, signal.SIGKILL)
    survivor = next(w for pid, w in pids.items() if pid != killed_pid)
    survivor.wait(timeout=600)
    trials = study.get_trials()
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert failed, "no trial was stranded by the kill"
    stranded = failed[0]
    retry = next(t for t in trials if t.system_attrs.get("failed_trial") == stranded.number)
    result = {
        "heartbeat_interval_s": args.interval,
        "grace_period_s": args.grace,
        "stranded_trial": stranded.number,
        "retry_trial": retry.number,
        "same_parameters": retry.params == stranded.params,
        "kill_to_fail_s": round((stranded.datetime_complete - killed_at).total_seconds(), 2),
        "kill_to_retry_start_s": round((retry.datetime_start - killed_at).total_seconds(), 2),
        "kill_to_retry_complete_s": round((retry.datetime_complete - killed_at).total_seconds(), 2),
        "retry_state": retry.state.name,
        "trials": len(trials),
    }
    print(json.dumps(result, indent=2))
    out = ROOT / "benchmarks" / "results" / "kill_retry_timeline.json"
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
