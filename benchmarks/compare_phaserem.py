"""Side by side with the original package (phaserem 0.3.1): the same plans on the same abTEM data.

For each case (a phaserem-format plan of ``benchmarks/abtem_srtio3_plans/`` and its data in
``/tmp/abtem-data/``, made by ``benchmarks/abtem_srtio3.py``), both packages run the plan
``--repeats`` times, alternating which goes first, each run in its own process:

- this package through :func:`phaser.run.run_plan` with an observer that timestamps every iteration
  (``--worker``), the final state written to an ``.npz``;
- phaserem's ``phaser run`` on the same plan (a copy that also saves its state after the last
  iteration), its per-iteration times and losses read from its ``Finished iter`` log lines
  (:func:`speed_gradient.parse_phaserem_log`), its object read from the saved ``iterNNN.h5``.

Scores per run: ``s/iter`` is the median duration of iterations 2..n (the first carries the
compile); the NCC of the summed object phase against abTEM's projected potential after registration
(shift, offset and ramp removed inside the illuminated region: :func:`abtem_srtio3.score`), and for
an 8-slice reconstruction the NCC of each slice against its slab of the potential. The convergence
curves are each package's own error per pattern against the iteration and the seconds since the
engine started: here the noise-model loss; the original's gradient engine reports its noise-model
loss too (its Poisson loss is ours plus ``eps`` per detector pixel), its ePIE and LSQML the misfit
``sqrt(sum (I - M)^2)``.

Results: ``benchmarks/results/compare_phaserem.{json,md,png}`` with versions, date and the machine's
load. Without the abTEM data (``--own-data``), datasets of the same shape are simulated by
``phaser simulate`` (Kirkland potential, Debye-Waller smeared) and the plans are made by
:func:`abtem_srtio3.plans`. Run ``python benchmarks/compare_phaserem.py --help``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import abtem_srtio3  # noqa: E402  (the plans and the NCC score)
import speed_gradient  # noqa: E402  (child processes, phaserem's log, machine and versions)

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "benchmarks" / "results"
DEFAULT_DATA = Path("/tmp/abtem-data")
DEFAULT_PHASEREM = Path("/tmp/phaserem/bin/phaser")
# (plan name, dataset) of the comparison; the dataset names its .npy and *_truth.npz
CASES: dict[str, str] = {
    "grad_1slice_thin": "thin",
    "grad_8slice_thick": "thick",
    "epie_1slice_thin": "thin",
    "lsqml_1slice_thin": "thin",
    # the thick set with the room-temperature Debye-Waller smeared potential (abtem_srtio3.py --debye-waller)
    "grad_8slice_thick_dw": "thick_dw",
}
DEFAULT_CASES = ["grad_1slice_thin", "grad_8slice_thick_dw", "epie_1slice_thin", "lsqml_1slice_thin"]
PHASEREM_REQUIREMENT = "phaserem[jax]==0.3.1"
_LOSS = re.compile(r"Finished iter\s+\d+/\d+\s+\[[0-9:.]+\]\s+Error: ([0-9.eE+-]+)")


@dataclass
class Run:
    """One run of one package on one case: timings, loss curve and scores."""

    package: str
    case: str
    repeat: int
    durations_s: list[float]
    losses: list[float]
    wall_s: float
    cpu_s: float
    load_avg_before: float
    ncc: float = float("nan")
    per_slice_ncc: list[float] | None = None
    shift_px: list[float] = field(default_factory=list)
    errors: list[float] | None = None
    """This package only: the common amplitude R-factor per iteration."""

    @property
    def s_per_iter(self) -> float:
        """Median duration of iterations 2..n [s]."""
        rest = self.durations_s[1:] or self.durations_s
        return float(statistics.median(rest))

    def summary(self) -> dict[str, Any]:
        """JSON-ready record with the derived numbers."""
        return {**asdict(self), "s_per_iter": self.s_per_iter}


# ----------------------------------------------------------------------------- data and plans


def wait_for(paths: list[Path], timeout_s: float, poll_s: float = 15.0) -> bool:
    """Wait until every path exists (at most ``timeout_s``); whether they all do."""
    deadline = time.monotonic() + timeout_s
    while not all(p.exists() for p in paths):
        if time.monotonic() > deadline:
            return False
        time.sleep(poll_s)
    return True


def ensure_phaserem(executable: Path) -> None:
    """Create phaserem's own venv (the venv two folders above ``executable``) unless it exists."""
    if executable.exists():
        return
    venv = executable.parent.parent
    print(f"installing {PHASEREM_REQUIREMENT} into {venv}", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", PHASEREM_REQUIREMENT], check=True)


def own_dataset(setup: abtem_srtio3.Setup, data_dir: Path) -> None:
    """``srtio3_<name>.npy`` and ``_truth.npz`` of ``setup`` simulated by ``phaser simulate``.

    The specimen is ``ground_truth/SrTiO3_001.yaml`` at the setup's thickness (Debye-Waller
    smeared Kirkland potential), the truth is the potential in 8 slabs, in the abTEM files' layout.
    """
    npy, truth_path = data_dir / f"srtio3_{setup.name}.npy", data_dir / f"srtio3_{setup.name}_truth.npz"
    if npy.exists() and truth_path.exists():
        return
    data_dir.mkdir(parents=True, exist_ok=True)
    specimen = yaml.safe_load((REPO / "ground_truth" / "SrTiO3_001.yaml").read_text())
    specimen["thickness"] = setup.thickness_A
    specimen_path = data_dir / f"SrTiO3_001_{setup.name}.yaml"
    specimen_path.write_text(yaml.safe_dump(specimen, sort_keys=False))
    h5_path = data_dir / f"srtio3_{setup.name}.h5"
    # fmt: off
    command = [
        sys.executable, "-m", "phaser", "simulate", str(specimen_path), "--out", str(h5_path),
        "--kv", f"{setup.kv:g}", "--conv-angle", f"{setup.conv_angle_mrad:g}",
        "--defocus", f"{setup.defocus_C10_A:g}", "--pattern-size", str(setup.pattern_px),
        "--diff-step", f"{setup.diff_step_mrad:.6f}", "--scan", *map(str, setup.scan_shape),
        "--step", f"{setup.scan_step_A:g}", "--dose-per-area", f"{setup.dose_per_A2:g}",
        "--recon-slice-thickness", f"{setup.thickness_A / abtem_srtio3.TRUTH_SLABS:.6f}",
    ]
    # fmt: on
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    import h5py

    with h5py.File(h5_path, "r") as f:
        np.save(npy, np.asarray(f["patterns"][()], dtype=np.float32))
        potential = f["truth/potential_VA"]
        slabs = np.asarray(potential[()], dtype=np.float64)
        origin = np.asarray(potential.attrs["origin_A"], dtype=np.float64)
        np.savez(
            truth_path,
            potential_VA=slabs.sum(axis=0),
            slabs_VA=slabs,
            sampling_A=np.asarray(potential.attrs["sampling_A"], dtype=np.float64),
            positions_A=np.asarray(f["truth/positions_A"][()]) - origin,
            kv=np.array(setup.kv),
        )


def plan_templates(plans_dir: Path, own_data: bool) -> dict[str, dict[str, Any]]:
    """The phaserem-format plans by name (``${DATA}`` in the raw-data path)."""
    made = abtem_srtio3.plans(abtem_srtio3.THIN, abtem_srtio3.THICK)
    made.update(abtem_srtio3.plans(*abtem_srtio3.debye_waller_setups()))
    if own_data:
        return made
    files = {name: plans_dir / f"{name}.yaml" for name in CASES}
    return {name: yaml.safe_load(path.read_text()) if path.exists() else made[name] for name, path in files.items()}


def write_plan(template: dict[str, Any], data_dir: Path, niter: int, path: Path, save_dir: Path | None) -> Path:
    """The plan with the data folder and ``niter`` filled in; with ``save_dir``, phaserem's state
    is saved there after the last iteration (and no images are written)."""
    plan = json.loads(json.dumps(template).replace("${DATA}", str(data_dir)))
    engine = plan["engines"][0]
    engine["niter"] = niter
    if save_dir is not None:
        engine["save"] = {"after": niter - 1}
        engine["save_images"] = False
        engine["save_options"] = {"out_dir": str(save_dir), "images": []}
    path.write_text(yaml.safe_dump(plan, sort_keys=False))
    return path


# ----------------------------------------------------------------------------- runs


def run_ours(case: str, plan_path: Path, work_dir: Path, repeat: int) -> tuple[Run, dict[str, np.ndarray]]:
    """Our run of ``plan_path`` in a child process; its record and final state arrays."""
    out = work_dir / f"ours_{case}_r{repeat}.npz"
    load = os.getloadavg()[0]
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", str(plan_path), str(out)]
    wall, _, cpu = speed_gradient.run_child(command, work_dir / f"ours_{case}_r{repeat}.log", work_dir)
    arrays = dict(np.load(out))
    return our_run_record(case, repeat, arrays, wall, cpu, load), arrays


def our_run_record(
    case: str, repeat: int, arrays: dict[str, np.ndarray], wall: float = 0.0, cpu: float = 0.0, load: float = 0.0
) -> Run:
    """The :class:`Run` of one of our worker's outputs (its ``.npz`` arrays), not yet scored."""
    ends = np.concatenate([[float(arrays["engine_start_s"])], arrays["iteration_end_s"]])
    return Run(
        package="phaser",
        case=case,
        repeat=repeat,
        durations_s=[float(d) for d in np.diff(ends)],
        losses=[float(v) for v in arrays["losses"]],
        errors=[float(v) for v in arrays["errors"]],
        wall_s=wall,
        cpu_s=cpu,
        load_avg_before=load,
    )


def read_phaserem_state(h5_path: Path) -> dict[str, np.ndarray]:
    """Object, probe, sampling and positions from phaserem's saved state (``iterNNN.h5``).

    Its positions are relative to the scan centre and its object starts at ``object/corner``; the
    probe centre lands half a pixel past ``(position - corner) / sampling`` (the cut-out of an even
    window is centred between pixels), so positions in this package's object frame are
    ``position - corner + sampling / 2`` [A].
    """
    import h5py

    with h5py.File(h5_path, "r") as f:
        sampling = np.asarray(f["object/sampling"][()], dtype=np.float64)
        corner = np.asarray(f["object/corner"][()], dtype=np.float64)
        positions = np.asarray(f["scan/data"][()], dtype=np.float64).reshape(-1, 2)
        return {
            "object": np.asarray(f["object/data"][()]),
            "probe": np.asarray(f["probe/data"][()]),
            "sampling": sampling,
            "positions": positions - corner + sampling / 2,
        }


def run_phaserem(
    binary: Path, case: str, template: dict[str, Any], data_dir: Path, work_dir: Path, niter: int, repeat: int
) -> tuple[Run, dict[str, np.ndarray]]:
    """phaserem's ``phaser run`` of the plan; its record and final state arrays."""
    save_dir = work_dir / f"phaserem_{case}_r{repeat}"
    plan_path = write_plan(template, data_dir, niter, work_dir / f"phaserem_{case}_r{repeat}.yaml", save_dir)
    log_path = work_dir / f"phaserem_{case}_r{repeat}.log"
    load = os.getloadavg()[0]
    wall, _, cpu = speed_gradient.run_child([str(binary), "run", str(plan_path)], log_path, work_dir)
    run = phaserem_run_record(case, repeat, log_path, niter, wall, cpu, load)
    return run, read_phaserem_state(save_dir / f"iter{niter:03d}.h5")


def phaserem_run_record(
    case: str, repeat: int, log_path: Path, niter: int, wall: float = 0.0, cpu: float = 0.0, load: float = 0.0
) -> Run:
    """The :class:`Run` of one phaserem log (``Finished iter`` lines), not yet scored."""
    text = log_path.read_text()
    durations, _ = speed_gradient.parse_phaserem_log(text)
    if len(durations) != niter:
        raise RuntimeError(f"{log_path}: {len(durations)} 'Finished iter' lines for {niter} iterations")
    return Run(
        package="phaserem",
        case=case,
        repeat=repeat,
        durations_s=durations,
        losses=[float(v) for v in _LOSS.findall(text)],
        wall_s=wall,
        cpu_s=cpu,
        load_avg_before=load,
    )


def score_run(run: Run, arrays: dict[str, np.ndarray], truth: dict[str, Any]) -> None:
    """Fill in the run's NCC (and per-slice NCC) against the truth."""
    scores = abtem_srtio3.score(
        arrays["object"], arrays["positions"], tuple(arrays["sampling"]), arrays["probe"], truth, float(truth["kv"])
    )
    run.ncc = float(scores["ncc"])
    run.per_slice_ncc = None if scores["per_slice"] is None else [float(v) for v in scores["per_slice"]]
    run.shift_px = [float(v) for v in scores["shift_px"]]


# ----------------------------------------------------------------------------- worker


def worker(plan_path: Path, out_path: Path) -> None:
    """Child-process entry: run the plan with a timing observer; write times, curves and the state."""
    from iteration_timer import make_iteration_timer

    from phaser.plan import load_plans
    from phaser.run import run_plan

    (plan,) = load_plans(plan_path)
    timer = make_iteration_timer()
    state = run_plan(plan, [timer])
    np.savez(
        out_path,
        engine_start_s=np.array(timer.engine_start_s),
        iteration_end_s=np.asarray(timer.iteration_end_s),
        errors=np.asarray(state.error_history, dtype=np.float64),
        losses=np.asarray(state.loss_history, dtype=np.float64),
        object=np.asarray(state.object_slices),
        probe=np.asarray(state.probe_modes),
        positions=np.asarray(state.positions_A, dtype=np.float64),
        sampling=np.asarray(state.sampling_A, dtype=np.float64),
    )


# ----------------------------------------------------------------------------- reporting


def spread(values: list[float], digits: int = 3) -> str:
    """``min-max (median m)`` of the values, or the one value."""
    if not values:
        return "n/a"
    low, high, mid = min(values), max(values), statistics.median(values)
    if len(values) == 1 or high - low < 0.5 * 10**-digits:
        return f"{mid:.{digits}f}"
    return f"{low:.{digits}f}-{high:.{digits}f} (median {mid:.{digits}f})"


def case_summary(case: str, runs: list[Run]) -> dict[str, Any]:
    """Per package: every repeat's s/iter, NCC and per-slice NCC; the speed ratio with its spread."""
    out: dict[str, Any] = {"case": case}
    for package in ("phaserem", "phaser"):
        mine = [r for r in runs if r.package == package]
        out[package] = {
            "s_per_iter": [r.s_per_iter for r in mine],
            "ncc": [r.ncc for r in mine],
            "per_slice_ncc": [r.per_slice_ncc for r in mine if r.per_slice_ncc is not None],
        }
    # ratios within a repeat (the two runs of one repeat are back to back)
    pairs = {}
    for r in runs:
        pairs.setdefault(r.repeat, {})[r.package] = r.s_per_iter
    ratios = [p["phaserem"] / p["phaser"] for p in pairs.values() if {"phaserem", "phaser"} <= set(p)]
    out["speed_ratio_phaserem_over_ours"] = ratios
    return out


def markdown(summaries: list[dict[str, Any]], niter: int, repeats: int) -> str:
    """The table of the issue (both packages) plus the per-slice NCC of multislice cases."""
    lines = [
        f"{niter} iterations, {repeats} run(s) per package and case, alternating; spreads are min-max.",
        "",
        "| plan | phaserem s/iter | ours s/iter | speed ratio | phaserem NCC | ours NCC |",
        "|---|---|---|---|---|---|",
    ]
    for s in summaries:
        lines.append(
            f"| {s['case']} | {spread(s['phaserem']['s_per_iter'])} | {spread(s['phaser']['s_per_iter'])} | "
            f"{spread(s['speed_ratio_phaserem_over_ours'], 2)} | {spread(s['phaserem']['ncc'])} | "
            f"{spread(s['phaser']['ncc'])} |"
        )
    for s in summaries:
        rows = [
            (package, k, slices)
            for package in ("phaserem", "phaser")
            for k, slices in enumerate(s[package]["per_slice_ncc"])
        ]
        if not rows:
            continue
        n_slices = len(rows[0][2])
        lines += ["", f"Per-slice NCC, {s['case']} (slice 0 = entrance):", ""]
        lines.append("| package | run | " + " | ".join(f"slice {i}" for i in range(n_slices)) + " |")
        lines.append("|---|---|" + "---|" * n_slices)
        lines += [f"| {p} | {k} | " + " | ".join(f"{v:.3f}" for v in slices) + " |" for p, k, slices in rows]
    return "\n".join(lines) + "\n"


def plot_curves(runs: list[Run], path: Path) -> None:
    """Each package's own error per pattern vs iteration (left) and vs seconds (right), one row per case."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = list(dict.fromkeys(r.case for r in runs))
    fig, axes = plt.subplots(len(cases), 2, figsize=(11, 3.2 * len(cases)), squeeze=False)
    colours = {"phaserem": "tab:orange", "phaser": "tab:blue"}
    for row, case in zip(axes, cases, strict=True):
        for r in (r for r in runs if r.case == case):
            seconds = np.cumsum(r.durations_s)
            label = f"{'phaserem 0.3.1' if r.package == 'phaserem' else 'phaser (this)'} #{r.repeat}"
            style = dict(color=colours[r.package], alpha=0.8, lw=1.2, label=label)
            row[0].semilogy(np.arange(1, len(r.losses) + 1), r.losses, **style)
            row[1].semilogy(seconds[: len(r.losses)], r.losses, **style)
        row[0].set(title=f"{case}: error vs iteration", xlabel="iteration", ylabel="own error per pattern")
        row[1].set(title=f"{case}: error vs time", xlabel="seconds since the engine started (incl. compile)")
        for ax in row:
            ax.grid(alpha=0.3, which="both")
        row[0].legend(fontsize=7, ncol=2)
    fig.text(
        0.5,
        0.002,
        "Each package's own error per pattern: this package's noise-model loss; phaserem's gradient engine reports its "
        "noise-model loss (Poisson: ours + eps per pixel),\nits ePIE/LSQML the intensity misfit "
        "sqrt(sum (I - M)^2): levels compare within a package only for the conventional engines.",
        ha="center",
        va="bottom",
        fontsize=7,
    )
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=DEFAULT_CASES)
    parser.add_argument("--repeats", type=int, default=3, help="runs per package and case")
    parser.add_argument("--niter", type=int, default=30)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA, help="the abTEM sets and truths")
    parser.add_argument("--plans-dir", type=Path, default=abtem_srtio3.PLANS_DIR, help="phaserem-format plans")
    parser.add_argument(
        "--own-data",
        type=Path,
        default=None,
        metavar="DIR",
        help="simulate same-shaped data with this package's simulator into DIR instead of the abTEM sets",
    )
    parser.add_argument("--wait-s", type=float, default=0.0, help="wait this long for the abTEM READY files")
    parser.add_argument("--phaserem", type=Path, default=DEFAULT_PHASEREM, help="phaserem's `phaser` executable")
    parser.add_argument(
        "--install",
        action="store_true",
        help=f"create phaserem's venv ({PHASEREM_REQUIREMENT}) if --phaserem is missing",
    )
    parser.add_argument("--work-dir", type=Path, default=None, help="plans, logs, states (default: a temporary one)")
    parser.add_argument(
        "--results", type=Path, default=RESULTS_DIR / "compare_phaserem.json", help="JSON file; .md and .png beside it"
    )
    parser.add_argument("--worker", nargs=2, type=Path, metavar=("PLAN", "OUT_NPZ"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the comparison; print and save the table, the records and the curves."""
    args = parse_args(argv)
    if args.worker:
        worker(*args.worker)
        return 0
    if args.install:
        ensure_phaserem(args.phaserem)
    if not args.phaserem.exists():
        raise SystemExit(f"{args.phaserem} is missing: give --install (or --phaserem PATH to phaserem's `phaser`)")
    data_dir = args.own_data or args.data_dir
    if args.own_data:
        setups = {"thin": abtem_srtio3.THIN, "thick": abtem_srtio3.THICK}
        setups.update({s.name: s for s in abtem_srtio3.debye_waller_setups()})
        for name in {CASES[c] for c in args.cases}:
            own_dataset(setups[name], data_dir)
    else:
        # the truth is written after its patterns
        ready = [data_dir / f"srtio3_{name}_truth.npz" for name in sorted({CASES[c] for c in args.cases})]
        if not wait_for(ready, args.wait_s):
            missing = [str(p) for p in ready if not p.exists()]
            raise SystemExit(f"{', '.join(missing)} missing: run benchmarks/abtem_srtio3.py, or use --own-data DIR")
    templates = plan_templates(args.plans_dir, args.own_data is not None)
    work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix="compare_phaserem_"))
    work_dir.mkdir(parents=True, exist_ok=True)
    print(f"data in {data_dir}, plans, logs and states in {work_dir}", flush=True)
    load_start = os.getloadavg()
    runs: list[Run] = []
    for case in args.cases:
        truth = dict(np.load(data_dir / f"srtio3_{CASES[case]}_truth.npz"))
        ours_plan = write_plan(templates[case], data_dir, args.niter, work_dir / f"ours_{case}.yaml", None)
        for repeat in range(args.repeats):
            order = ("phaser", "phaserem") if repeat % 2 == 0 else ("phaserem", "phaser")
            for package in order:
                if package == "phaser":
                    run, arrays = run_ours(case, ours_plan, work_dir, repeat)
                else:
                    run, arrays = run_phaserem(
                        args.phaserem, case, templates[case], data_dir, work_dir, args.niter, repeat
                    )
                score_run(run, arrays, truth)
                runs.append(run)
                slices = (
                    "" if run.per_slice_ncc is None else " per slice " + " ".join(f"{v:.2f}" for v in run.per_slice_ncc)
                )
                print(
                    f"  {case} {package:8s} #{repeat}: {run.s_per_iter:.3f} s/iter, NCC {run.ncc:.4f}{slices}, "
                    f"load before {run.load_avg_before:.2f}",
                    flush=True,
                )
    summaries = [case_summary(case, [r for r in runs if r.case == case]) for case in args.cases]
    table = markdown(summaries, args.niter, args.repeats)
    print(table)
    report = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": speed_gradient.machine(),
        "load_avg_1_5_15_start": list(load_start),
        "load_avg_1_5_15_end": list(os.getloadavg()),
        "versions": speed_gradient.versions(args.phaserem),
        "data": str(data_dir),
        "data_source": "phaser simulate (own simulator)" if args.own_data else "abTEM (benchmarks/abtem_srtio3.py)",
        "niter": args.niter,
        "repeats": args.repeats,
        "s_per_iter_method": "median of iterations 2..n; ours: observer timestamps; phaserem: its log lines",
        "ncc_method": "abtem_srtio3.score: summed phase vs sigma*V after shift/offset/ramp registration",
        "summaries": summaries,
        "runs": [r.summary() for r in runs],
    }
    args.results = args.results.with_suffix(".json")  # its .md and .png go beside it
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(report, indent=2, default=float))
    args.results.with_suffix(".md").write_text(table)
    plot_curves(runs, args.results.with_suffix(".png"))
    print(f"results in {args.results} (.md, .png)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
