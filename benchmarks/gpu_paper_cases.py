"""The phaser paper's benchmark cases on a GPU: seconds per iteration, compile time, peak GPU memory.

Cases (Gilgenbach, Zhu and LeBeau 2025, "phaser", benchmarks section): (a) a 64x64 raster (4096
positions) of 128x128 patterns, one slice; (b) an 80x80 raster (6400 positions) of 128x128 patterns,
20 slices. The data come from this package's simulator (``phaser simulate``: Gaussian atoms, 300 kV,
25 mrad, C10 = 100 A, 0.4 A step, 1e5 electrons per pattern), simulated once and cached; on a GPU its
forward model is evaluated by cupy (or jax) in float64, the same function as on the CPU.

Each row runs one plan in the original package's format, identical for both packages: the gradient
engine (jax; Adam 0.01, Poisson, grouping 64), ePIE (amplitude, grouping 16) and LSQML (Anscombe,
grouping 64) on jax and, where cupy imports, on cupy. Both packages run every plan in a child process
of their own, in order of importance, until ``--budget-s`` is spent; a run that would overrun it is
stopped and the rest is skipped with a note, so the results written so far always stand.

Per run: ``s/iter`` is the median of iterations 2..n, ``compile`` the first iteration minus that
median, ``GPU peak`` jax's ``peak_bytes_in_use`` (jax backend) or cupy's memory-pool total (cupy
backend) at the end of the run, ``host peak`` the process's ``ru_maxrss``. Results go to one JSON file
and a Markdown table beside it. Setup and the offline install: ``benchmarks/gpu_paper_cases.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import speed_gradient as sg  # noqa: E402  (log parsing, machine description, FFT floor)

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "gpu_paper_cases.json"
DEFAULT_SITE = Path(tempfile.gettempdir()) / "phaser-gpu-site"
DEFAULT_PHASEREM_SITE = Path(tempfile.gettempdir()) / "phaserem-gpu-site"
# Device Python of the GPU machines (their image: Python 3.12, x86-64, manylinux wheels).
WHEEL_PYTHON = "3.12"
WHEEL_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux1_x86_64")
# Our runtime needs that the GPU machine's image lacks (it has jax with CUDA, cupy, numpy, scipy, h5py,
# optax, pyyaml), pinned to the versions installed here.
OURS_CARRIED = (
    "pydantic",
    "pydantic-core",
    "annotated-types",
    "typing-inspection",
    "typing-extensions",  # pydantic needs >= 4.14.1; the image's may be older
    "array-api-compat",
)
# The original package and those of its needs the image lacks; jax, numpy etc. are the image's own.
PHASEREM_CARRIED = (
    "phaserem==0.3.1",
    "frozendict==2.4.7",
    "optree==0.20.0",
    "py-pane==0.11.7",
    "platformdirs==4.14.9",
    "click==8.1.8",
    "typing-extensions==4.16.0",
)
OUR_VERSIONS = ("jax", "jaxlib", "jax-cuda13-plugin", "optax", "numpy", "cupy-cuda13x", "pydantic")
RESERVE_S = 10.0  # kept back from the budget for writing the results


# ----------------------------------------------------------------------------- cases and plans


@dataclass(frozen=True)
class PaperCase:
    """One of the paper's datasets, possibly shrunk by ``--scale``."""

    name: str
    scan: int  # raster side [positions]
    n_slices: int
    pattern_px: int
    diff_step_mrad: float
    kv: float = 300.0
    conv_angle_mrad: float = 25.0
    defocus_A: float = 100.0  # C10 (overfocus); the original's plan `defocus` is numerically C10 too
    step_A: float = 0.4
    slice_thickness_A: float = 10.0
    dose: float = 1e5

    @property
    def n_positions(self) -> int:
        """Probe positions of the raster."""
        return self.scan * self.scan

    @property
    def stem(self) -> str:
        """File stem of the cached data: every parameter that changes the patterns is in it."""
        return (
            f"paper_{self.name}_{self.scan}x{self.scan}_s{self.n_slices}_p{self.pattern_px}"
            f"_d{self.diff_step_mrad:.4g}_{self.kv:g}kV_{self.conv_angle_mrad:g}mrad"
        )


# 128 px at 0.8 mrad/px: the 25 mrad bright-field disc spans about half the detector.
PAPER_CASES = {"a": PaperCase("a", 64, 1, 128, 0.8), "b": PaperCase("b", 80, 20, 128, 0.8)}


def scaled(case: PaperCase, scale: float) -> PaperCase:
    """``case`` with ``scale`` times the positions and the pattern pixels (each side by ``sqrt(scale)``).

    The detector pixel grows as the pattern shrinks, so the real-space pixel, and with it the
    object and the probe's shape, stay those of the full case; the slices stay as they are.
    """
    side = math.sqrt(scale)
    pattern = max(16, 2 * round(case.pattern_px * side / 2))
    return replace(
        case,
        scan=max(4, round(case.scan * side)),
        pattern_px=pattern,
        diff_step_mrad=case.diff_step_mrad * case.pattern_px / pattern,
    )


