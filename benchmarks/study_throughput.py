"""Study throughput: finished trials per hour with 1 and with 2 worker processes.

What it measures
----------------
The command a user runs, ``phaser-opt study.yaml --workers N`` (a subprocess), on a fresh SQLite
study each time (a new folder, a new empty JAX compilation cache: every run starts cold), with the
quickstart template (single-slice gradient descent, 16x16 scan of 32x32 patterns, 25 iterations,
a few seconds per trial on 2 cores), ``--trials`` trials (default 16), TPE (seed 0, 6 start-up
trials), ``pruner: none`` (so every trial runs all its iterations and the runs do the same work),
``report: {every: 5, value: objective}`` and artifacts on, as in the quickstart. ``--space
numbers`` fixes the noise model (see ``study_overhead.py``); the default ``quickstart`` keeps its
``!choice`` of three noise models. ``--repeats`` alternates the worker counts (1, 2, 1, 2, ...).

With ``--workers 1`` the trials run in the command's own process; with ``--workers 2`` the command
creates the study and starts two ``python -m phaser_opt worker`` processes, each pinned to one of
the 2 cores (``PHASER_CPU_CORES``, one JAX CPU device each), sharing only the SQLite file.

Numbers per run:

- ``wall s``: the command from spawn to exit; ``trials/h`` = trials x 3600 / wall;
- ``in-study trials/h``: trials x 3600 / (last trial's ``datetime_complete`` - first trial's
  ``datetime_start``), i.e. without the process start-up and the closing summary;
- ``start-up s``: spawn -> the first trial's ``datetime_start``;
- ``trial s``: the mean ``trial.duration`` of each worker's first trial (compiles) and of the
  others (read from the ``[worker k] trial n`` lines on stderr and the storage);
- ``cores busy``: CPU time (user + system) of the command and all its children / wall
  (``getrusage(RUSAGE_CHILDREN)`` before and after); ``CPU s per trial`` = that CPU time / trials
  (less sensitive to other jobs on the machine than the wall-clock numbers);
- the load average before and after each run (the machine is shared: other jobs' load changes the
  wall-clock numbers, so ``--repeats`` alternates the worker counts).

Run ``python benchmarks/study_throughput.py --help``; results in
``benchmarks/results/study_throughput.{json,md}``. About 3-4 minutes on 2 cores with the defaults.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import study_overhead as so  # noqa: E402  (the shared helpers of the study benchmarks)


def run_once(folder: Path, template: Path, data: Path, n_trials: int, workers: int) -> dict[str, Any]:
    name = f"throughput_w{workers}"
    study = so.write_study(folder, name, template, data, n_trials=n_trials)
    url = f"sqlite:///{folder / (name + '.db')}"
    env = {**os.environ, "PHASER_JAX_CACHE": str(folder / "jax_cache")}
    exe = shutil.which("phaser-opt")
    cmd = ([exe] if exe else [sys.executable, "-m", "phaser_opt"]) + [str(study), "--workers", str(workers)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    spawn = dt.datetime.now()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    trials = so.trial_datetimes(url, name)
    finished = [t for t in trials if t["state"] in ("COMPLETE", "PRUNED", "FAIL")]
    owner = {int(n): int(w) for w, n in re.findall(r"\[worker (\d+)\] trial\s+(\d+):", proc.stderr)}
    first_of_worker: dict[int, int] = {}
    for t in sorted(finished, key=lambda t: t["start"]):
        first_of_worker.setdefault(owner.get(t["number"], 0), t["number"])
    firsts = [t["duration_s"] for t in finished if t["number"] in first_of_worker.values()]
    rest = [t["duration_s"] for t in finished if t["number"] not in first_of_worker.values()]
    start = min(t["start"] for t in finished)
    end = max(t["complete"] for t in finished)
    span = (end - start).total_seconds()
    return {
        "workers": workers,
        "trials": len(finished),
        "states": {s: sum(t["state"] == s for t in finished) for s in ("COMPLETE", "PRUNED", "FAIL")},
        "wall_s": wall,
        "trials_per_h": len(finished) * 3600 / wall,
        "in_study_s": span,
        "in_study_trials_per_h": len(finished) * 3600 / span,
        "startup_s": (start - spawn).total_seconds(),
        "first_trial_s": statistics.mean(firsts),
        "other_trial_s": statistics.mean(rest) if rest else None,
        "other_trial_median_s": statistics.median(rest) if rest else None,
        "cpu_s": cpu,
        "cpu_s_per_trial": cpu / len(finished),
        "cores_busy": cpu / wall,
        "trials_per_worker": {w: sum(owner.get(t["number"], 0) == w for t in finished) for w in range(workers)},
        "best": min((t["value"] for t in finished if t["state"] == "COMPLETE"), default=None),
        "per_trial": [
            {
                "number": t["number"],
                "worker": owner.get(t["number"], 0),
                "duration_s": t["duration_s"],
                "start": str(t["start"]),
                "params": t["params"],
            }
            for t in finished
        ],
        "log_tail": proc.stderr[-1500:],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=16, help="trials per study (default 16)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts (default 1 2)")
    parser.add_argument("--repeats", type=int, default=1, help="alternate the worker counts this many times")
    parser.add_argument("--space", default="quickstart", choices=["quickstart", "numbers"])
    parser.add_argument("--work-dir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=so.RESULTS_DIR / "study_throughput", help="results prefix")
    args = parser.parse_args()

    t_all = time.perf_counter()
    info = so.machine()
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="study_throughput_"))
    work.mkdir(parents=True, exist_ok=True)
    data = so.quickstart_dataset(work)
    template = so.REPO / "plans" / "templates" / "quickstart.yaml"
    if args.space == "numbers":
        template = work / "quickstart_numbers.yaml"
        template.write_text(so.numbers_only_template((so.REPO / "plans" / "templates" / "quickstart.yaml").read_text()))

    runs = []
    for rep in range(args.repeats):
        for workers in args.workers:
            folder = work / f"rep{rep}_w{workers}"
            if folder.exists():
                shutil.rmtree(folder)
            print(f"[repeat {rep}] {args.trials} trials with --workers {workers} ...", flush=True)
            load_before = os.getloadavg()
            r = run_once(folder, template, data, args.trials, workers)
            r["loadavg_before"] = load_before
            r["repeat"] = rep
            r["loadavg_after"] = os.getloadavg()
            runs.append(r)
            print(
                f"  wall {r['wall_s']:.1f} s -> {r['trials_per_h']:.0f} trials/h "
                f"(in-study {r['in_study_trials_per_h']:.0f}/h), start-up {r['startup_s']:.1f} s, "
                f"trial {r['first_trial_s']:.1f} s first / {r['other_trial_s']:.2f} s others, "
                f"cores busy {r['cores_busy']:.2f}, per worker {r['trials_per_worker']}",
                flush=True,
            )

    headers = [
        "workers",
        "repeat",
        "trials",
        "wall s",
        "trials/h",
        "in-study trials/h",
        "start-up s",
        "first trial s (per worker)",
        "other trials s (mean / median)",
        "cores busy",
        "CPU s per trial",
        "trials per worker",
        "load avg before / after",
    ]
    rows = [
        [
            r["workers"],
            r["repeat"],
            r["trials"],
            f"{r['wall_s']:.1f}",
            f"{r['trials_per_h']:.0f}",
            f"{r['in_study_trials_per_h']:.0f}",
            f"{r['startup_s']:.1f}",
            f"{r['first_trial_s']:.1f}",
            f"{r['other_trial_s']:.2f} / {r['other_trial_median_s']:.2f}",
            f"{r['cores_busy']:.2f}",
            f"{r['cpu_s_per_trial']:.2f}",
            "/".join(str(v) for v in r["trials_per_worker"].values()),
            f"{r['loadavg_before'][0]:.1f} / {r['loadavg_after'][0]:.1f}",
        ]
        for r in runs
    ]
    summary = []
    for w in args.workers:
        rs = [r for r in runs if r["workers"] == w]
        summary.append(
            [
                w,
                len(rs),
                f"{statistics.mean(r['trials_per_h'] for r in rs):.0f}",
                f"{statistics.mean(r['in_study_trials_per_h'] for r in rs):.0f}",
                f"{statistics.mean(r['other_trial_s'] for r in rs):.2f}",
                f"{statistics.mean(r['cores_busy'] for r in rs):.2f}",
                f"{statistics.mean(r['cpu_s_per_trial'] for r in rs):.2f}",
            ]
        )
    text = "\n\n".join(
        [
            f"Study throughput ({info['date']}, {info['cores']} cores, load {info['loadavg'][0]:.1f} at the start; "
            f"{args.space} template, {args.trials} trials per study, "
            "fresh SQLite study and empty compilation cache each)",
            so.md_table(headers, rows),
            so.md_table(
                [
                    "workers",
                    "runs",
                    "trials/h (mean)",
                    "in-study trials/h (mean)",
                    "trial s (2nd+ per worker)",
                    "cores busy",
                    "CPU s per trial",
                ],
                summary,
            ),
        ]
    )
    print("\n" + text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{args.out}.md").write_text(text + "\n")
    Path(f"{args.out}.json").write_text(
        json.dumps(
            {
                "machine": info,
                "args": {k: str(v) for k, v in vars(args).items()},
                "runs": runs,
                "total_s": time.perf_counter() - t_all,
            },
            indent=1,
            default=str,
        )
    )
    print(f"\nwrote {args.out}.json and {args.out}.md ({time.perf_counter() - t_all:.0f} s)")


if __name__ == "__main__":
    main()
