"""Speed of the conventional engines (ePIE, LSQML): seconds per iteration, compile time, peak memory.

Same data as ``speed_gradient.py`` (32x32 positions, 64x64 patterns, 200 kV, 20 mrad, 1e5 e per
pattern; 1 and 4 slices, simulated once and cached) and the shared plans of the original package:

- ``epie_1slice_numpy.yaml``: ePIE, grouping 16, amplitude noise model (eps 0.1),
  beta_object = beta_probe = 0.5;
- ``lsqml_4slice_jax.yaml``: LSQML, grouping 64, Anscombe noise model (eps 0.1), beta 1,
  gamma 1e-4, illum_reg 0.01 on object and probe;

each run on numpy and on jax, and (the "extra" rows) ePIE on the 4-slice data and LSQML on the
1-slice data with otherwise the same settings, LSQML also at grouping 16 (the grouping of the ePIE
plan). Every row runs the *same* plan file with this package
(``run_plan`` in a child process, an observer timestamping every iteration; the conventional
engine reads its error back every iteration, so the timestamps are synchronous) and with the
original package (``phaser run plan.yaml``, its ``Finished iter`` log lines), alternating,
``--repeats`` times; with ``--baseline-tree`` also with a second source tree of this package (e.g.
``git archive HEAD phaser | tar -x -C /tmp/before``), the three alternating within every repeat.
``--ours-tree`` points "ours" at a source tree other than the installed one. Both trees are put
first on ``PYTHONPATH`` of their child processes. Ratios are reported per repeat (min-max spread).
The helpers (data, plans, child processes, log parsing, summaries) are those of ``speed_gradient.py``.

Per run: ``s/iter`` is the median of iterations 2..n, ``compile`` the first iteration minus that
median, ``peak MiB`` the child's ``ru_maxrss``; for this package also ``CPU s/iter``, the median
process CPU time of iterations 2..n, which a loaded machine does not inflate as it does the wall
time (the original package's log gives only wall times). The reported run is the one with the median s/iter.
A floor column multiplies the FFTs per iteration (see :func:`ffts_per_position`) by the time of one
64x64 complex64 FFT at the group's batch size on that backend (jitted jax loop, or ``np.fft.fft2``).
Run ``python benchmarks/speed_conventional.py --help``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import speed_gradient as sg  # noqa: E402  (the shared helpers of the gradient benchmark)

RESULTS_DIR = sg.RESULTS_DIR


@dataclass(frozen=True)
class Row:
    """One table row: an engine on one dataset and one backend, in both packages."""

    solver: str  # "epie" or "lsqml"
    n_slices: int
    backend: str  # "numpy" or "jax"
    extra: bool = False  # not one of the shared plans' own engine/slice combinations
    group_size: int | None = None  # None: the shared plan's grouping

    @property
    def name(self) -> str:
        suffix = "" if self.group_size is None else f"_g{self.group_size}"
        return f"{self.solver}_{self.n_slices}slice_{self.backend}{suffix}"

    @property
    def source_plan(self) -> str:
        """The shared plan this row derives from."""
        return "epie_1slice_numpy.yaml" if self.solver == "epie" else "lsqml_4slice_jax.yaml"

    @property
    def grouping(self) -> int:
        if self.group_size is not None:
            return self.group_size
        return 16 if self.solver == "epie" else 64


ROWS = [
    Row("epie", 1, "numpy"),
    Row("epie", 1, "jax"),
    Row("lsqml", 4, "jax"),
    Row("lsqml", 4, "numpy"),
    Row("epie", 4, "numpy", extra=True),
    Row("epie", 4, "jax", extra=True),
    Row("lsqml", 1, "jax", extra=True),
    Row("lsqml", 1, "numpy", extra=True),
    Row("lsqml", 1, "jax", extra=True, group_size=16),
]
ROWS_BY_NAME = {row.name: row for row in ROWS}


def template_plan(row: Row, plans_dir: Path, out_dir: Path) -> Path:
    """The shared plan turned into this row's (backend, data, slices); ``${DATA}`` kept.

    Only ``backend``, ``raw_data.path``, ``slices``, ``name`` and (rows with a ``group_size``) the
    grouping change; engine, noise model and solver parameters stay those of the shared plan.
    """
    plan = yaml.safe_load((plans_dir / row.source_plan).read_text())
    plan["name"] = row.name
    plan["backend"] = row.backend
    plan["raw_data"]["path"] = f"${{DATA}}/sim_{row.n_slices}slice.npy"
    plan["engines"][0]["grouping"] = row.grouping
    if row.n_slices == 1:
        plan.pop("slices", None)
    else:
        plan["slices"] = {"n": row.n_slices, "total_thickness": 10.0 * row.n_slices}
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{row.name}.yaml"
    path.write_text(yaml.safe_dump(plan, sort_keys=False))
    return path


# ----------------------------------------------------------------------------- FFT floor


def ffts_per_position(solver: str, n_slices: int) -> int:
    """FFTs per position per iteration of our conventional engine (one probe mode).

    Forward: 1 inverse FFT for the sub-pixel shift, 2 per propagation gap and the far field: 2S.
    Update: the exit-wave correction back to real space (1), 2 per gap going back (2(S-1)) and the
    probe's unshift (1 FFT per position; its inverse is once per group): 4S for ePIE. LSQML also
    shifts the probe direction to every position (1 more inverse FFT): 4S + 1. Per-group FFTs are
    left out.
    """
    return 4 * n_slices + (1 if solver == "lsqml" else 0)


def measure_numpy_fft_seconds(
    batch: int, size: int = sg.PATTERN_PX, loops: int = 20, repeats: int = 5, norm: str | None = "ortho"
) -> float:
    """Seconds per complex64 ``size``x``size`` FFT with ``np.fft.fft2`` on ``batch`` at once (best of ``repeats``).

    ``norm`` matters with numpy 2.4 on this machine: the unscaled transforms (``fft2`` with the
    default norm, ``ifft2(norm="forward")``) took about 6x as long as the scaled ones (``"ortho"``,
    ``ifft2`` with the default norm). The floor uses the fast (scaled) variant.
    """
    rng = np.random.default_rng(0)
    shape = (batch, size, size)
    wave = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)
    np.fft.fft2(wave, norm=norm)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(loops):
            np.fft.fft2(wave, norm=norm)
        best = min(best, time.perf_counter() - start)
    return best / (loops * batch)


def measure_ffts() -> dict[str, float]:
    """Seconds per FFT keyed ``{backend}_b{batch}`` for the batch sizes of the rows."""
    out = {}
    for batch in sorted({row.grouping for row in ROWS}):
        out[f"jax_b{batch}"] = sg.measure_fft_seconds(batch=batch)
        out[f"numpy_b{batch}"] = measure_numpy_fft_seconds(batch)
        out[f"numpy_unscaled_b{batch}"] = measure_numpy_fft_seconds(batch, norm=None)
    return out


def measure_ffts_in_child() -> dict[str, float]:
    """:func:`measure_ffts` in a child process, so that this process never imports jax.

    A child's ``ru_maxrss`` (``os.wait4``) is at least the parent's resident size when it was
    started (Python starts children with vfork + exec, and Linux carries the old address space's
    high-water mark across exec), so the parent must stay small for the children's peaks to be
    their own: here about 30 MiB (numpy + yaml), recorded as ``parent_maxrss_mib``.
    """
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--fft-worker"], check=True, capture_output=True, text=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- benchmark


@contextlib.contextmanager
def _pythonpath(tree: Path | None) -> Iterator[None]:
    """``PYTHONPATH`` starting with source tree ``tree`` meanwhile (unchanged for None)."""
    if tree is None:
        yield
        return
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(tree), *([saved] if saved else [])])
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("PYTHONPATH")
        else:
            os.environ["PYTHONPATH"] = saved


@dataclass
class TreeTiming(sg.RunTiming):
    """A run of this package: :class:`speed_gradient.RunTiming` plus CPU seconds and where it came from."""

    cpu_s_per_iter: float = 0.0  # median process CPU time of iterations 2..n [s]
    phaser_path: str = ""


def worker(plan_path: Path, out_path: Path) -> None:
    """Child-process entry: run the plan, timestamping every iteration in wall and process CPU time.

    The CPU seconds per iteration are this process's own work: unlike the wall time they do not grow
    when other processes share the cores.
    """
    from iteration_timer import make_iteration_timer

    from phaser.plan import load_plans
    from phaser.run import run_plan

    (plan,) = load_plans(plan_path)
    timer = make_iteration_timer()
    state = run_plan(plan, [timer])
    record = {
        "engine_start_s": timer.engine_start_s,
        "iteration_end_s": timer.iteration_end_s,
        "engine_start_cpu_s": timer.engine_start_cpu_s,
        "iteration_end_cpu_s": timer.iteration_end_cpu_s,
        "errors": [float(e) for e in state.error_history],
        "phaser_path": str(Path(sys.modules["phaser"].__file__).parent),
    }
    out_path.write_text(json.dumps(record))


def _run_tree(
    tree: Path | None, label: str, case: Any, plan_path: Path, work_dir: Path, niter: int, repeat: int
) -> TreeTiming:
    """Our package from source tree ``tree`` (None: the installed one) on ``plan_path`` in a child
    process; its timings labelled ``label``, with the median CPU seconds of iterations 2..n."""
    stem = f"ours_{case.name}_{label}_r{repeat}"
    timings_path = work_dir / f"{stem}_timings.json"
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", str(plan_path), str(timings_path)]
    load = os.getloadavg()[0]
    with _pythonpath(tree):
        wall, peak, cpu = sg.run_child(command, work_dir / f"{stem}.log", work_dir)
    record = json.loads(timings_path.read_text())
    ends = [record["engine_start_s"], *record["iteration_end_s"]]
    cpu_ends = [record["engine_start_cpu_s"], *record["iteration_end_cpu_s"]]
    return TreeTiming(
        package=label,
        case=case.name,
        niter=niter,
        durations_s=[float(d) for d in np.diff(ends)],
        peak_mib=peak,
        wall_s=wall,
        cpu_s=cpu,
        final_error=record["errors"][-1],
        load_avg_before=load,
        method="observer timestamps (perf_counter, process_time) after each iteration; engine start to iter 1",
        repeat=repeat,
        cpu_s_per_iter=float(np.median(np.diff(cpu_ends)[1:])),
        phaser_path=record["phaser_path"],
    )


def _summary(runs: list[TreeTiming]) -> dict[str, Any]:
    """``sg.run_summary`` plus each repeat's CPU seconds per iteration (and their median)."""
    record = sg.run_summary(runs)  # type: ignore[arg-type]
    record["repeats_cpu_s_per_iter"] = [run.cpu_s_per_iter for run in runs]
    record["cpu_s_per_iter"] = float(np.median(record["repeats_cpu_s_per_iter"]))
    return record