@dataclass(frozen=True)
class Row:
    """One table row: an engine on a backend on a case, run by both packages."""

    case: str
    engine: str  # gradient, epie, lsqml
    backend: str  # jax, cupy
    grouping: int | None = None  # None: the engine's shared-plan grouping

    @property
    def name(self) -> str:
        """Short label of the row."""
        return f"{self.case}-{self.engine}-{self.backend}" + (f"-g{self.grouping}" if self.grouping else "")

    @property
    def group_size(self) -> int:
        """Positions per group."""
        return self.grouping or GROUPING[self.engine]


# In order of importance: the budget cuts from the end.
ROWS = [
    Row("b", "gradient", "jax"),
    Row("a", "gradient", "jax"),
    Row("a", "epie", "jax"),
    Row("b", "epie", "jax"),
    Row("a", "lsqml", "jax"),
    Row("b", "lsqml", "jax"),
    Row("a", "epie", "cupy"),
    Row("b", "epie", "cupy"),
    Row("a", "lsqml", "cupy"),
    Row("b", "lsqml", "cupy"),
    Row("b", "gradient", "jax", grouping=256),  # larger groups: faster on a GPU, more memory
]
GROUPING = {"gradient": 64, "epie": 16, "lsqml": 64}


def engine_plan(engine: str, niter: int, grouping: int) -> dict[str, Any]:
    """The engine section: the settings of the shared plans in the original package's format."""
    common = {
        "niter": niter,
        "probe_modes": 1,
        "update_probe": True,
        "save": False,
        "save_images": False,
        "group_constraints": [],
        "iter_constraints": [],
        "grouping": grouping,
    }
    if engine == "gradient":
        adam = {"type": "adam", "learning_rate": 0.01, "nesterov": True}
        return {
            "type": "gradient",
            **common,
            "noise_model": {"type": "poisson", "eps": 0.1},
            "solvers": {"object": adam, "probe": dict(adam)},
            "regularizers": [],
        }
    if engine == "epie":
        solver = {"type": "epie", "beta_object": 0.5, "beta_probe": 0.5}
        return {"type": "conventional", **common, "noise_model": {"type": "amplitude", "eps": 0.1}, "solver": solver}
    solver = {
        "type": "lsqml",
        "beta_object": 1.0,
        "beta_probe": 1.0,
        "gamma": 1e-4,
        "illum_reg_object": 0.01,
        "illum_reg_probe": 0.01,
    }
    return {"type": "conventional", **common, "noise_model": {"type": "anscombe", "eps": 0.1}, "solver": solver}


def plan_dict(case: PaperCase, row: Row, npy_path: Path, niter: int, grouping: int) -> dict[str, Any]:
    """A whole plan in the original package's format, which both packages read."""
    plan: dict[str, Any] = {
        "name": f"paper_{row.name}",
        "backend": row.backend,
        "dtype": "float32",
        "raw_data": {
            "type": "manual",
            "path": str(npy_path),
            "diff_step": case.diff_step_mrad,
            "kv": case.kv,
            "adu": 1.0,
        },
        "init": {
            "probe": {"type": "focused", "conv_angle": case.conv_angle_mrad, "defocus": case.defocus_A},
            "scan": {"type": "raster", "shape": [case.scan, case.scan], "step_size": case.step_A},
        },
        "engines": [engine_plan(row.engine, niter, grouping)],
    }
    if case.n_slices > 1:
        plan["slices"] = {"n": case.n_slices, "total_thickness": case.n_slices * case.slice_thickness_A}
    return plan


# ----------------------------------------------------------------------------- offline install


def make_wheelhouse(folder: Path, python_version: str = WHEEL_PYTHON) -> list[str]:
    """Download (here, online) the wheels the GPU machine lacks into ``folder/ours`` and ``folder/phaserem``."""
    from importlib.metadata import version

    platforms = [arg for name in WHEEL_PLATFORMS for arg in ("--platform", name)]
    base = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    base += ["--python-version", python_version, "--implementation", "cp", *platforms]
    specs = {"ours": [f"{name}=={version(name)}" for name in OURS_CARRIED], "phaserem": list(PHASEREM_CARRIED)}
    for sub, names in specs.items():
        shutil.rmtree(folder / sub, ignore_errors=True)
        subprocess.run([*base, "-q", "-d", str(folder / sub), *names], check=True)
    return sorted(path.name for path in folder.rglob("*.whl"))


def pip_install(wheels: list[Path], target: Path) -> None:
    """Install ``wheels`` into ``target`` without an index, a dependency check or a cache."""
    target.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile"]
    command += ["--no-cache-dir", "--upgrade", "--target", str(target), *map(str, wheels)]
    subprocess.run(command, check=True)


