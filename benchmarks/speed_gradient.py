"""Speed of the gradient engine: seconds per iteration, compile time and peak memory.

Simulates (once, cached) a 1-slice and a 4-slice dataset of 32x32 positions with 64x64 patterns
(200 kV, 20 mrad, 1.5 mrad/px, 0.5 A step, 1e5 electrons per pattern), then runs the shared
gradient plans (grouping 64, Adam lr 0.01 on object and probe, Poisson eps 0.1, float32, jax)

- with this package, through :func:`phaser.run.run_plan` and an observer that timestamps every
  iteration (in a child process, so that each run's peak memory is its own);
- with the original package (phaserem), as a subprocess on the same ``.npy`` data and the same plan,
  its per-iteration times read from its log lines (``Finished iter i/n [mm:ss.sss]``);
- against an FFT floor measured here: a jitted loop of batch-64 complex64 64x64 ``fft2``.

Per run: ``s/iter`` is the median duration of iterations 2..n, ``compile`` the first iteration minus
that median, ``peak MiB`` the child's ``ru_maxrss``. Results are printed and written as JSON and
Markdown to ``benchmarks/results/``. Run ``python benchmarks/speed_gradient.py --help``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
SHARED_PLANS = Path("/work/shared/phaserem-plans")
DEFAULT_PHASEREM = Path("/tmp/phaserem/bin/phaser")
RESULTS_DIR = REPO / "benchmarks" / "results"
PATTERN_PX = 64
GROUP_SIZE = 64
REFERENCE_FFT_S = 11.6e-6  # REFERENCE.md: one batch-64 complex64 64x64 FFT inside a jit, one core
_PHASEREM_ITER = re.compile(r"Finished iter\s+(\d+)/(\d+)\s+\[(\d+):(\d+(?:\.\d+)?)\]")


@dataclass(frozen=True)
class Case:
    """One benchmark dataset and the shared plan that reconstructs it."""

    name: str
    n_slices: int
    plan_file: str
    default_niter: int

    @property
    def data_stem(self) -> str:
        """File stem of the simulated data (the shared plans name ``${DATA}/sim_<n>slice.npy``)."""
        return f"sim_{self.n_slices}slice"


CASES = {
    "1slice": Case("1slice", 1, "grad_1slice_jax.yaml", 12),
    "4slice": Case("4slice", 4, "grad_4slice_jax.yaml", 8),
}


@dataclass
class RunTiming:
    """Per-iteration durations [s] of one run and what they summarise to."""

    package: str
    case: str
    niter: int
    durations_s: list[float]
    peak_mib: float
    wall_s: float
    cpu_s: float
    method: str
    final_error: float | None = None
    load_avg_before: float = 0.0
    repeat: int = 0

    @property
    def s_per_iter(self) -> float:
        """Median duration of iterations 2..n (the first carries the compile) [s]."""
        rest = self.durations_s[1:] or self.durations_s
        return float(statistics.median(rest))

    @property
    def compile_s(self) -> float:
        """First iteration minus the steady-state median [s]."""
        return float(self.durations_s[0] - self.s_per_iter)

    def summary(self) -> dict[str, Any]:
        """JSON-ready record including the derived numbers."""
        record = asdict(self)
        record.update(s_per_iter=self.s_per_iter, compile_s=self.compile_s)
        return record


# ----------------------------------------------------------------------------- data and plans


def simulate_case(case: Case, data_dir: Path) -> Path:
    """The case's ``.npy`` patterns, float32 ``[scan_y, scan_x, k_y, k_x]`` centred; made once.

    The HDF5 file from ``phaser simulate`` is kept beside it (it holds the truth).
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    h5_path, npy_path = data_dir / f"{case.data_stem}.h5", data_dir / f"{case.data_stem}.npy"
    if not h5_path.exists():
        command = [
            sys.executable,
            "-m",
            "phaser",
            "simulate",
            "--out",
            str(h5_path),
            "--kv",
            "200",
            "--conv-angle",
            "20",
            "--defocus",
            "100",
            "--pattern-size",
            str(PATTERN_PX),
            "--diff-step",
            "1.5",
            "--scan",
            "32",
            "32",
            "--step",
            "0.5",
            "--slices",
            str(case.n_slices),
            "--slice-thickness",
            "10",
            "--dose",
            "1e5",
        ]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    if not npy_path.exists() or npy_path.stat().st_mtime < h5_path.stat().st_mtime:
        import h5py

        with h5py.File(h5_path, "r") as f:
            patterns = np.asarray(f["patterns"][()], dtype=np.float32)
        np.save(npy_path, patterns)
    return npy_path


