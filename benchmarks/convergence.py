"""Error versus iteration of the three engines (gradient, ePIE, LSQML) on the same simulated data.

The datasets are those of ``speed_gradient.py`` (simulated once and cached: 32x32 positions at
0.5 A, 64x64 patterns at 1.5 mrad/px, 200 kV, 20 mrad, defocus 100 A, 1e5 e per pattern, Poisson
noise, seed 0; 1 slice, and 4 slices of 10 A). Every engine starts from the same state (plan seed 0,
focused probe of the simulation's aberrations, raster scan of the data file, uniform object) and
uses the same noise model, ``amplitude`` with eps 0.1, so that all three report the same quantity:
the noise model's loss per pattern (``loss_history``), averaged over all positions during the pass. The solver
settings are the shared plans' (``/work/shared/phaserem-plans``): gradient grouping 64, Adam lr 0.01
(Nesterov) on object and probe; ePIE grouping 16, beta 0.5 / 0.5; LSQML grouping 64, beta 1 / 1,
gamma 1e-4, illum_reg 0.01 / 0.01 (the shared LSQML plan's Anscombe and the gradient plans' Poisson
noise models are replaced by amplitude). Probe updated from the first iteration, 1 probe mode,
float32, positions fixed.

Besides the error, the projected-phase RMSE against the simulated truth
(:func:`phaser.metrics.phase_error_vs_truth`, as ``phaser score`` computes it: sub-pixel shift,
offset and ramp removed inside the illuminated region) is taken at iteration 0, every
``--rmse-every`` iterations and at the end; and the same loss of the *true* object, probe and
positions on the measured patterns (:func:`truth_loss`, the level set by the Poisson noise) is drawn
as a reference line. Writes ``results/convergence.json`` (curves, times,
scores, settings) and ``results/convergence.png`` (two panels, 1 and 4 slices, log error axis).
Run ``python benchmarks/convergence.py --help``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import speed_gradient as sg  # noqa: E402  (data simulation and machine/version records)

RESULTS_DIR = sg.RESULTS_DIR
ENGINES = ("gradient", "epie", "lsqml")
LABELS = {"gradient": "gradient (Adam)", "epie": "ePIE", "lsqml": "LSQML"}
NOISE_MODEL = {"type": "amplitude", "eps": 0.1}


def engine_plan(engine: str, niter: int) -> dict[str, Any]:
    """The engine section of one engine's plan (settings of the shared plans, amplitude noise)."""
    common: dict[str, Any] = {
        "niter": niter,
        "probe_modes": 1,
        "update_probe": True,
        "save": False,
        "save_images": False,
        "noise_model": dict(NOISE_MODEL),
    }
    if engine == "gradient":
        adam = {"type": "adam", "learning_rate": 0.01, "nesterov": True}
        return {"type": "gradient", "grouping": 64, "solvers": {"object": adam, "probe": dict(adam)}, **common}
    if engine == "epie":
        return {
            "type": "conventional",
            "grouping": 16,
            "solver": {"type": "epie", "beta_object": 0.5, "beta_probe": 0.5},
            **common,
        }
    if engine == "lsqml":
        solver = {
            "type": "lsqml",
            "beta_object": 1.0,
            "beta_probe": 1.0,
            "gamma": 1.0e-4,
            "illum_reg_object": 0.01,
            "illum_reg_probe": 0.01,
        }
        return {"type": "conventional", "grouping": 64, "solver": solver, **common}
    raise ValueError(f"unknown engine {engine!r}")


def make_plan(engine: str, n_slices: int, h5_path: Path, niter: int, backend: str) -> dict[str, Any]:
    """A whole plan (as a dict) for ``engine`` on the ``n_slices`` dataset."""
    plan: dict[str, Any] = {
        "name": f"convergence_{engine}_{n_slices}slice",
        "backend": "jax" if engine == "gradient" else backend,
        "dtype": "float32",
        "seed": 0,
        "raw_data": {"type": "manual", "path": str(h5_path)},
        "init": {
            "probe": {"type": "focused", "conv_angle": 20.0, "defocus": 100.0},
            "scan": {"type": "raster"},
        },
        "engines": [engine_plan(engine, niter)],
    }
    if n_slices > 1:
        plan["slices"] = {"n": n_slices, "total_thickness": 10.0 * n_slices}
    return plan