def install_wheelhouse(folder: Path, site: Path, phaserem_site: Path) -> Path | None:
    """Install a wheelhouse from :func:`make_wheelhouse` (there, offline); the original's executable.

    Our wheels go to ``site`` (put first on our runs' ``PYTHONPATH``), the original's to
    ``phaserem_site``, apart: both import as ``phaser``. The executable written there puts its
    folder first on ``sys.path`` and calls the original's console entry point.
    """
    ours = sorted((folder / "ours").glob("*.whl"))
    if ours:
        pip_install(ours, site)
    theirs = sorted((folder / "phaserem").glob("*.whl"))
    if not theirs:
        return None
    pip_install(theirs, phaserem_site)
    executable = phaserem_site / "bin" / "phaser"  # replaces pip's script, which lacks the folder
    executable.parent.mkdir(exist_ok=True)
    executable.write_text(
        f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(phaserem_site)!r})\n"
        "from phaser.cli import cli\nsys.exit(cli())\n"
    )
    executable.chmod(0o755)
    return executable


# Both packages alike: jax takes GPU memory as needed rather than 75% up front, so that a cupy run
# that imports jax keeps the card, and so that device-level readings mean something.
_COMMON_ENV = {"XLA_PYTHON_CLIENT_PREALLOCATE": "false", "PYTHONUNBUFFERED": "1"}


def ours_env(site: Path | None) -> dict[str, str]:
    """Environment of our runs: the carried wheels, then this checkout, on ``PYTHONPATH``."""
    paths = [str(site)] if site is not None and site.exists() else []
    paths += [str(REPO), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths), **_COMMON_ENV}


