"""SrTiO3 [001] end to end: simulate from the specimen file, reconstruct, ``phaser score`` against the truth.

1. ``phaser simulate ground_truth/SrTiO3_001.yaml`` (as a subprocess: the command a user types):
   SrTiO3 [001], 4 x 4 cells, 39 A thick, 2 A simulation slices, Debye-Waller smeared Kirkland
   potential, Poisson noise.
2. Reconstruct with the gradient engine (jax, Adam, Poisson noise model) through
   ``phaser.plan.validate_plan`` + ``phaser.run.run_plan``, once per ``--slices`` value (default 1
   and 4 slices over the specimen's thickness); the final state is saved with
   :func:`phaser.io.state_file.save_state`.
3. ``phaser score recon.h5 --truth data.h5`` (and ``--json``) as a subprocess: the projected phase
   of the reconstruction against the truth's (the phase of the product of its slices), after
   removing a sub-pixel shift, a constant offset and a phase ramp inside the illuminated region.

The printed tables go to ``results/srtio3_score.json`` with the scores. Run
``python benchmarks/srtio3_score.py --help``; the default takes about 3 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from phaser.io.state_file import load_state, save_state
from phaser.metrics.truth import frame_offset_px, phase_error_vs_truth, potential_to_phase
from phaser.plan import validate_plan
from phaser.run import run_plan
from phaser.simulate.files import read_truth
from phaser.simulate.from_specimen import read_potential

REPO = Path(__file__).resolve().parents[1]
SPECIMEN = REPO / "ground_truth" / "SrTiO3_001.yaml"


def phaser_command(*args: str) -> list[str]:
    """``phaser ARGS`` through this interpreter (no reliance on the console script being on PATH)."""
    return [sys.executable, "-m", "phaser", *args]


def specimen_file(thickness_A: float | None, folder: Path) -> tuple[Path, str]:
    """The specimen YAML: the ground-truth file, or a copy with another ``thickness`` [A]."""
    if thickness_A is None:
        return SPECIMEN, str(SPECIMEN.relative_to(REPO))
    data = yaml.safe_load(SPECIMEN.read_text())
    data.update(thickness=thickness_A, description=f"{data['description']}; thickness set to {thickness_A:g} A")
    path = folder / f"SrTiO3_001_{thickness_A:g}A.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path, f"{path.name} (ground_truth/SrTiO3_001.yaml with thickness {thickness_A:g})"


def simulate(args: argparse.Namespace, specimen: Path, shown_specimen: str, data_path: Path) -> dict[str, Any]:
    """Run ``phaser simulate`` on ``specimen``; returns the command and its output."""
    command = [
        "simulate",
        str(specimen),
        "--out",
        str(data_path),
        "--kv",
        f"{args.kv:g}",
        "--conv-angle",
        f"{args.conv_angle:g}",
        "--defocus",
        f"{args.defocus:g}",
        "--pattern-size",
        str(args.pattern_size),
        "--diff-step",
        f"{args.diff_step:g}",
        "--scan",
        *(str(n) for n in args.scan),
        "--step",
        f"{args.step:g}",
        "--slice-thickness",
        f"{args.sim_slice:g}",
        "--dose",
        f"{args.dose:g}",
        "--seed",
        str(args.seed),
    ]
    done = subprocess.run(phaser_command(*command), cwd=REPO, check=True, capture_output=True, text=True)
    shown = ["phaser", *command]
    shown[1:3] = ["simulate", shown_specimen]
    shown[shown.index("--out") + 1] = "data.h5"
    return {"command": " ".join(shown), "output": done.stdout.strip()}


def plan_data(args: argparse.Namespace, data_path: Path, n_slices: int, thickness_A: float) -> dict[str, Any]:
    """The reconstruction plan (``n_slices`` equal slices over ``thickness_A`` [A])."""
    return {
        "name": f"srtio3_{n_slices}slice",
        "backend": "jax",
        "dtype": "float32",
        "seed": args.seed,
        "raw_data": {"type": "manual", "path": str(data_path)},
        "init": {
            "probe": {"type": "focused", "conv_angle": args.conv_angle, "defocus": args.defocus},
            "scan": {"type": "raster"},
        },
        "slices": {"n": n_slices, "total_thickness": thickness_A},
        "engines": [
            {
                "type": "gradient",
                "niter": args.niter,
                "grouping": 64,
                "noise_model": {"type": "poisson", "eps": 0.1},
                "solvers": {
                    "object": {
                        "type": "adam",
                        "learning_rate": {"type": "cosine", "init": args.object_lr, "final": args.object_lr / 10},
                    },
                    "probe": {"type": "adam", "learning_rate": 0.01},
                },
                "update_probe": {"after": 10},
            }
        ],
    }


def score(recon_path: Path, data_path: Path) -> tuple[str, dict[str, Any]]:
    """``phaser score``'s table and its ``--json`` scores."""
    base = ["score", str(recon_path), "--truth", str(data_path)]
    table = subprocess.run(phaser_command(*base), check=True, capture_output=True, text=True).stdout
    scores = json.loads(
        subprocess.run(phaser_command(*base, "--json"), check=True, capture_output=True, text=True).stdout
    )
    # Replace the temporary folder in the printed paths.
    table = table.replace(str(recon_path), recon_path.name).replace(str(data_path), "data.h5")
    scores.update(recon=recon_path.name, truth="data.h5")
    return table.strip(), scores