def phase_scores(state: Any, truth: dict[str, Any]) -> dict[str, float]:
    """Projected-phase RMSE [rad] and SSIM of ``state`` against the truth (as ``phaser score``)."""
    from phaser.metrics.truth import frame_offset_px, phase_error_vs_truth

    offset = (0.0, 0.0)
    if len(truth["positions_A"]) == state.n_positions:
        offset = frame_offset_px(state.positions_A, truth["positions_A"], state.sampling_A)
    scores = phase_error_vs_truth(
        state,
        truth["object"],
        sampling_A=state.sampling_A,
        truth_sampling_A=truth["sampling_A"],
        truth_offset_px=offset,
        combine="product",
    )
    return {"rmse_rad": float(scores["rmse_rad"]), "ssim": float(scores["ssim"])}


def truth_loss(h5_path: Path, truth: dict[str, Any], bwlim_frac: float | None = None) -> float:
    """The amplitude loss per pattern of the *true* object, probe and positions on the measured data.

    The level an unbiased model reaches on average (set by the Poisson noise); a reconstruction
    whose error falls below it fits the noise. ``bwlim_frac=None`` is the simulator's own model
    (unlimited propagators); the engines band-limit the propagators to 2/3 of Nyquist, which at
    several slices raises their attainable level a little (both are in the JSON).
    """
    import h5py

    from phaser.metrics.heldout import held_out_loss
    from phaser.state import ReconsState

    with h5py.File(h5_path, "r") as f:
        patterns = np.asarray(f["patterns"][()], dtype=np.float64)
    probe = np.asarray(truth["probe"], dtype=np.complex128)
    mean_counts = patterns.sum(axis=(-2, -1)).mean()
    probe *= np.sqrt(mean_counts / np.sum(np.abs(probe) ** 2))
    obj = np.asarray(truth["object"])
    obj = obj[None] if obj.ndim == 2 else obj
    positions = np.asarray(truth["positions_A"], dtype=np.float64)
    state = ReconsState(
        kv=200.0,
        wavelength_A=float(truth["wavelength_A"]),
        sampling_A=tuple(truth["sampling_A"]),
        probe_modes=probe,
        object_slices=obj,
        slice_thicknesses_A=np.full(obj.shape[0], float(truth.get("slice_thickness_A", 10.0))),
        positions_A=positions,
        initial_positions_A=positions.copy(),
        tilt_mrad=np.zeros_like(positions),
    )
    indices = np.arange(positions.shape[0])
    return held_out_loss(state, patterns, indices, NOISE_MODEL["type"], {"eps": NOISE_MODEL["eps"]}, bwlim_frac)