def phaserem_env() -> dict[str, str]:
    """Environment of the original's runs: no ``PYTHONPATH``, which could make ours shadow it."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    return {**env, **_COMMON_ENV}


def interpreter_of(executable: Path) -> str:
    """The Python named on the first line of a console script."""
    first = executable.read_text(errors="replace").splitlines()[0]
    if not first.startswith("#!") or "python" not in first:
        raise ValueError(f"{executable}: not a Python console script (first line {first!r})")
    return first[2:].strip().split()[0]


# ----------------------------------------------------------------------------- child processes


def device_memory_record() -> dict[str, Any]:
    """Peak memory of this process: host ``ru_maxrss``, jax's device peak, cupy's pool (if loaded)."""
    record: dict[str, Any] = {"host_peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}
    jax = sys.modules.get("jax")
    if jax is not None:
        try:
            device = jax.devices()[0]
            stats = device.memory_stats()
            record["jax_device"] = device.device_kind
            if stats:
                record["jax_peak_mib"] = stats["peak_bytes_in_use"] / 2**20
        except Exception as exc:  # a failed backend must not hide the run's own result
            record["jax_memory_error"] = repr(exc)
    cupy = sys.modules.get("cupy")
    if cupy is not None:
        try:
            record["cupy_pool_total_mib"] = cupy.get_default_memory_pool().total_bytes() / 2**20
        except Exception as exc:
            record["cupy_memory_error"] = repr(exc)
    return record


def versions_record(distributions: tuple[str, ...], ours: bool = False) -> dict[str, str]:
    """Installed versions of ``distributions`` seen by this process ("absent" when missing).

    With ``ours``, also this checkout's ``phaser.__version__`` (it runs from the tree, uninstalled).
    """
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    if ours:
        import phaser

        out["phaser (this checkout)"] = phaser.__version__
    for name in distributions:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "absent"
    return out


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file, so a stopped process never leaves half a file."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    os.replace(partial, path)


def _exit_on_sigterm() -> None:
    """SIGTERM (the budget's stop) raises ``SystemExit``, so the workers' ``finally`` still records memory.

    A ``finally`` rather than ``atexit``: jax's own exit handler drops its backends, and a record
    taken after it would read a fresh client's zero peak.
    """
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def ours_worker(plan_path: Path, out_path: Path) -> None:
    """Child: run ``plan_path`` with our package, timestamps written after every iteration."""
    _exit_on_sigterm()
    record: dict[str, Any] = {"process_start_s": time.perf_counter(), "iteration_end_s": [], "errors": []}

    def write() -> None:
        write_atomically(out_path, json.dumps(record))

    def finish() -> None:
        record.update(device_memory_record())
        record["versions"] = versions_record(OUR_VERSIONS, ours=True)
        write()

    from phaser.observers import Observer
    from phaser.plan import load_plans
    from phaser.run import run_plan

    class IterationTimer(Observer):
        """Timestamps engine start and every iteration's end (the engine reads its error back)."""

        def engine_started(self, index: int, engine: Any, state: Any) -> None:
            record["engine_start_s"] = time.perf_counter()

        def iteration_done(self, state: Any, sync: Any, i: int, niter: int) -> bool:
            record["iteration_end_s"].append(time.perf_counter())
            record["errors"].append(float(state.error_history[-1]))
            write()
            return False

    try:
        (plan,) = load_plans(plan_path)
        run_plan(plan, [IterationTimer()])
    finally:
        finish()


def phaserem_wrapper(executable: Path, out_path: Path, cli_args: list[str]) -> None:
    """Child, in the original's interpreter: run its console script, then record memory and versions."""
    _exit_on_sigterm()

    def finish() -> None:
        record = device_memory_record()
        record["versions"] = versions_record(("phaserem", "jax", "jaxlib", "optax", "numpy", "cupy-cuda13x"))
        write_atomically(out_path, json.dumps(record))

    import runpy

    sys.argv = [str(executable), *cli_args]
    try:
        runpy.run_path(str(executable), run_name="__main__")
    finally:  # also on the SystemExit of its command-line interface
        finish()


def gpu_forward() -> tuple[Any, str]:
    """The simulator's forward model evaluated on a GPU (cupy, else jax), float64; ``(None, "numpy")``."""
    from phaser.physics.multislice import forward_intensity

    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() > 0:
            return _on_device(forward_intensity, cupy, cupy.asarray, lambda out: out.get()), "cupy"
    except Exception:  # no cupy, or no CUDA for it: try jax
        pass
    import jax

    if jax.devices()[0].platform == "gpu":
        jax.config.update("jax_enable_x64", True)  # this child only simulates
        import jax.numpy as jnp

        return _on_device(forward_intensity, jnp, jnp.asarray, lambda out: jax.device_get(out)), "jax"
    return None, "numpy"


def _on_device(forward: Any, xp: Any, to_device: Any, to_host: Any) -> Any:
    """``forward(np, ...)`` with its arrays on the device; the object, probe and propagators sent once."""
    sent: dict[int, tuple[Any, Any]] = {}

    def put(array: Any) -> Any:
        if id(array) not in sent:
            sent[id(array)] = (array, to_device(array))  # the host array kept: its id stays unique
        return sent[id(array)][1]

    def on_device(_np: Any, probe_modes: Any, obj: Any, positions_px: Any, propagators: Any) -> Any:
        return to_host(forward(xp, put(probe_modes), put(obj), to_device(positions_px), put(propagators)))

    return on_device


def simulate_worker(h5_path: Path, npy_path: Path, cli_args: list[str]) -> None:
    """Child: ``phaser simulate`` with its forward model on the GPU where there is one; then the ``.npy``."""
    import h5py
    import numpy as np

    import phaser.simulate.dataset as dataset
    from phaser.cli import main

    forward, where = gpu_forward()
    if forward is not None:
        dataset.forward_intensity = forward
    print(f"forward model on {where}", flush=True)
    if main(["simulate", "--out", str(h5_path), *cli_args]) != 0:
        raise SystemExit("phaser simulate failed")
    partial = npy_path.with_name(npy_path.name + ".partial")
    with h5py.File(h5_path, "r") as f, partial.open("wb") as out:
        np.save(out, np.asarray(f["patterns"][()], dtype=np.float32))
    os.replace(partial, npy_path)  # the cache holds whole files only


def probe_worker(out_path: Path, pattern_px: int, batch: int) -> None:
    """Child: the device, the versions and one FFT's time on it (a jitted loop, as in speed_gradient)."""
    import jax

    device = jax.devices()[0]
    record: dict[str, Any] = {"jax_device": device.device_kind, "jax_platform": device.platform}
    record["versions"] = versions_record(OUR_VERSIONS, ours=True)
    record["fft_s"] = sg.measure_fft_seconds(batch=batch, size=pattern_px, loops=100, repeats=3)
    try:
        import cupy

        record["cupy_device"] = cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()
    except Exception as exc:
        record["cupy"] = f"not usable: {exc!r}"[:300]
    out_path.write_text(json.dumps(record))


def checkout_state() -> str:
    """The commit of this checkout and whether files differ from it (or why that is unknown)."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO)
        changed = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True, cwd=REPO)
    except OSError as exc:
        return f"unknown ({exc})"
    if commit.returncode != 0:
        return "unknown (no git repository: a copied tree)"
    dirty = len(changed.stdout.splitlines())
    return commit.stdout.strip() + (f" with {dirty} changed files" if dirty else "")


def nvidia_smi() -> str | None:
    """GPU name, memory and driver from ``nvidia-smi``, if present."""
    if shutil.which("nvidia-smi") is None:
        return None
    query = ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"]
    done = subprocess.run(query, capture_output=True, text=True)
    return done.stdout.strip() or None


# ----------------------------------------------------------------------------- running under a budget


class Budget:
    """The whole invocation's wall-clock allowance [s]."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.start = time.monotonic()

    def left(self) -> float:
        """Seconds left, less what writing the results needs."""
        return self.seconds - (time.monotonic() - self.start) - RESERVE_S


def run_limited(command: list[str], log_path: Path, cwd: Path, env: dict[str, str], limit_s: float) -> dict[str, Any]:
    """Run ``command`` for at most ``limit_s`` seconds (then SIGTERM, SIGKILL after 10 s); rc and wall.

    The child stays in this process's session, so whatever ends this process ends it too.
    """
    start = time.perf_counter()
    stopped = False
    with log_path.open("w") as log:
        child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=cwd, env=env)
        try:
            child.wait(timeout=max(limit_s, 1.0))
        except subprocess.TimeoutExpired:
            stopped = True
            child.terminate()
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        finally:
            if child.poll() is None:  # this process is being stopped: take the child along
                child.kill()
    return {"rc": child.returncode, "wall_s": time.perf_counter() - start, "stopped_at_limit": stopped}