def write_plan(
    case: Case,
    data_dir: Path,
    work_dir: Path,
    niter: int,
    tag: str = "",
    plans_dir: Path = SHARED_PLANS,
) -> Path:
    """The shared plan with ``${DATA}`` filled in and ``niter`` set, written under ``work_dir``."""
    text = (plans_dir / case.plan_file).read_text().replace("${DATA}", str(data_dir))
    plan = yaml.safe_load(text)
    plan["engines"][0]["niter"] = niter
    path = work_dir / f"{Path(case.plan_file).stem}{tag}_n{niter}.yaml"
    path.write_text(yaml.safe_dump(plan, sort_keys=False))
    return path


# ----------------------------------------------------------------------------- child processes


def run_child(command: list[str], log_path: Path, cwd: Path) -> tuple[float, float, float]:
    """Run ``command`` with stdout+stderr to ``log_path``.

    Returns (wall [s], peak RSS [MiB], CPU time user + system [s]) of the whole child process.

    ``os.wait4`` gives this child's own ``ru_maxrss`` (KiB on Linux), unlike
    ``getrusage(RUSAGE_CHILDREN)``, which keeps the maximum over all children so far.
    """
    start = time.perf_counter()
    with log_path.open("w") as log:
        child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=cwd)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if child.returncode != 0:
        tail = "\n".join(log_path.read_text().splitlines()[-20:])
        raise RuntimeError(f"{' '.join(command)} failed ({child.returncode}); log {log_path}:\n{tail}")
    return wall, usage.ru_maxrss / 1024.0, usage.ru_utime + usage.ru_stime


def run_ours(case: Case, plan_path: Path, work_dir: Path, niter: int, repeat: int) -> RunTiming:
    """Run our engine on ``plan_path`` in a child process (``--worker``) and read its timings."""
    timings_path = work_dir / f"ours_{case.name}_r{repeat}_timings.json"
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        str(plan_path),
        str(timings_path),
    ]
    load = os.getloadavg()[0]
    wall, peak, cpu = run_child(command, work_dir / f"ours_{case.name}_r{repeat}.log", work_dir)
    record = json.loads(timings_path.read_text())
    ends = [record["engine_start_s"], *record["iteration_end_s"]]
    return RunTiming(
        package="phaser",
        case=case.name,
        niter=niter,
        durations_s=[float(d) for d in np.diff(ends)],
        peak_mib=peak,
        wall_s=wall,
        cpu_s=cpu,
        final_error=record["errors"][-1],
        load_avg_before=load,
        method="observer timestamps (perf_counter) after each iteration; engine start to iter 1",
        repeat=repeat,
    )


def parse_phaserem_log(text: str) -> tuple[list[float], float | None]:
    """Per-iteration durations [s] and the last error from phaserem's ``Finished iter`` lines."""
    durations = [int(m[2]) * 60 + float(m[3]) for m in _PHASEREM_ITER.findall(text)]
    errors = re.findall(r"Finished iter.*Error: ([0-9.eE+-]+)", text)
    return durations, (float(errors[-1]) if errors else None)