def _ratio_spread(numerators: list[sg.RunTiming], denominators: list[sg.RunTiming]) -> dict[str, float]:
    """Per-repeat ratios of s/iter (runs of one repeat ran back to back): median, min, max."""
    ratios = [a.s_per_iter / b.s_per_iter for a, b in zip(numerators, denominators, strict=True)]
    return {"median": float(np.median(ratios)), "min": min(ratios), "max": max(ratios)}


@contextlib.contextmanager
def _without_pythonpath() -> Iterator[None]:
    """``PYTHONPATH`` unset meanwhile: the original package is also called ``phaser``, so a
    ``PYTHONPATH`` that points this package at a checkout would shadow it in phaserem's venv."""
    saved = os.environ.pop("PYTHONPATH", None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ["PYTHONPATH"] = saved


def benchmark_row(
    row: Row,
    args: argparse.Namespace,
    work_dir: Path,
    plans_dir: Path,
    phaserem_bin: Path | None,
    ffts: dict[str, float],
) -> dict[str, Any]:
    """Run one row with both packages (alternating, ``args.repeats`` times); its results record."""
    niter = args.niter_1slice if row.n_slices == 1 else args.niter_4slice
    case = sg.Case(row.name, row.n_slices, f"{row.name}.yaml", niter)
    npy_path = sg.simulate_case(case, args.data_dir)
    n_positions = int(np.prod(np.load(npy_path, mmap_mode="r").shape[:2]))
    plan_path = sg.write_plan(case, args.data_dir, work_dir, niter, plans_dir=plans_dir)
    ours: list[TreeTiming] = []
    theirs: list[sg.RunTiming] = []
    before: list[TreeTiming] = []
    for repeat in range(args.repeats):
        ours.append(_run_tree(args.ours_tree, "phaser", case, plan_path, work_dir, niter, repeat))
        sg.report_run(ours[-1])
        if args.baseline_tree is not None:
            before.append(_run_tree(args.baseline_tree, "before", case, plan_path, work_dir, niter, repeat))
            sg.report_run(before[-1])
        if phaserem_bin is not None:
            with _without_pythonpath():
                theirs.append(sg.run_phaserem(phaserem_bin, case, args.data_dir, work_dir, niter, repeat, plans_dir))
            sg.report_run(theirs[-1])
    n_ffts = n_positions * ffts_per_position(row.solver, row.n_slices)
    fft_s = ffts[f"{row.backend}_b{row.grouping}"]
    record: dict[str, Any] = {
        "row": row.name,
        "solver": row.solver,
        "n_slices": row.n_slices,
        "backend": row.backend,
        "grouping": row.grouping,
        "extra": row.extra,
        "n_positions": n_positions,
        "plan": str(plan_path),
        "ours": _summary(ours),
        "floor": {"ffts_per_iter": n_ffts, "fft_s": fft_s, "floor_s": n_ffts * fft_s},
    }
    record["ratio_ours_over_floor"] = sg.median_run(ours).s_per_iter / record["floor"]["floor_s"]
    if theirs:
        record["phaserem"] = sg.run_summary(theirs)
        record["ratio_phaserem_over_ours"] = sg.median_run(theirs).s_per_iter / sg.median_run(ours).s_per_iter
        record["ratio_phaserem_over_ours_per_repeat"] = _ratio_spread(theirs, ours)
    if before:
        record["before"] = _summary(before)
        record["ratio_before_over_ours_per_repeat"] = _ratio_spread(before, ours)
        if theirs:
            record["ratio_phaserem_over_before_per_repeat"] = _ratio_spread(theirs, before)
    return record


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The results as a Markdown table, one row per engine / slices / backend."""
    head = (
        "| engine | slices | grouping | backend | niter | ours s/iter | before s/iter | phaserem s/iter | "
        "ours CPU s/iter | before CPU s/iter | "
        "phaserem / ours (per repeat: median, min-max) | phaserem / before | before / ours | ours compile s | "
        "phaserem compile s | ours peak MiB | phaserem peak MiB | ours cores busy | phaserem cores busy | "
        "FFT floor s/iter | ours / floor |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for row in rows:
        ours, theirs = row["ours"], row.get("phaserem")
        engine = ("ePIE" if row["solver"] == "epie" else "LSQML") + (" (extra)" if row["extra"] else "")
        before = row.get("before")
        cells = [
            engine,
            str(row["n_slices"]),
            str(row["grouping"]),
            row["backend"],
            str(ours["niter"]),
            f"{ours['s_per_iter']:.3f}",
            sg._fmt(before and before["s_per_iter"]),
            sg._fmt(theirs and theirs["s_per_iter"]),
            f"{ours['cpu_s_per_iter']:.3f}",
            sg._fmt(before and before["cpu_s_per_iter"]),
            _fmt_spread(row.get("ratio_phaserem_over_ours_per_repeat")),
            _fmt_spread(row.get("ratio_phaserem_over_before_per_repeat")),
            _fmt_spread(row.get("ratio_before_over_ours_per_repeat")),
            f"{ours['compile_s']:.2f}",
            sg._fmt(theirs and theirs["compile_s"], 2),
            f"{ours['peak_mib']:.0f}",
            sg._fmt(theirs and theirs["peak_mib"], 0),
            f"{ours['cpu_s'] / ours['wall_s']:.2f}",
            sg._fmt(theirs and theirs["cpu_s"] / theirs["wall_s"], 2),
            f"{row['floor']['floor_s']:.3f}",
            f"{row['ratio_ours_over_floor']:.1f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _fmt_spread(spread: dict[str, float] | None) -> str:
    if spread is None:
        return "-"
    return f"{spread['median']:.2f} ({spread['min']:.2f}-{spread['max']:.2f})"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument(
        "--rows",
        nargs="+",
        choices=list(ROWS_BY_NAME),
        default=[row.name for row in ROWS],
        help="rows to run (solver_slices_backend)",
    )
    parser.add_argument("--no-extras", action="store_true", help="only the shared plans' engine/slice combinations")
    parser.add_argument("--niter-1slice", type=int, default=8, help="iterations of the 1-slice runs")
    parser.add_argument("--niter-4slice", type=int, default=5, help="iterations of the 4-slice runs")
    parser.add_argument("--repeats", type=int, default=3, help="runs per package and row (the median is reported)")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "phaser-bench-data",
        help="cache folder of the simulated datasets (shared with speed_gradient.py)",
    )
    parser.add_argument("--work-dir", type=Path, default=None, help="plans, logs, timings (None: a new temporary one)")
    parser.add_argument(
        "--compare-phaserem",
        type=Path,
        metavar="PATH_TO_BIN",
        default=sg.DEFAULT_PHASEREM if sg.DEFAULT_PHASEREM.exists() else None,
        help="the original package's `phaser` executable",
    )
    parser.add_argument("--no-compare", action="store_true", help="skip the phaserem runs")
    parser.add_argument(
        "--baseline-tree",
        type=Path,
        default=None,
        help="a source tree of this package (holding phaser/) to run beside ours, labelled 'before'",
    )
    parser.add_argument(
        "--ours-tree",
        type=Path,
        default=None,
        help="the source tree (holding phaser/) of 'ours' (default: the installed package)",
    )
    parser.add_argument(
        "--plans-dir",
        type=Path,
        default=sg.SHARED_PLANS,
        help="folder of epie_1slice_numpy.yaml / lsqml_4slice_jax.yaml",
    )
    parser.add_argument("--fft-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker", nargs=2, type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument(
        "--results",
        type=Path,
        default=RESULTS_DIR / "speed_conventional.json",
        help="JSON results file (a .md table is written beside it)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print and save the table."""
    args = parse_args(argv)
    if args.worker:
        worker(*args.worker)
        return 0
    if args.fft_worker:
        print(json.dumps(measure_ffts()))
        return 0
    started = time.perf_counter()
    phaserem_bin = None if args.no_compare else args.compare_phaserem
    work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix="speed_conventional_"))
    work_dir.mkdir(parents=True, exist_ok=True)
    args.data_dir = args.data_dir.resolve()
    rows = [ROWS_BY_NAME[name] for name in args.rows if not (args.no_extras and ROWS_BY_NAME[name].extra)]
    plans_dir = work_dir / "plans"
    for row in rows:
        template_plan(row, args.plans_dir, plans_dir)
    print(f"data in {args.data_dir}, plans and logs in {work_dir}", flush=True)
    ffts = measure_ffts_in_child()
    print("FFT: " + ", ".join(f"{k} {v * 1e6:.1f} us" for k, v in ffts.items()), flush=True)
    records = []
    for row in rows:
        print(f"{row.name}:", flush=True)
        records.append(benchmark_row(row, args, work_dir, plans_dir, phaserem_bin, ffts))
    ffts_after = measure_ffts_in_child()
    parent_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    table = markdown_table(records)
    print(table)
    report = {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "machine": sg.machine(),
        "versions": sg.versions(phaserem_bin),
        "phaser_path": str(Path(sys.modules["phaser"].__file__).parent),
        "ours_tree": str(args.ours_tree or "installed package"),
        "baseline_tree": str(args.baseline_tree) if args.baseline_tree else None,
        "fft_s_before": ffts,
        "fft_s_after": ffts_after,
        "fft_method": "jax: best of 5 jitted fori_loops of 200 fft2 (ortho); numpy: best of 5 loops of 20 "
        "np.fft.fft2 (norm='ortho'; numpy_unscaled: default norm); complex64 64x64, batch = the row's grouping",
        "work_dir": str(work_dir),
        "total_wall_s": time.perf_counter() - started,
        "parent_maxrss_mib": parent_mib,
        "peak_note": "peak MiB = child's ru_maxrss from os.wait4; never below parent_maxrss_mib (vfork + exec)",
        "rows": records,
    }
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(report, indent=2, default=float))
    args.results.with_suffix(".md").write_text(table + "\n")
    print(f"total {report['total_wall_s']:.0f} s; results in {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