@dataclass
class RunResult:
    """One package's run of one row."""

    package: str
    row: str
    status: str  # ok, stopped (limit), failed, skipped
    durations_s: list[float] = field(default_factory=list)
    wall_s: float | None = None
    gpu_peak_mib: float | None = None
    host_peak_mib: float | None = None
    final_error: float | None = None
    note: str = ""
    process: dict[str, Any] = field(default_factory=dict)  # the child's own record, less its timings

    @property
    def s_per_iter(self) -> float | None:
        """Median of iterations 2..n [s] (None under two iterations)."""
        return float(statistics.median(self.durations_s[1:])) if len(self.durations_s) > 1 else None

    @property
    def compile_s(self) -> float | None:
        """First iteration minus the steady median [s]: the compile (and, for ours, the set-up)."""
        per_iter = self.s_per_iter
        return None if per_iter is None else self.durations_s[0] - per_iter

    @property
    def warmup_s(self) -> float | None:
        """Time beyond ``n`` steady iterations [s]: the first iteration's compile plus any recompile."""
        per_iter = self.s_per_iter
        return None if per_iter is None else sum(self.durations_s) - len(self.durations_s) * per_iter

    def summary(self) -> dict[str, Any]:
        """JSON-ready record with the derived numbers and the spread of iterations 2..n."""
        rest = self.durations_s[1:]
        spread = [min(rest), max(rest)] if rest else None
        return {
            **asdict(self),
            "s_per_iter": self.s_per_iter,
            "compile_s": self.compile_s,
            "warmup_s": self.warmup_s,
            "spread_s": spread,
        }


def gpu_peak(memory: dict[str, Any], backend: str) -> float | None:
    """The GPU peak that belongs to ``backend`` [MiB]."""
    return memory.get("cupy_pool_total_mib" if backend == "cupy" else "jax_peak_mib")


def finish_run(
    result: RunResult, outcome: dict[str, Any], memory_path: Path, log_path: Path, backend: str, niter: int
) -> None:
    """Fill in status, memory and the log's tail (on failure) from a finished child."""
    result.wall_s = outcome["wall_s"]
    memory = json.loads(memory_path.read_text()) if memory_path.exists() else {}
    result.process = {k: v for k, v in memory.items() if k not in ("iteration_end_s", "errors")}
    result.gpu_peak_mib = gpu_peak(memory, backend)
    result.host_peak_mib = memory.get("host_peak_mib")
    if outcome["stopped_at_limit"] and len(result.durations_s) < niter:
        result.status = "stopped"
        result.note = f"stopped at its time limit after {len(result.durations_s)} of {niter} iterations"
    elif outcome["stopped_at_limit"]:
        result.note = "stopped at its time limit after its last iteration"
    elif outcome["rc"] != 0:
        result.status = "failed"
        result.note = "\n".join(log_path.read_text(errors="replace").splitlines()[-15:])


def run_ours(row: Row, plan_path: Path, niter: int, work: Path, env: dict[str, str], limit_s: float) -> RunResult:
    """Our package on one plan, in a child process."""
    record_path, log_path = work / f"ours_{row.name}.json", work / f"ours_{row.name}.log"
    command = [sys.executable, str(Path(__file__).resolve()), "--ours-worker", str(plan_path), str(record_path)]
    outcome = run_limited(command, log_path, work, env, limit_s)
    result = RunResult("phaser", row.name, "ok")
    if record_path.exists():
        record = json.loads(record_path.read_text())
        ends = [record.get("engine_start_s", record["process_start_s"]), *record["iteration_end_s"]]
        result.durations_s = [b - a for a, b in zip(ends[:-1], ends[1:], strict=True)]
        result.final_error = record["errors"][-1] if record["errors"] else None
    finish_run(result, outcome, record_path, log_path, row.backend, niter)
    return result