def run_phaserem(
    binary: Path,
    case: Case,
    data_dir: Path,
    work_dir: Path,
    niter: int,
    repeat: int,
    plans_dir: Path = SHARED_PLANS,
) -> RunTiming:
    """Run phaserem's CLI on the shared plan and take its per-iteration times from the log.

    If the log carries no timings, the whole run is timed for ``niter`` and for 1 iteration and
    the difference divided by ``niter - 1`` (compile time then unknown: reported as 0).
    """
    plan_path = write_plan(case, data_dir, work_dir, niter, "_phaserem", plans_dir)
    load = os.getloadavg()[0]
    log_path = work_dir / f"phaserem_{case.name}_r{repeat}.log"
    wall, peak, cpu = run_child([str(binary), "run", str(plan_path)], log_path, work_dir)
    durations, error = parse_phaserem_log(log_path.read_text())
    method = "its log lines 'Finished iter i/n [mm:ss.sss]' (time.monotonic between iterations)"
    if len(durations) != niter:
        one_path = write_plan(case, data_dir, work_dir, 1, "_phaserem", plans_dir)
        wall_one, _, _ = run_child([str(binary), "run", str(one_path)], log_path.with_suffix(".n1.log"), work_dir)
        per_iter = (wall - wall_one) / max(niter - 1, 1)
        durations = [per_iter] * niter
        method = "whole-run wall time: (t(niter) - t(1)) / (niter - 1); compile not separable"
    return RunTiming(
        package="phaserem",
        case=case.name,
        niter=niter,
        durations_s=durations,
        peak_mib=peak,
        wall_s=wall,
        cpu_s=cpu,
        final_error=error,
        load_avg_before=load,
        method=method,
        repeat=repeat,
    )


# ----------------------------------------------------------------------------- worker