def run_engine(plan_dict: dict[str, Any], work_dir: Path, truth: dict[str, Any], rmse_every: int) -> dict[str, Any]:
    """Run one plan in this process; its error curve, iteration times and phase scores."""
    import yaml

    from phaser.observers import Observer
    from phaser.plan import load_plans
    from phaser.run import run_plan

    path = work_dir / f"{plan_dict['name']}.yaml"
    path.write_text(yaml.safe_dump(plan_dict, sort_keys=False))
    (plan,) = load_plans(path)

    class Recorder(Observer):
        """Times every iteration; scores the phase at iteration 0 and every ``rmse_every``
        (the scoring time is left out of the iteration times)."""

        def __init__(self) -> None:
            self.durations: list[float] = []
            self.last = 0.0
            self.scores: dict[int, dict[str, float]] = {}
            self.score_s = 0.0

        def _score(self, state: Any, i: int) -> None:
            start = time.perf_counter()
            self.scores[i] = phase_scores(state, truth)
            self.score_s += time.perf_counter() - start

        def engine_started(self, index: int, engine: Any, state: Any) -> None:
            self._score(state, 0)
            self.last = time.perf_counter()

        def iteration_done(self, state: Any, sync: Any, i: int, niter: int) -> bool:
            now = time.perf_counter()
            self.durations.append(now - self.last)
            if rmse_every and i % rmse_every == 0 and i != niter:
                self._score(sync(), i)
            self.last = time.perf_counter()
            return False

    recorder = Recorder()
    start = time.perf_counter()
    state = run_plan(plan, [recorder])
    wall = time.perf_counter() - start
    recorder.scores[len(state.error_history)] = phase_scores(state, truth)
    durations = recorder.durations
    return {
        "plan": plan_dict,
        "errors": [float(e) for e in state.loss_history],  # the amplitude loss, as truth_loss
        "r_factors": [float(e) for e in state.error_history],
        "iteration_s": durations,
        "s_per_iter": float(np.median(durations[1:] or durations)),
        "wall_s": wall,
        "scoring_s": recorder.score_s,
        "phase": {str(i): s for i, s in sorted(recorder.scores.items())},
        "final_rmse_rad": recorder.scores[len(state.error_history)]["rmse_rad"],
    }