def run_phaserem(row: Row, executable: Path, plan_path: Path, niter: int, work: Path, limit_s: float) -> RunResult:
    """The original package on one plan, through :func:`phaserem_wrapper` in its own interpreter."""
    memory_path, log_path = work / f"phaserem_{row.name}.json", work / f"phaserem_{row.name}.log"
    command = [interpreter_of(executable), str(Path(__file__).resolve()), "--phaserem-wrapper"]
    command += [str(executable), str(memory_path), "run", str(plan_path)]
    outcome = run_limited(command, log_path, work, phaserem_env(), limit_s)
    durations, error = sg.parse_phaserem_log(log_path.read_text(errors="replace"))
    result = RunResult("phaserem", row.name, "ok", durations_s=durations, final_error=error)
    finish_run(result, outcome, memory_path, log_path, row.backend, niter)
    return result


# ----------------------------------------------------------------------------- data


def simulate(case: PaperCase, data_dir: Path, env: dict[str, str], budget: Budget, work: Path) -> dict[str, Any]:
    """The case's patterns as ``.npy`` (cached), simulated by ``phaser simulate`` in a child process."""
    h5_path, npy_path = data_dir / f"{case.stem}.h5", data_dir / f"{case.stem}.npy"
    if npy_path.exists():
        return {"npy": str(npy_path), "cached": True}
    data_dir.mkdir(parents=True, exist_ok=True)
    cli_args = ["--kv", f"{case.kv:g}", "--conv-angle", f"{case.conv_angle_mrad:g}", "--defocus", f"{case.defocus_A:g}"]
    cli_args += ["--pattern-size", str(case.pattern_px), "--diff-step", f"{case.diff_step_mrad!r}"]
    cli_args += ["--scan", str(case.scan), str(case.scan), "--step", f"{case.step_A:g}", "--slices", str(case.n_slices)]
    cli_args += ["--slice-thickness", f"{case.slice_thickness_A:g}", "--dose", f"{case.dose:g}"]
    command = [sys.executable, str(Path(__file__).resolve()), "--simulate-worker", str(h5_path), str(npy_path)]
    log_path = work / f"simulate_{case.name}.log"
    outcome = run_limited([*command, *cli_args], log_path, work, env, budget.left())
    log = log_path.read_text(errors="replace")
    if outcome["rc"] != 0 or not npy_path.exists():
        npy_path.unlink(missing_ok=True)
        raise RuntimeError(f"simulating case {case.name} failed:\n" + "\n".join(log.splitlines()[-15:]))
    return {"npy": str(npy_path), "cached": False, "seconds": outcome["wall_s"], "log": log.strip()[-400:]}


# ----------------------------------------------------------------------------- report