def unwrapped_scores(recon_path: Path, data_path: Path) -> dict[str, Any]:
    """What ``phaser score`` measures, with phases summed over slices instead of the phase of the
    product (no wrapping at 2 pi): against ``sigma * truth/potential_VA``, the truth's projected
    potential as an unwrapped phase."""
    state = load_state(recon_path)
    potential, attrs = read_potential(data_path)
    truth = read_truth(data_path)
    scores = phase_error_vs_truth(
        state,
        potential_to_phase(potential.sum(axis=0), state.kv),
        sampling_A=state.sampling_A,
        truth_sampling_A=attrs["sampling_A"],
        truth_offset_px=frame_offset_px(state.positions_A, truth["positions_A"], state.sampling_A),
        combine="sum",
    )
    return {k: scores[k] for k in ("rmse_rad", "ssim", "frc_resolution_A", "frc_half_bit_resolution_A", "shift_px")}


def run_case(args: argparse.Namespace, thickness_A: float | None, folder: Path) -> dict[str, Any]:
    """Simulate one specimen thickness (``None``: the file's), reconstruct it with each slice count, score."""
    label = "file" if thickness_A is None else f"{thickness_A:g}A"
    specimen, shown_specimen = specimen_file(thickness_A, folder)
    data_path = folder / f"data_{label}.h5"
    start = time.perf_counter()
    simulated = simulate(args, specimen, shown_specimen, data_path)
    simulated["seconds"] = time.perf_counter() - start
    print(simulated["output"].replace(str(data_path), "data.h5"))
    truth = read_truth(data_path)
    projected_product = np.angle(np.prod(truth["object"].astype(np.complex128), axis=0))
    potential, attrs = read_potential(data_path)
    projected_sum = potential_to_phase(potential.sum(axis=0), args.kv)
    thickness = float(attrs["cell_A"][2])
    runs = []
    for n_slices in args.slices:
        plan = validate_plan(plan_data(args, data_path, n_slices, thickness), source="srtio3_score", base=folder)
        start = time.perf_counter()
        state = run_plan(plan)
        seconds = time.perf_counter() - start
        recon_path = save_state(folder / f"recon_{label}_{n_slices}slice.h5", state)
        table, scores = score(recon_path, data_path)
        unwrapped = unwrapped_scores(recon_path, data_path)
        print(f"--- {thickness:g} A, {n_slices} slice(s), {args.niter} iterations, {seconds:.1f} s\n{table}")
        print(f"summed phases (no wrapping): {json.dumps(unwrapped, default=_json_default)}")
        runs.append(
            {
                "slices": n_slices,
                "slice_thickness_A": thickness / n_slices,
                "niter": args.niter,
                "reconstruct_s": seconds,
                "error_first_last": [state.error_history[0], state.error_history[-1]],
                "score_command": f"phaser score {recon_path.name} --truth data.h5",
                "score_table": table,
                "scores": scores,
                "scores_summed_phase": unwrapped,
            }
        )
    return {
        "thickness_A": thickness,
        "simulate": simulated,
        "truth_phase_rad": {
            "projected_max_unwrapped": float(projected_sum.max()),
            "projected_min_unwrapped": float(projected_sum.min()),
            "wrapped_pixels_fraction": float(np.mean(np.abs(projected_sum - projected_product) > 1.0)),
        },
        "runs": runs,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kv", type=float, default=200.0, help="accelerating voltage [kV]")
    parser.add_argument("--conv-angle", type=float, default=20.0, help="semi-convergence angle [mrad]")
    parser.add_argument("--defocus", type=float, default=-20.0, help="C10 [A]; -20 focuses 20 A below the entrance")
    parser.add_argument("--pattern-size", type=int, default=64, help="pattern side [px]")
    parser.add_argument("--diff-step", type=float, default=1.5, help="detector pixel [mrad/px]")
    parser.add_argument("--scan", type=int, nargs=2, default=[24, 24], metavar=("NY", "NX"), help="raster shape")
    parser.add_argument("--step", type=float, default=0.4, help="scan step [A]")
    parser.add_argument("--sim-slice", type=float, default=2.0, help="simulation slice thickness [A]")
    parser.add_argument("--dose", type=float, default=1e5, help="electrons per pattern")
    parser.add_argument("--slices", type=int, nargs="+", default=[1, 4], help="reconstruction slice counts")
    parser.add_argument("--niter", type=int, default=100, help="gradient iterations")
    parser.add_argument(
        "--object-lr",
        type=float,
        default=0.02,
        help="Adam learning rate of the object, at the start (cosine decay to a tenth)",
    )
    parser.add_argument(
        "--thickness",
        type=float,
        nargs="+",
        default=[0.0, 15.62],
        help="specimen thickness(es) [A]; 0: the file's (39.05 A)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "srtio3_score.json")
    args = parser.parse_args(argv)

    cases = []
    with tempfile.TemporaryDirectory() as tmp:
        for thickness_A in args.thickness:
            cases.append(run_case(args, None if thickness_A <= 0 else thickness_A, Path(tmp)))
    result = {
        "command": " ".join(["python benchmarks/srtio3_score.py", *(sys.argv[1:] if argv is None else argv)]),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "dose_per_A2": args.dose / args.step**2,
        "cases": cases,
        "versions": {"python": platform.python_version(), "numpy": np.__version__},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=_json_default) + "\n")
    print(f"wrote {args.out}")
    return 0


def _json_default(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return float(value)


if __name__ == "__main__":
    raise SystemExit(main())