def plot(report: dict[str, Any], out_path: Path) -> None:
    """Two panels (1 and 4 slices), error per pattern versus iteration, log y."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = report["cases"]
    fig, axes = plt.subplots(1, len(cases), figsize=(5.5 * len(cases), 4.2), squeeze=False)
    colours = {"gradient": "tab:blue", "epie": "tab:orange", "lsqml": "tab:green"}
    for ax, case in zip(axes[0], cases.values(), strict=True):
        for engine, run in case["engines"].items():
            errors = run["errors"]
            label = f"{LABELS[engine]}: final {errors[-1]:.0f}, phase RMSE {run['final_rmse_rad']:.3f} rad"
            ax.semilogy(np.arange(1, len(errors) + 1), errors, label=label, color=colours[engine])
        truth_label = f"true object and probe: {case['truth_loss']:.0f}"
        ax.axhline(case["truth_loss"], color="k", ls="--", lw=1, label=truth_label)
        ax.set_title(f"{case['n_slices']} slice{'s' if case['n_slices'] > 1 else ''} (32x32 scan, 64x64 patterns)")
        ax.set_xlabel("iteration")
        ax.set_ylabel("amplitude loss per pattern (eps 0.1)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Convergence of the three engines on the same simulated data", fontsize=11)
    fig.tight_layout()
    fig.savefig(out_path, dpi=120)
    plt.close(fig)


def markdown_table(report: dict[str, Any]) -> str:
    """Error at a few iterations, final phase RMSE, s/iter per case and engine."""
    niters = [len(run["errors"]) for case in report["cases"].values() for run in case["engines"].values()]
    marks = sorted({1, 5, 10, 20, max(niters)} & set(range(1, max(niters) + 1)))
    head = (
        "| slices | engine | "
        + " | ".join(f"error @{m}" for m in marks)
        + " | phase RMSE rad @0 | phase RMSE rad final | SSIM final | s/iter |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for case in report["cases"].values():
        for engine, run in case["engines"].items():
            errors = run["errors"]
            cells = [str(case["n_slices"]), LABELS[engine]]
            cells += [f"{errors[m - 1]:.1f}" if m <= len(errors) else "" for m in marks]
            final = run["phase"][str(len(errors))]
            cells += [
                f"{run['phase']['0']['rmse_rad']:.3f}",
                f"{final['rmse_rad']:.3f}",
                f"{final['ssim']:.3f}",
                f"{run['s_per_iter']:.3f}",
            ]
            lines.append("| " + " | ".join(cells) + " |")
        truth_cells = [str(case["n_slices"]), "true object and probe"]
        truth_cells += [f"{case['truth_loss']:.1f}"] * len(marks) + ["0", "0", "1", ""]
        lines.append("| " + " | ".join(truth_cells) + " |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--niter", type=int, default=60, help="iterations per engine and case")
    parser.add_argument("--slices", nargs="+", type=int, choices=[1, 4], default=[1, 4], help="datasets")
    parser.add_argument("--engines", nargs="+", choices=ENGINES, default=list(ENGINES))
    parser.add_argument(
        "--conventional-backend", choices=["jax", "numpy"], default="jax", help="backend of ePIE and LSQML"
    )
    parser.add_argument("--rmse-every", type=int, default=10, help="phase RMSE every k iterations (0: start and end)")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "phaser-bench-data",
        help="cache folder of the simulated datasets (shared with speed_gradient.py)",
    )
    parser.add_argument("--work-dir", type=Path, default=None, help="plans (None: a new temporary folder)")
    parser.add_argument(
        "--results", type=Path, default=RESULTS_DIR / "convergence.json", help="JSON file (PNG and .md beside it)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run every engine on every dataset; save the curves, the plot and the table."""
    args = parse_args(argv)
    started = time.perf_counter()
    from phaser.simulate.files import read_truth

    work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix="convergence_"))
    work_dir.mkdir(parents=True, exist_ok=True)
    args.data_dir = args.data_dir.resolve()
    cases: dict[str, Any] = {}
    for n_slices in args.slices:
        case = sg.Case(f"{n_slices}slice", n_slices, "", args.niter)
        sg.simulate_case(case, args.data_dir)
        h5_path = args.data_dir / f"{case.data_stem}.h5"
        truth = read_truth(h5_path)
        runs = {}
        for engine in args.engines:
            plan = make_plan(engine, n_slices, h5_path, args.niter, args.conventional_backend)
            runs[engine] = run_engine(plan, work_dir, truth, args.rmse_every)
            run = runs[engine]
            print(
                f"{n_slices} slice(s) {engine:8s}: error {run['errors'][0]:.1f} -> {run['errors'][-1]:.1f}, "
                f"phase RMSE {run['phase']['0']['rmse_rad']:.3f} -> {run['final_rmse_rad']:.3f} rad, "
                f"{run['s_per_iter']:.3f} s/iter, wall {run['wall_s']:.1f} s",
                flush=True,
            )
        cases[case.name] = {
            "n_slices": n_slices,
            "data": str(h5_path),
            "truth_loss": truth_loss(h5_path, truth),
            "truth_loss_bwlim_2_3": truth_loss(h5_path, truth, 2.0 / 3.0),
            "engines": runs,
        }
        print(
            f"{n_slices} slice(s) truth: loss {cases[case.name]['truth_loss']:.1f} "
            f"(engines' band limit: {cases[case.name]['truth_loss_bwlim_2_3']:.1f})",
            flush=True,
        )
    report = {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "machine": sg.machine(),
        "versions": sg.versions(None),
        "phaser_path": str(Path(sys.modules["phaser"].__file__).parent),
        "settings": {
            "niter": args.niter,
            "noise_model": NOISE_MODEL,
            "conventional_backend": args.conventional_backend,
            "rmse_every": args.rmse_every,
            "error": "noise-model loss per pattern, averaged over all positions during the pass",
            "phase_rmse": "phaser.metrics.phase_error_vs_truth, combine=product, as `phaser score`",
        },
        "cases": cases,
        "total_wall_s": 0.0,
    }
    table = markdown_table(report)
    print(table)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    plot(report, args.results.with_suffix(".png"))
    report["total_wall_s"] = time.perf_counter() - started
    args.results.write_text(json.dumps(report, indent=2, default=_json_default))
    args.results.with_suffix(".md").write_text(table + "\n")
    print(f"total {report['total_wall_s']:.0f} s; results in {args.results} (+ .png, .md)")
    return 0


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return str(value)


if __name__ == "__main__":
    sys.exit(main())