def markdown(report: dict[str, Any]) -> str:
    """Header lines and one table row per (row, package) pair."""
    device = report.get("device", {})
    lines = [
        f"# phaser paper cases on {device.get('nvidia_smi') or device.get('jax_device', '?')}",
        "",
        f"Date {report['date']}; scale {report['scale']}; niter {report['niter']}; versions "
        + ", ".join(f"{k} {v}" for k, v in report.get("versions", {}).items())
        + "; the original's runs: "
        + ", ".join(f"{k} {v}" for k, v in report.get("phaserem_versions", {}).items()),
        "",
        "| row | positions | slices | pattern | grouping | ours s/iter | phaserem s/iter | phaserem / ours "
        "| ours compile s | phaserem compile s | ours peak MiB | phaserem peak MiB | FFT floor s/iter |",
        "|" + "---|" * 13,
    ]
    for entry in report["rows"]:
        runs = {run["package"]: run for run in entry["runs"]}
        ours, theirs = runs.get("phaser", {}), runs.get("phaserem", {})
        ratio = None
        if ours.get("s_per_iter") and theirs.get("s_per_iter"):
            ratio = theirs["s_per_iter"] / ours["s_per_iter"]
        cells = [
            entry["row"],
            str(entry["positions"]),
            str(entry["slices"]),
            str(entry["pattern"]),
            str(entry["grouping"]),
            _cell(ours, "s_per_iter"),
            _cell(theirs, "s_per_iter"),
            _num(ratio, 2),
            _compile_cell(ours),
            _compile_cell(theirs),
            _memory_cell(ours),
            _memory_cell(theirs),
            _num(entry.get("fft_floor_s"), 4),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    notes = [f"- {note}" for note in report["notes"]]
    unusual: dict[str, list[str]] = {}
    for entry in report["rows"]:
        for run in entry["runs"]:
            if run["status"] != "ok" or run["note"]:
                unusual.setdefault(f"{run['status']}: {_last_line(run['note'])}", []).append(
                    f"{entry['row']} {run['package']}"
                )
    notes += [f"- {', '.join(runs)}: {what}" for what, runs in unusual.items()]
    return "\n".join(lines + ([""] + notes if notes else [])) + "\n"


def _cell(run: dict[str, Any], key: str, digits: int = 3) -> str:
    if not run or run.get("status") == "skipped":
        return "skipped"
    if run.get("status") == "failed":
        return "failed"
    return _num(run.get(key), digits)


def _compile_cell(run: dict[str, Any]) -> str:
    """The first iteration's excess, and in brackets what later iterations added (recompiles)."""
    cell = _cell(run, "compile_s", 1)
    later = (run.get("warmup_s") or 0.0) - (run.get("compile_s") or 0.0)
    return cell + (f" (+{later:.1f})" if later > 0.5 else "")


def _memory_cell(run: dict[str, Any]) -> str:
    """The GPU peak; without a GPU (a CPU run), the process's host peak, marked so."""
    if run and run.get("status") in ("ok", "stopped") and run.get("gpu_peak_mib") is None:
        return _num(run.get("host_peak_mib"), 0) + " (host)"
    return _cell(run, "gpu_peak_mib", 0)


def _last_line(text: str) -> str:
    return text.splitlines()[-1] if text else ""


def _num(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def write_report(report: dict[str, Any], path: Path) -> None:
    """The JSON and the Markdown beside it (rewritten after every run, so a cut run keeps its rows)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=float))
    path.with_suffix(".md").write_text(markdown(report))


# ----------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of positions and pattern pixels")
    parser.add_argument("--niter", type=int, default=6, help="iterations per run (s/iter: median of 2..n)")
    parser.add_argument("--rows", nargs="+", default=[row.name for row in ROWS], help="rows to run, by name")
    parser.add_argument("--budget-s", type=float, default=540.0, help="wall-clock allowance of the whole run [s]")
    parser.add_argument("--run-limit-s", type=float, default=120.0, help="at most this long per run [s]")
    parser.add_argument("--min-run-s", type=float, default=25.0, help="skip a run when less is left [s]")
    parser.add_argument(
        "--phaserem",
        type=Path,
        default=None,
        metavar="EXE",
        help="the original's `phaser` executable (default: the wheelhouse's)",
    )
    parser.add_argument("--wheelhouse", type=Path, help="install these wheels first (made by --make-wheelhouse)")
    parser.add_argument("--site", type=Path, default=DEFAULT_SITE, help="install folder of our carried wheels")
    parser.add_argument("--phaserem-site", type=Path, default=DEFAULT_PHASEREM_SITE, help="the original's folder")
    parser.add_argument("--install-only", action="store_true", help="install from --wheelhouse, then stop")
    parser.add_argument("--make-wheelhouse", type=Path, metavar="DIR", help="download the wheels (online), then stop")
    parser.add_argument("--wheel-python", default=WHEEL_PYTHON, help="Python version of the GPU machine's wheels")
    parser.add_argument(
        "--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "phaser-paper-data", help="data cache"
    )
    parser.add_argument("--work-dir", type=Path, help="plans and logs (default: a new temporary folder)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON results (a .md table beside it)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.rows) - {row.name for row in ROWS})
    if unknown:
        parser.error(f"unknown rows {unknown}; known: {[row.name for row in ROWS]}")
    return args


def benchmark(args: argparse.Namespace, phaserem: Path | None, budget: Budget) -> dict[str, Any]:
    """Simulate, probe the device, run the rows in order while the budget lasts; the report."""
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="gpu_paper_cases_"))
    work.mkdir(parents=True, exist_ok=True)
    env = ours_env(args.site)
    cases = {name: scaled(case, args.scale) for name, case in PAPER_CASES.items()}
    report: dict[str, Any] = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "scale": args.scale,
        "niter": args.niter,
        "budget_s": args.budget_s,
        "cases": {name: asdict(case) for name, case in cases.items()},
        "machine": sg.machine(),
        "checkout": checkout_state(),
        "device": {"nvidia_smi": nvidia_smi()},
        "phaserem": str(phaserem) if phaserem else None,
        "work_dir": str(work),
        "env": _COMMON_ENV,
        "data": {},
        "rows": [],
        "notes": [],
    }
    if phaserem is None:
        report["notes"].append("the original package was not given (--phaserem, --wheelhouse): its runs are skipped")
    probe_path = work / "probe.json"
    pattern_px = cases["b"].pattern_px
    command = [sys.executable, str(Path(__file__).resolve()), "--probe-worker", str(probe_path), str(pattern_px)]
    outcome = run_limited([*command, str(GROUPING["gradient"])], work / "probe.log", work, env, min(120, budget.left()))
    probe = json.loads(probe_path.read_text()) if probe_path.exists() else {}
    if outcome["rc"] != 0:
        report["notes"].append("device probe failed: " + (work / "probe.log").read_text(errors="replace")[-400:])
    report["device"].update({k: v for k, v in probe.items() if k not in ("versions", "fft_s")})
    report["versions"] = probe.get("versions", {})
    report["fft_s"] = probe.get("fft_s")
    print(f"device: {report['device']}", flush=True)
    cupy_ok = "cupy_device" in probe
    if not cupy_ok:
        report["notes"].append(f"cupy rows skipped: {probe.get('cupy', 'cupy not probed')}")
    for row in (row for row in ROWS if row.name in args.rows):
        report["rows"].append(run_row(row, cases[row.case], args, phaserem, budget, work, env, report, cupy_ok))
        write_report(report, args.out)
    return report


def budget_note(left_s: float, needed_s: float) -> str:
    """Why a run was skipped for time."""
    return f"budget spent: {math.floor(max(left_s, 0))} s left for runs, {needed_s:g} s needed"


def run_row(
    row: Row,
    case: PaperCase,
    args: argparse.Namespace,
    phaserem: Path | None,
    budget: Budget,
    work: Path,
    env: dict[str, str],
    report: dict[str, Any],
    cupy_ok: bool,
) -> dict[str, Any]:
    """One row: its data, its plan, then ours and the original's run (each skipped when it cannot run)."""
    grouping = row.group_size
    entry: dict[str, Any] = {
        "row": row.name,
        "engine": row.engine,
        "backend": row.backend,
        "positions": case.n_positions,
        "slices": case.n_slices,
        "pattern": case.pattern_px,
        "grouping": grouping,
        "runs": [],
    }
    if report.get("fft_s"):
        entry["fft_floor_s"] = case.n_positions * sg.ffts_per_position(case.n_slices) * report["fft_s"]
    skip = None
    if row.backend == "cupy" and not cupy_ok:
        skip = "cupy is not usable here"
    elif budget.left() < args.min_run_s:
        skip = budget_note(budget.left(), args.min_run_s)
    elif case.name not in report["data"]:
        try:
            report["data"][case.name] = simulate(case, args.data_dir, env, budget, work)
            print(f"data {case.name}: {report['data'][case.name]}", flush=True)
        except RuntimeError as exc:
            report["data"][case.name] = {"error": str(exc)}
    data = report["data"].get(case.name, {})
    skip = skip or data.get("error")
    plan = plan_dict(case, row, Path(data.get("npy", "")), args.niter, grouping)
    plan_path = work / f"plan_{row.name}.yaml"
    plan_path.write_text(yaml.safe_dump(plan, sort_keys=False))
    runners = [("phaser", lambda limit: run_ours(row, plan_path, args.niter, work, env, limit))]
    if phaserem is not None:
        runners.append(("phaserem", lambda limit: run_phaserem(row, phaserem, plan_path, args.niter, work, limit)))
    for package, runner in runners:
        left = budget.left()
        if skip or left < args.min_run_s:
            reason = skip or budget_note(left, args.min_run_s)
            result = RunResult(package, row.name, "skipped", note=reason)
        else:
            result = runner(min(args.run_limit_s, left))
        entry["runs"].append(result.summary())
        if package == "phaserem" and "versions" in result.process:
            report.setdefault("phaserem_versions", result.process["versions"])
        print(
            f"{row.name:16s} {package:8s} {result.status:7s} s/iter {_num(result.s_per_iter)} "
            f"compile {_num(result.compile_s, 1)} warm-up {_num(result.warmup_s, 1)} "
            f"GPU MiB {_num(result.gpu_peak_mib, 0)} wall {_num(result.wall_s, 1)} {_last_line(result.note)}",
            flush=True,
        )
    return entry


def internal_mode(argv: list[str]) -> bool:
    """The child-process entries (``--ours-worker`` etc.); True when ``argv`` named one and it ran."""
    if not argv:
        return False
    mode, rest = argv[0], argv[1:]
    if mode == "--ours-worker":
        ours_worker(Path(rest[0]), Path(rest[1]))
    elif mode == "--phaserem-wrapper":
        phaserem_wrapper(Path(rest[0]), Path(rest[1]), rest[2:])
    elif mode == "--simulate-worker":
        simulate_worker(Path(rest[0]), Path(rest[1]), rest[2:])
    elif mode == "--probe-worker":
        probe_worker(Path(rest[0]), int(rest[1]), int(rest[2]))
    else:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    """Make or install the wheelhouse, or run the benchmark and write the report."""
    argv = sys.argv[1:] if argv is None else argv
    if internal_mode(argv):
        return 0
    args = parse_args(argv)
    _exit_on_sigterm()  # a stopped benchmark stops its running child too (run_limited's finally)
    budget = Budget(args.budget_s)
    if args.make_wheelhouse:
        print("\n".join(make_wheelhouse(args.make_wheelhouse, args.wheel_python)))
        return 0
    phaserem = args.phaserem
    if args.wheelhouse:
        installed = install_wheelhouse(args.wheelhouse, args.site, args.phaserem_site)
        phaserem = phaserem or installed
        print(f"installed {args.wheelhouse} into {args.site} and {args.phaserem_site}", flush=True)
    if args.install_only:
        return 0
    report = benchmark(args, phaserem, budget)
    report["wall_s"] = time.monotonic() - budget.start
    write_report(report, args.out)
    print(args.out.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
