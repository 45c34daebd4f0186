"""Overhead of a phaser-opt trial: everything but the engine iterations, per trial, per storage.

What it measures
----------------
A small study (the quickstart template: single-slice gradient descent, 16x16 scan of 32x32
patterns, 25 iterations; ``pruner: none``, ``report: {every: 5, value: objective}`` as in the
quickstart, artifacts on with the default images and the gallery) runs ``--trials`` trials in ONE
fresh worker process, exactly as ``phaser-opt study.yaml`` runs them (``run_study`` -> the runner's
one-trial-per-``optimize`` loop, the persistent JAX compilation cache enabled in a fresh, empty
folder). It runs once per storage (an SQLite file, and a scratch PostgreSQL database created and
dropped by this script) and per search space:

- ``quickstart``: the template as it is (noise model a ``!choice`` of three sub-plans, eps, two
  learning rates, the iteration at which the probe starts);
- ``numbers``: the same template with the noise model fixed to Poisson (eps, learning rates and
  probe start still sampled): trials that differ only in numbers, the case the engine promises
  never to recompile for.

How
---
The child process (``--child``) patches, inside this script only, the functions a trial passes
through and times them as nested regions on one stack (each region's *exclusive* time: its own
time minus that of the regions inside it, so every second is counted once):

- a trial's *cycle*: from one ``Study.optimize(n_trials=1)`` call of the runner's loop to the next
  (the loop's own storage queries between trials included), the last one to the loop's end;
- ``storage``: every call of Optuna's storage (``_CachedStorage`` and ``RDBStorage`` methods; main
  thread only; the heartbeat thread's calls are counted aside), per method;
- ``sampler``: the sampler's ``infer_relative_search_space`` / ``sample_relative`` /
  ``sample_independent`` / ``before_trial`` / ``after_trial``;
- ``plan``: ``StudyObjective.concrete_plan`` (the template filled in, minus the nested sampler and
  storage time), ``validate_plan`` and ``dump_plan``;
- ``data``: ``DataCache.get`` (the fingerprint of the file each trial, a load the first time;
  ``data_loads`` = ``StudyObjective.data_cache.loads``);
- ``engine iterations``: an observer appended last to ``run_plan``'s observers closes one region
  per iteration at each ``iteration_done`` (the first opens at ``engine_started``), so the engine
  window runs from ``engine_started`` to the last ``iteration_done``; the engine's set-up (patterns
  to the device) is inside its first iteration. ``first-iteration excess`` = first iteration minus
  the median of the others (compilation already taken out) is listed aside;
- ``run_plan other``: the rest of ``run_plan`` (initial state, engine hand-over, write-back);
- ``reports``: ``TrialReporter._report`` (sync, objective value, ``trial.report``, ``should_prune``);
- ``metrics``: ``metric_value`` (the objective, also when a report computes it),
  ``all_truth_scores``, and ``StudyObjective._score``'s own attribute writing;
- ``artifacts``: ``ArtifactWriter.record`` (figures, plan, phase array, note);
- ``gallery``: the runner's ``_refresh_gallery`` callback; ``progress``: the one-line printer;
- ``compile``: JAX's ``jaxpr_trace``, ``jaxpr_to_mlir_module`` and ``backend_compile`` durations
  (``jax.monitoring``), taken out of whatever region they happened in; ``compilations`` = the
  number of ``backend_compile`` events minus the persistent-cache hits, ``cache hits`` aside;
- ``optuna other`` / ``objective other`` / ``loop other``: what is left in ``optimize``, in the
  objective and in the cycle (Optuna's ask/tell logic, Python glue).

overhead = cycle - engine iterations; fraction = overhead / cycle. ``trial.duration`` (the
storage's datetime_complete - datetime_start, which leaves out the callbacks) is listed too.

Process start-up: after the in-process run, ``python -m phaser_opt worker study.yaml --storage URL
--n-trials K+1`` is spawned (the ``--workers N`` command line) and the time from the spawn to the
``datetime_start`` of the trial it runs is read from the storage; once with an empty compilation
cache (cold) and once with the cache the in-process run filled (warm, as a second worker or a
resumed study finds it), on the ``numbers`` space. ``imports`` = a bare ``python -c`` importing
``phaser_opt.cli``, ``phaser_opt.runner``, ``phaser.run`` and ``jax`` (+ ``jax.devices()``).

Target: trials 2+ under 0.5 s of overhead and zero compilations.

Run ``python benchmarks/study_overhead.py --help``; results in
``benchmarks/results/study_overhead.{json,md}``. About 4-5 minutes on 2 cores with the defaults.
The other study benchmarks (``study_throughput.py``, ``sampler_efficiency.py``) import the helpers
at the top of this file.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import io
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "benchmarks" / "results"
PG_SERVER = "host=127.0.0.1 port=5432 dbname=test user=postgres"


# ----------------------------------------------------------------------------------------------
# helpers shared by the study benchmarks
# ----------------------------------------------------------------------------------------------


def read_yaml(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def recipe_of(study_file: Path) -> dict[str, Any]:
    """The ``data.simulate`` recipe of a repository study file, its specimen path made absolute."""
    recipe = dict(read_yaml(study_file)["data"]["simulate"])
    recipe["specimen"] = str((study_file.parent / recipe["specimen"]).resolve())
    return recipe


def make_dataset(recipe: dict[str, Any], out: Path, reuse: Path | None = None) -> Path:
    """``out`` simulated from ``recipe`` (phaser-opt's own ``ensure_dataset``), or copied from
    ``reuse`` when that file exists (the repository's quickstart dataset is the same recipe)."""
    if out.exists():
        return out
    if reuse is not None and reuse.is_file():
        shutil.copyfile(reuse, out)
        return out
    from phaser_opt.data import ensure_dataset

    ensure_dataset(recipe, out, Path)
    return out


def quickstart_dataset(work: Path) -> Path:
    """The quickstart's dataset (16x16 scan, 32x32 patterns, SrTiO3, truth inside) in ``work``."""
    recipe = recipe_of(REPO / "studies" / "quickstart.yaml")
    return make_dataset(recipe, work / "quickstart_sto.h5", reuse=REPO / "data" / "quickstart_sto.h5")


def numbers_only_template(text: str) -> str:
    """The quickstart template with its noise-model ``!choice`` replaced by Poisson with a sampled eps."""
    pattern = re.compile(r"^  noise_model: !choice\n(?:    .*\n)+", re.MULTILINE)
    fixed = "  noise_model: {type: poisson, eps: !float {low: 1.0e-3, high: 1.0, log: true, name: eps}}\n"
    out, n = pattern.subn(fixed, text)
    if n != 1:
        raise RuntimeError("the quickstart template's noise_model choice was not found")
    return out


def write_study(folder: Path, name: str, template: Path, data: Path, **fields: Any) -> Path:
    """A study file in ``folder`` (absolute template and data paths; truth = the data file)."""
    folder.mkdir(parents=True, exist_ok=True)
    study: dict[str, Any] = {
        "version": "1.0",
        "name": name,
        "template": str(template),
        "data": {"path": str(data)},
        "truth": {"file": str(data)},
        "objectives": [{"metric": "potential_error"}],
        "sampler": {"type": "tpe", "seed": 0, "options": {"n_startup_trials": 6}},
        "pruner": {"type": "none"},
        "report": {"every": 5, "value": "objective"},
        "n_trials": 10,
    }
    study.update(fields)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


@contextlib.contextmanager
def scratch_postgres(server: str = PG_SERVER) -> Iterator[str]:
    """A fresh PostgreSQL database (``CREATE DATABASE`` with autocommit) as an SQLAlchemy URL;
    dropped (``WITH (FORCE)``) at the end."""
    import psycopg

    name = f"phaser_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        user, host, port = admin.info.user, admin.info.host, admin.info.port
    try:
        yield f"postgresql+psycopg://{user}@{host}:{port}/{name}"
    finally:
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def storage_urls(kinds: list[str], folder: Path, stack: contextlib.ExitStack, server: str) -> dict[str, str]:
    """One URL per storage kind: ``sqlite`` (a file in ``folder``) or ``postgresql`` (scratch DB)."""
    urls = {}
    for kind in kinds:
        if kind == "sqlite":
            urls[kind] = f"sqlite:///{folder / 'study.db'}"
        elif kind == "postgresql":
            urls[kind] = stack.enter_context(scratch_postgres(server))
        else:
            raise ValueError(f"unknown storage {kind!r}")
    return urls


def md_table(headers: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    """Where and when: cores, CPU, load, versions, commit, date."""
    cpu = ""
    with contextlib.suppress(OSError):
        cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "")
    versions = {}
    from importlib import metadata

    for pkg in ("phaser", "optuna", "jax", "jaxlib", "sqlalchemy", "psycopg", "torch"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[pkg] = metadata.version(pkg)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout
    return {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)),
        "cpu": cpu,
        "loadavg": os.getloadavg(),
        "python": platform.python_version(),
        "versions": versions,
        "commit": commit.strip(),
        "note": "shared 2-core machine: other jobs ran at the same time",
    }


def trial_datetimes(url: str, name: str) -> list[dict[str, Any]]:
    """Every trial of study ``name`` in ``url``: number, state, value, start, complete, duration."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.load_study(study_name=name, storage=url)
    out = []
    for t in study.get_trials(deepcopy=False):
        out.append(
            {
                "number": t.number,
                "state": t.state.name,
                "value": t.value if t.values and len(t.values) == 1 else t.values,
                "start": t.datetime_start,
                "complete": t.datetime_complete,
                "duration_s": t.duration.total_seconds() if t.duration else None,
                "params": t.params,
                "user_attrs": {k: v for k, v in t.user_attrs.items() if k in ("wall_time_s", "iterations")},
            }
        )
    return out


# ----------------------------------------------------------------------------------------------
# the child: one study in this process, every phase timed
# ----------------------------------------------------------------------------------------------


class Profiler:
    """Nested regions on one stack (main thread), exclusive seconds per bucket and per trial."""

    COMPILE_EVENTS = (
        "/jax/core/compile/jaxpr_trace_duration",
        "/jax/core/compile/jaxpr_to_mlir_module_duration",
        "/jax/core/compile/backend_compile_duration",
    )

    def __init__(self) -> None:
        self.main = threading.get_ident()
        self.stack: list[list[Any]] = []  # [bucket, t0, child seconds]
        self.trials: list[dict[str, Any]] = []
        self.prelude = self._record(-1)
        self.current = self.prelude
        self.storage_depth = 0
        self.other_thread_storage = [0, 0.0]

    @staticmethod
    def _record(index: int) -> dict[str, Any]:
        return {
            "index": index,
            "buckets": {},
            "storage_calls": {},
            "storage_by_context": {},
            "compilations": 0,
            "backend_compile_events": 0,
            "cache_hits": 0,
            "compile_s": 0.0,
            "iterations": [],  # per engine: exclusive seconds per iteration
        }

    def add(self, bucket: str, seconds: float) -> None:
        b = self.current["buckets"]
        b[bucket] = b.get(bucket, 0.0) + seconds

    def push(self, bucket: str, t0: float | None = None) -> list[Any]:
        frame = [bucket, time.perf_counter() if t0 is None else t0, 0.0]
        self.stack.append(frame)
        return frame

    def pop(self, frame: list[Any], t1: float | None = None) -> float:
        """Close ``frame`` (and anything left open above it); returns its exclusive seconds."""
        t1 = time.perf_counter() if t1 is None else t1
        while self.stack and self.stack[-1] is not frame:
            self.pop(self.stack[-1], t1)
        if not self.stack:
            return 0.0
        self.stack.pop()
        total = t1 - frame[1]
        exclusive = total - frame[2]
        self.add(frame[0], exclusive)
        if self.stack:
            self.stack[-1][2] += total
        return exclusive

    def region(self, bucket: Any):
        profiler = self

        @contextlib.contextmanager
        def cm():
            if threading.get_ident() != profiler.main:
                yield
                return
            frame = profiler.push(bucket(profiler) if callable(bucket) else bucket)
            try:
                yield
            finally:
                profiler.pop(frame)

        return cm()

    def inside(self, bucket: str) -> bool:
        return any(frame[0] == bucket for frame in self.stack)

    def wrap(self, owner: Any, attr: str, bucket: Any) -> None:
        original = getattr(owner, attr)
        profiler = self

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with profiler.region(bucket):
                return original(*args, **kwargs)

        wrapper.__wrapped__ = original  # type: ignore[attr-defined]
        setattr(owner, attr, wrapper)

    def wrap_storage(self, cls: type) -> None:
        profiler = self
        for attr, value in list(vars(cls).items()):
            if attr.startswith("__") or not callable(value) or isinstance(value, (staticmethod, classmethod, type)):
                continue

            def make(original: Any, method: str) -> Any:
                def wrapper(*args: Any, **kwargs: Any) -> Any:
                    if threading.get_ident() != profiler.main:
                        t0 = time.perf_counter()
                        try:
                            return original(*args, **kwargs)
                        finally:
                            profiler.other_thread_storage[0] += 1
                            profiler.other_thread_storage[1] += time.perf_counter() - t0
                    outer = profiler.storage_depth == 0
                    context = profiler.stack[-1][0] if profiler.stack else "outside"
                    profiler.storage_depth += 1
                    frame = profiler.push("storage")
                    t0 = frame[1]
                    try:
                        return original(*args, **kwargs)
                    finally:
                        profiler.pop(frame)
                        profiler.storage_depth -= 1
                        if outer:
                            calls = profiler.current["storage_calls"]
                            n, s = calls.get(method, (0, 0.0))
                            calls[method] = (n + 1, s + time.perf_counter() - t0)
                            where = profiler.current["storage_by_context"]
                            n, s = where.get(context, (0, 0.0))
                            where[context] = (n + 1, s + time.perf_counter() - t0)

                return wrapper

            setattr(cls, attr, make(value, attr))

    # JAX monitoring listeners
    def on_duration(self, event: str, duration: float, **_: Any) -> None:
        if event not in self.COMPILE_EVENTS or threading.get_ident() != self.main:
            return
        self.current["compile_s"] += duration
        self.add("compile", duration)
        if self.stack:
            self.stack[-1][2] += duration  # out of the region it happened in
        if event.endswith("backend_compile_duration"):
            self.current["backend_compile_events"] += 1

    def on_event(self, event: str, **_: Any) -> None:
        if event == "/jax/compilation_cache/cache_hits":
            self.current["cache_hits"] += 1

    # trial cycles
    def next_cycle(self) -> None:
        now = time.perf_counter()
        if self.stack and self.stack[0][0] == "loop other":
            self.pop(self.stack[0], now)
        self.current = self._record(len(self.trials))
        self.current["t0"] = now
        self.trials.append(self.current)
        self.push("loop other", now)

    def end(self) -> None:
        if self.stack:
            self.pop(self.stack[0])


def iteration_observer(profiler: Profiler):
    from phaser.observers import Observer

    class IterationTimer(Observer):
        """Closes one ``engine iterations`` region per iteration (appended last to the observers)."""

        def __init__(self) -> None:
            self.frame: list[Any] | None = None
            self.times: list[float] = []

        def engine_started(self, index, engine, state):
            self.times = []
            profiler.current["iterations"].append(self.times)
            self.frame = profiler.push("engine iterations")

        def iteration_done(self, state, sync, i, niter):
            if self.frame is not None:
                self.times.append(profiler.pop(self.frame))
            self.frame = profiler.push("engine iterations")
            return False

        def engine_finished(self, index, engine, state):
            self._close()

        def run_finished(self, state, error):
            self._close()

        def _close(self) -> None:
            if self.frame is not None and self.frame in profiler.stack:
                self.frame[0] = "run_plan other"  # after the last iteration_done: the engine's hand-over
                profiler.pop(self.frame)
            self.frame = None

    return IterationTimer()


def child(args: argparse.Namespace) -> None:
    """Run the study in this process with every phase timed; write the per-trial JSON."""
    t_start = time.perf_counter()
    import jax
    import optuna
    from optuna.storages import RDBStorage
    from optuna.storages._cached_storage import _CachedStorage

    import phaser_opt.objective as objective_mod
    import phaser_opt.runner as runner_mod
    from phaser_opt import artifacts as artifacts_mod
    from phaser_opt import reporter as reporter_mod
    from phaser_opt.study import load_study, with_storage
    from phaser_opt.workers import enable_compilation_cache

    t_imported = time.perf_counter()
    prof = Profiler()
    jax.monitoring.register_event_duration_secs_listener(prof.on_duration)
    jax.monitoring.register_event_listener(prof.on_event)

    prof.wrap_storage(_CachedStorage)
    prof.wrap_storage(RDBStorage)
    for cls in (optuna.samplers.TPESampler, optuna.samplers.RandomSampler, optuna.samplers.GPSampler):
        for attr in (
            "infer_relative_search_space",
            "sample_relative",
            "sample_independent",
            "before_trial",
            "after_trial",
        ):
            if attr in vars(cls):
                prof.wrap(cls, attr, "sampler")
    O = objective_mod
    prof.wrap(O.StudyObjective, "__call__", "objective other")
    prof.wrap(O.StudyObjective, "concrete_plan", "plan")
    prof.wrap(O, "validate_plan", "plan")
    prof.wrap(O, "dump_plan", "plan")
    prof.wrap(O.DataCache, "get", "data")
    prof.wrap(O, "metric_value", lambda p: "reports" if p.inside("reports") else "metrics")
    prof.wrap(O, "all_truth_scores", "metrics")
    prof.wrap(O.StudyObjective, "_score", "metrics")
    prof.wrap(reporter_mod.TrialReporter, "_report", "reports")
    prof.wrap(artifacts_mod.ArtifactWriter, "record", "artifacts")
    import optuna_dashboard

    from phaser import figures as figures_mod

    prof.wrap(artifacts_mod, "trial_figures", "artifacts: draw figures")
    prof.wrap(figures_mod, "save_figure", "artifacts: save PNGs")
    prof.wrap(artifacts_mod, "upload_artifact", "artifacts: upload")
    prof.wrap(optuna_dashboard, "save_note", "artifacts: note")
    prof.wrap(artifacts_mod.ArtifactWriter, "phase_of", "gallery")
    prof.wrap(optuna_dashboard, "save_plotly_graph_object", "gallery: save figure")
    prof.wrap(runner_mod, "_refresh_gallery", "gallery")
    prof.wrap(runner_mod.ProgressPrinter, "__call__", "progress")

    original_run_plan = O.run_plan

    def timed_run_plan(plan, observers=None, data=None, holdout=None):
        with prof.region("run_plan other"):
            return original_run_plan(plan, [*(observers or []), iteration_observer(prof)], data=data, holdout=holdout)

    O.run_plan = timed_run_plan

    data_caches: list[Any] = []
    original_init = O.StudyObjective.__init__

    def init(self, *a, **k):
        original_init(self, *a, **k)
        data_caches.append(self.data_cache)

    O.StudyObjective.__init__ = init

    original_optimize = optuna.Study.optimize

    def optimize(self, *a, **k):
        loads_before = data_caches[-1].loads if data_caches else 0
        prof.next_cycle()
        record = prof.current
        frame = prof.push("optuna other")
        try:
            return original_optimize(self, *a, **k)
        finally:
            prof.pop(frame)
            record["data_loads"] = (data_caches[-1].loads if data_caches else 0) - loads_before

    optuna.Study.optimize = optimize

    loaded = with_storage(load_study(args.child), args.storage)
    enable_compilation_cache()
    t_run = time.perf_counter()
    stream = io.StringIO()
    runner_mod.run_study(loaded, stream=stream)
    prof.end()
    prof.current = prof._record(-2)  # what follows (reading the trials back) is not a trial's
    t_end = time.perf_counter()

    trials = trial_datetimes(args.storage, loaded.spec.name)
    out = {
        "study": str(args.child),
        "storage": args.storage.split("://")[0],
        "import_s": t_imported - t_start,
        "before_first_trial_s": (prof.trials[0]["t0"] - t_run) if prof.trials else None,
        "run_s": t_end - t_run,
        "prelude": prof.prelude,
        "cycles": prof.trials,
        "trials": [{**t, "start": str(t["start"]), "complete": str(t["complete"])} for t in trials],
        "heartbeat_thread_storage": prof.other_thread_storage,
        "progress": stream.getvalue(),
    }
    Path(args.json).write_text(json.dumps(out, indent=1, default=str))


# ----------------------------------------------------------------------------------------------
# the parent: runs the children, the start-up measurement, the summary
# ----------------------------------------------------------------------------------------------

BUCKET_ORDER = [
    "engine iterations",
    "compile",
    "storage",
    "sampler",
    "plan",
    "data",
    "run_plan other",
    "reports",
    "metrics",
    "artifacts",
    "artifacts: draw figures",
    "artifacts: save PNGs",
    "artifacts: upload",
    "artifacts: note",
    "gallery",
    "gallery: save figure",
    "progress",
    "optuna other",
    "objective other",
    "loop other",
]


ART = [b for b in BUCKET_ORDER if b.startswith(("artifacts", "gallery"))]


def summarise_cycles(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Per trial: cycle, engine, overhead and its parts, compilations, storage calls."""
    rows = []
    trials = {t["number"]: t for t in result["trials"]}
    for k, cyc in enumerate(result["cycles"]):
        buckets = cyc["buckets"]
        cycle = sum(buckets.values())
        engine = buckets.get("engine iterations", 0.0)
        excess = 0.0
        for times in cyc["iterations"]:
            if len(times) >= 3:
                excess += max(0.0, times[0] - statistics.median(times[1:]))
        trial = trials.get(k, {})
        rows.append(
            {
                "trial": k,
                "params": trial.get("params"),
                "value": trial.get("value"),
                "cycle_s": cycle,
                "duration_s": trial.get("duration_s"),
                "engine_s": engine,
                "overhead_s": cycle - engine,
                "overhead_fraction": (cycle - engine) / cycle if cycle else None,
                "first_iteration_excess_s": excess,
                "compilations": cyc["backend_compile_events"] - cyc["cache_hits"],
                "cache_hits": cyc["cache_hits"],
                "compile_s": cyc["compile_s"],
                "data_loads": cyc.get("data_loads"),
                "buckets": {b: buckets.get(b, 0.0) for b in BUCKET_ORDER},
                "storage_calls": {m: [n, round(s, 4)] for m, (n, s) in sorted(cyc["storage_calls"].items())},
                "storage_by_context": {m: [n, round(s, 4)] for m, (n, s) in sorted(cyc["storage_by_context"].items())},
                "n_iterations": sum(len(t) for t in cyc["iterations"]),
            }
        )
    return rows


def mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def run_child(study: Path, url: str, out: Path, cache: Path) -> dict[str, Any]:
    env = {**os.environ, "PHASER_JAX_CACHE": str(cache)}
    cmd = [sys.executable, __file__, "--child", str(study), "--storage", url, "--json", str(out)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"child failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    result = json.loads(out.read_text())
    result["process_wall_s"] = time.perf_counter() - t0
    return result


def worker_startup(study: Path, url: str, name: str, cache: Path) -> dict[str, Any]:
    """Spawn ``python -m phaser_opt worker`` for one more trial; seconds from the spawn to that
    trial's ``datetime_start`` (and to the process's end)."""
    before = trial_datetimes(url, name)
    target = sum(t["state"] in ("COMPLETE", "PRUNED", "FAIL") for t in before) + 1
    env = {**os.environ, "PHASER_JAX_CACHE": str(cache)}
    cmd = [sys.executable, "-m", "phaser_opt", "worker", str(study), "--storage", url, "--n-trials", str(target)]
    spawn = dt.datetime.now()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"worker failed: {proc.stderr[-2000:]}")
    after = trial_datetimes(url, name)
    new = [t for t in after if t["number"] >= len(before)]
    first = min(new, key=lambda t: t["number"])
    return {
        "spawn_to_first_trial_start_s": (first["start"] - spawn).total_seconds(),
        "first_trial_duration_s": first["duration_s"],
        "process_wall_s": wall,
        "trials_run": len(new),
    }


def import_time() -> float:
    code = (
        "import time; t=time.perf_counter(); import phaser_opt.cli, phaser_opt.runner, phaser.run, jax; "
        "jax.devices(); print(time.perf_counter()-t)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return float(out.strip().splitlines()[-1])


def fmt(x: float | None, digits: int = 2) -> str:
    if x is None:
        return ""
    return f"{x:.{digits}f}"


def table_rows(cases: list[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    headers = [
        "storage",
        "space",
        "trials",
        "cycle s",
        "engine s",
        "overhead s",
        "overhead %",
        "compilations",
        "compile s",
        "storage s",
        "storage calls",
        "metrics+reports s",
        "artifacts+gallery s",
        "sampler s",
        "plan+data s",
        "other s",
        "data loads",
    ]
    rows = []
    for case in cases:
        per = case["per_trial"]
        for label, group in (("1", per[:1]), ("2+", per[1:])):
            if not group:
                continue

            def m(key: str, group=group) -> float:
                return mean([r[key] for r in group])

            def b(*names: str, group=group) -> float:
                return mean([sum(r["buckets"][n] for n in names) for r in group])

            named = ["compile", "storage", "metrics", "reports", "sampler", "plan", "data"] + ART
            other = mean([r["overhead_s"] - sum(r["buckets"][n] for n in named) for r in group])
            calls = mean([sum(n for n, _ in r["storage_calls"].values()) for r in group])
            rows.append(
                [
                    case["storage"],
                    case["space"],
                    label,
                    fmt(m("cycle_s")),
                    fmt(m("engine_s")),
                    fmt(m("overhead_s")),
                    f"{100 * m('overhead_fraction'):.0f}",
                    f"{mean([r['compilations'] for r in group]):.1f}",
                    fmt(m("compile_s")),
                    fmt(b("storage"), 3),
                    f"{calls:.0f}",
                    fmt(b("metrics", "reports"), 3),
                    fmt(b(*ART), 3),
                    fmt(b("sampler"), 3),
                    fmt(b("plan", "data"), 3),
                    fmt(other, 3),
                    f"{sum(r['data_loads'] or 0 for r in group)}",
                ]
            )
    return headers, rows


def breakdown_rows(cases: list[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    """Trials 2+: mean exclusive seconds per bucket, one column per case."""
    headers = ["bucket (trials 2+, mean s)"] + [f"{c['storage']} / {c['space']}" for c in cases]
    rows = []
    for bucket in BUCKET_ORDER:
        row = [bucket]
        for c in cases:
            row.append(fmt(mean([r["buckets"][bucket] for r in c["per_trial"][1:]]), 3))
        rows.append(row)
    rows.append(
        ["first-iteration excess (in engine)"]
        + [fmt(mean([r["first_iteration_excess_s"] for r in c["per_trial"][1:]]), 3) for c in cases]
    )
    return headers, rows


def storage_call_rows(cases: list[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    """Trials 2+: storage methods, calls per trial and ms per trial, per storage (numbers space)."""
    picked = [c for c in cases if c["space"] == "numbers"] or cases
    methods: set[str] = set()
    for c in picked:
        for r in c["per_trial"][1:]:
            methods |= set(r["storage_calls"])
    headers = ["storage method (trials 2+)"] + [f"{c['storage']}: calls / ms per trial" for c in picked]
    rows = []
    for method in sorted(methods):
        row = [method]
        for c in picked:
            group = c["per_trial"][1:]
            n = mean([r["storage_calls"].get(method, [0, 0])[0] for r in group])
            s = mean([r["storage_calls"].get(method, [0, 0])[1] for r in group])
            row.append(f"{n:.1f} / {1000 * s:.1f}")
        rows.append(row)
    rows.sort(key=lambda r: -max(float(c.split(" / ")[1]) for c in r[1:]))
    return headers, rows


def storage_context_rows(cases: list[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    """Trials 2+: storage calls by the region that made them (calls / ms per trial)."""
    picked = [c for c in cases if c["space"] == "numbers"] or cases
    contexts: set[str] = set()
    for c in picked:
        for r in c["per_trial"][1:]:
            contexts |= set(r["storage_by_context"])
    headers = ["storage calls made in (trials 2+)"] + [f"{c['storage']}: calls / ms per trial" for c in picked]
    rows = []
    for context in contexts:
        row = [context]
        for c in picked:
            group = c["per_trial"][1:]
            n = mean([r["storage_by_context"].get(context, [0, 0])[0] for r in group])
            s = mean([r["storage_by_context"].get(context, [0, 0])[1] for r in group])
            row.append(f"{n:.1f} / {1000 * s:.1f}")
        rows.append(row)
    rows.sort(key=lambda r: -max(float(c.split(" / ")[1]) for c in r[1:]))
    return headers, rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=10, help="trials per in-process run (default 10)")
    parser.add_argument("--spaces", nargs="+", default=["numbers", "quickstart"], choices=["numbers", "quickstart"])
    parser.add_argument("--storages", nargs="+", default=["sqlite", "postgresql"], choices=["sqlite", "postgresql"])
    parser.add_argument("--pg-server", default=PG_SERVER, help="libpq string of the PostgreSQL server (admin)")
    parser.add_argument("--artifacts", default="on", choices=["on", "off"], help="the study's artifacts (default on)")
    parser.add_argument("--no-startup", action="store_true", help="skip the worker start-up runs")
    parser.add_argument("--work-dir", type=Path, default=None, help="scratch folder (default: a temp folder)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "study_overhead", help="results prefix (.json, .md)")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--storage", help=argparse.SUPPRESS)
    parser.add_argument("--json", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args)
        return

    t_all = time.perf_counter()
    info = machine()
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="study_overhead_"))
    work.mkdir(parents=True, exist_ok=True)
    data = quickstart_dataset(work)
    template_q = REPO / "plans" / "templates" / "quickstart.yaml"
    template_n = work / "quickstart_numbers.yaml"
    template_n.write_text(numbers_only_template(template_q.read_text()))
    templates = {"quickstart": template_q, "numbers": template_n}

    cases: list[dict[str, Any]] = []
    startup: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        for kind in args.storages:
            for space in args.spaces:
                folder = work / f"{kind}_{space}"
                folder.mkdir(parents=True, exist_ok=True)
                url = storage_urls([kind], folder, stack, args.pg_server)[kind]
                name = f"overhead_{space}"
                extra = {} if args.artifacts == "on" else {"artifacts": {"enabled": False}}
                study = write_study(folder, name, templates[space], data, n_trials=args.trials, **extra)
                cache = folder / "jax_cache"
                print(f"[{kind} / {space}] {args.trials} trials in one process ...", flush=True)
                result = run_child(study, url, folder / "child.json", cache)
                per = summarise_cycles(result)
                cases.append(
                    {
                        "storage": kind,
                        "space": space,
                        "artifacts": args.artifacts,
                        "process_wall_s": result["process_wall_s"],
                        "import_s": result["import_s"],
                        "before_first_trial_s": result["before_first_trial_s"],
                        "prelude_buckets": result["prelude"]["buckets"],
                        "prelude_compilations": result["prelude"]["backend_compile_events"],
                        "heartbeat_thread_storage": result["heartbeat_thread_storage"],
                        "per_trial": per,
                        "progress": result["progress"],
                    }
                )
                for r in per:
                    print(
                        f"  trial {r['trial']:>2}: cycle {r['cycle_s']:.2f} s, engine {r['engine_s']:.2f}, "
                        f"overhead {r['overhead_s']:.2f} ({100 * r['overhead_fraction']:.0f}%), "
                        f"{r['compilations']} compilations ({r['compile_s']:.2f} s), storage "
                        f"{r['buckets']['storage']:.3f} s, artifacts+gallery "
                        f"{sum(r['buckets'][a] for a in ART):.3f} s",
                        flush=True,
                    )
                if space == "numbers" and not args.no_startup:
                    for label, c in (("cold", folder / "jax_cache_empty"), ("warm", cache)):
                        s = worker_startup(study, url, name, c)
                        s.update(storage=kind, space=space, cache=label)
                        startup.append(s)
                        print(
                            f"  worker start-up ({label} compilation cache): spawn -> trial start "
                            f"{s['spawn_to_first_trial_start_s']:.2f} s, "
                            f"that trial {s['first_trial_duration_s']:.2f} s",
                            flush=True,
                        )
    imports = import_time() if not args.no_startup else None

    headers, rows = table_rows(cases)
    bh, brows = breakdown_rows(cases)
    sh, srows = storage_call_rows(cases)
    ch, crows = storage_context_rows(cases)
    sth = [
        "storage",
        "compilation cache",
        "spawn -> first trial start s",
        "that trial's duration s",
        "worker process wall s",
    ]
    strows = [
        [
            s["storage"],
            s["cache"],
            fmt(s["spawn_to_first_trial_start_s"]),
            fmt(s["first_trial_duration_s"]),
            fmt(s["process_wall_s"]),
        ]
        for s in startup
    ]
    parts = [
        f"Study overhead per trial ({info['date']}, {info['cores']} cores, load {info['loadavg'][0]:.1f}; "
        f"{args.trials} trials per process; artifacts {args.artifacts}; trial 1 vs mean of trials 2+)",
        md_table(headers, rows),
        md_table(bh, brows),
        md_table(sh, srows),
        md_table(ch, crows),
        md_table(sth, strows) if strows else "",
        f"imports (phaser_opt.cli, runner, phaser.run, jax + devices) in a bare process: {fmt(imports)} s"
        if imports is not None
        else "",
    ]
    text = "\n\n".join(p for p in parts if p)
    print("\n" + text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{args.out}.md").write_text(text + "\n")
    Path(f"{args.out}.json").write_text(
        json.dumps(
            {
                "machine": info,
                "args": {k: str(v) for k, v in vars(args).items() if k not in ("child", "storage", "json")},
                "cases": cases,
                "startup": startup,
                "imports_s": imports,
                "total_s": time.perf_counter() - t_all,
            },
            indent=1,
            default=str,
        )
    )
    print(f"\nwrote {args.out}.json and {args.out}.md ({time.perf_counter() - t_all:.0f} s)")


if __name__ == "__main__":
    main()