def worker(plan_path: Path, out_path: Path) -> None:
    """Child-process entry: run the plan with a timing observer; write the timestamps as JSON."""
    import resource

    from iteration_timer import make_iteration_timer

    from phaser.plan import load_plans
    from phaser.run import run_plan

    (plan,) = load_plans(plan_path)
    timer = make_iteration_timer()
    state = run_plan(plan, [timer])
    record = {
        "engine_start_s": timer.engine_start_s,
        "iteration_end_s": timer.iteration_end_s,
        "errors": [float(e) for e in state.error_history],
        "maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    }
    out_path.write_text(json.dumps(record))


# ----------------------------------------------------------------------------- FFT floor


def measure_fft_seconds(batch: int = GROUP_SIZE, size: int = PATTERN_PX, loops: int = 200, repeats: int = 5) -> float:
    """Seconds per complex64 ``size``x``size`` FFT: best of ``repeats`` jitted loops of fft2."""
    import jax
    import jax.numpy as jnp

    @jax.jit
    def fft_loop(wave: Any) -> Any:
        # orthonormal, so repeated transforms neither overflow nor underflow
        return jax.lax.fori_loop(0, loops, lambda _, w: jnp.fft.fft2(w, norm="ortho"), wave)

    rng = np.random.default_rng(0)
    shape = (batch, size, size)
    wave = jnp.asarray(rng.standard_normal(shape) + 1j * rng.standard_normal(shape), jnp.complex64)
    fft_loop(wave).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fft_loop(wave).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return best / (loops * batch)


def ffts_per_position(n_slices: int, n_modes: int = 1) -> int:
    """FFTs per position per iteration of our engine's forward + backward pass.

    Forward per mode: 1 inverse FFT for the sub-pixel shift, 2 per propagation gap (``S - 1`` of
    them) and 1 far-field FFT, i.e. ``2 S``; the backward pass transposes each one: ``4 S`` in all.
    (The probe's own FFT is once per group, not per position, and is left out.)
    """
    return 4 * n_slices * n_modes


def floor_record(case: Case, n_positions: int, fft_s: float) -> dict[str, float]:
    """The FFT floor [s/iter] from the measured and from the REFERENCE.md FFT times."""
    n_ffts = n_positions * ffts_per_position(case.n_slices)
    return {
        "ffts_per_iter": n_ffts,
        "floor_s": n_ffts * fft_s,
        "reference_floor_s": n_ffts * REFERENCE_FFT_S,
    }


# ----------------------------------------------------------------------------- reporting


def versions(phaserem_bin: Path | None) -> dict[str, str]:
    """Versions of the pieces that matter for the timings."""
    import jax
    import optax

    import phaser

    out = {
        "python": platform.python_version(),
        "phaser": phaser.__version__,
        "jax": jax.__version__,
        "jaxlib": _jaxlib_version(),
        "optax": optax.__version__,
        "numpy": np.__version__,
    }
    if phaserem_bin is not None:
        pip = phaserem_bin.parent / "pip"
        shown = subprocess.run([str(pip), "show", "phaserem"], capture_output=True, text=True)
        match = re.search(r"^Version: (.+)$", shown.stdout, re.M)
        out["phaserem"] = match[1] if match else "unknown"
    return out


def _jaxlib_version() -> str:
    import jaxlib

    return getattr(jaxlib, "__version__", "unknown")


def machine() -> dict[str, Any]:
    """CPU count, model and memory of this machine."""
    model = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        found = re.search(r"model name\s*:\s*(.+)", cpuinfo.read_text())
        model = found[1].strip() if found else ""
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(mem_gib, 1),
        "platform": platform.platform(),
    }


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The results as a Markdown table, one row per case."""
    head = (
        "| case | niter | ours s/iter | phaserem s/iter | phaserem / ours | ours compile s | "
        "phaserem compile s | ours peak MiB | phaserem peak MiB | FFT floor s/iter | "
        "ours / floor |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for row in rows:
        ours, theirs, floor = row["ours"], row.get("phaserem"), row["floor"]
        lines.append(
            "| "
            + " | ".join(
                [
                    row["case"],
                    str(ours["niter"]),
                    f"{ours['s_per_iter']:.3f}",
                    _fmt(theirs and theirs["s_per_iter"]),
                    _fmt(row.get("ratio_phaserem_over_ours"), 2),
                    f"{ours['compile_s']:.2f}",
                    _fmt(theirs and theirs["compile_s"], 2),
                    f"{ours['peak_mib']:.0f}",
                    _fmt(theirs and theirs["peak_mib"], 0),
                    f"{floor['floor_s']:.3f}",
                    f"{row['ratio_ours_over_floor']:.1f}",
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


# ----------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--cases", nargs="+", choices=sorted(CASES), default=sorted(CASES), help="datasets to run")
    parser.add_argument(
        "--niter-1slice",
        type=int,
        default=CASES["1slice"].default_niter,
        help="iterations of the 1-slice runs",
    )
    parser.add_argument(
        "--niter-4slice",
        type=int,
        default=CASES["4slice"].default_niter,
        help="iterations of the 4-slice runs",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "phaser-bench-data",
        help="cache folder of the simulated datasets",
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        help="folder for plans, logs and timings (None: a new temporary one)",
    )
    parser.add_argument(
        "--compare-phaserem",
        type=Path,
        metavar="PATH_TO_BIN",
        default=DEFAULT_PHASEREM if DEFAULT_PHASEREM.exists() else None,
        help="phaserem's `phaser` executable to run the same plans with",
    )
    parser.add_argument("--no-compare", action="store_true", help="skip the phaserem runs")
    parser.add_argument(
        "--plans-dir",
        type=Path,
        default=SHARED_PLANS,
        help="folder of grad_1slice_jax.yaml / grad_4slice_jax.yaml (${DATA} is substituted)",
    )
    parser.add_argument("--repeats", type=int, default=1, help="runs per package and case (the median is reported)")
    parser.add_argument(
        "--results",
        type=Path,
        default=RESULTS_DIR / "speed_gradient.json",
        help="JSON results file (a .md table is written beside it)",
    )
    parser.add_argument("--worker", nargs=2, type=Path, metavar=("PLAN", "OUT_JSON"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def median_run(runs: list[RunTiming]) -> RunTiming:
    """The run with the (lower) median seconds per iteration."""
    ordered = sorted(runs, key=lambda run: run.s_per_iter)
    return ordered[(len(ordered) - 1) // 2]


def run_summary(runs: list[RunTiming]) -> dict[str, Any]:
    """The median run's record plus every repeat's s/iter and compile time."""
    record = median_run(runs).summary()
    record["repeats_s_per_iter"] = [run.s_per_iter for run in runs]
    record["repeats_compile_s"] = [run.compile_s for run in runs]
    return record


def report_run(run: RunTiming) -> None:
    """One progress line per run."""
    print(
        f"  {run.package:8s} {run.case} #{run.repeat}: {run.s_per_iter:.3f} s/iter, "
        f"compile {run.compile_s:.2f} s, peak {run.peak_mib:.0f} MiB, "
        f"cores busy {run.cpu_s / run.wall_s:.2f}, load before {run.load_avg_before:.2f}",
        flush=True,
    )


def benchmark_case(
    case: Case, args: argparse.Namespace, work_dir: Path, fft_s: float, phaserem_bin: Path | None
) -> dict[str, Any]:
    """Run one case with both packages (alternating, ``args.repeats`` times); its results row."""
    niter = args.niter_1slice if case.n_slices == 1 else args.niter_4slice
    npy_path = simulate_case(case, args.data_dir)
    scan_y, scan_x = np.load(npy_path, mmap_mode="r").shape[:2]
    n_positions = int(scan_y * scan_x)
    plan_path = write_plan(case, args.data_dir, work_dir, niter, plans_dir=args.plans_dir)
    ours: list[RunTiming] = []
    theirs: list[RunTiming] = []
    for repeat in range(args.repeats):
        ours.append(run_ours(case, plan_path, work_dir, niter, repeat))
        report_run(ours[-1])
        if phaserem_bin is not None:
            theirs.append(run_phaserem(phaserem_bin, case, args.data_dir, work_dir, niter, repeat, args.plans_dir))
            report_run(theirs[-1])
    row: dict[str, Any] = {
        "case": case.name,
        "n_positions": n_positions,
        "ours": run_summary(ours),
        "floor": floor_record(case, n_positions, fft_s),
    }
    if theirs:
        row["phaserem"] = run_summary(theirs)
        row["ratio_phaserem_over_ours"] = median_run(theirs).s_per_iter / median_run(ours).s_per_iter
    row["ratio_ours_over_floor"] = median_run(ours).s_per_iter / row["floor"]["floor_s"]
    return row


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print and save the table."""
    args = parse_args(argv)
    if args.worker:
        worker(*args.worker)
        return 0
    phaserem_bin = None if args.no_compare else args.compare_phaserem
    work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix="speed_gradient_"))
    work_dir.mkdir(parents=True, exist_ok=True)
    args.data_dir = args.data_dir.resolve()
    print(f"data in {args.data_dir}, plans and logs in {work_dir}", flush=True)
    fft_s = measure_fft_seconds()
    print(f"FFT floor: {fft_s * 1e6:.2f} us per complex64 64x64 FFT (jit, batch 64)", flush=True)
    rows = [benchmark_case(CASES[name], args, work_dir, fft_s, phaserem_bin) for name in sorted(args.cases)]
    fft_after = measure_fft_seconds()
    table = markdown_table(rows)
    print(table)
    report = {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "machine": machine(),
        "versions": versions(phaserem_bin),
        "fft_s_before": fft_s,
        "fft_s_after": fft_after,
        "fft_method": "best of 5 jitted fori_loops of 200 batch-64 complex64 64x64 fft2 (ortho)",
        "ffts_per_position": {name: ffts_per_position(CASES[name].n_slices) for name in args.cases},
        "work_dir": str(work_dir),
        "rows": rows,
    }
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(report, indent=2, default=float))
    args.results.with_suffix(".md").write_text(table + "\n")
    print(f"FFT after the runs: {fft_after * 1e6:.2f} us; results in {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
