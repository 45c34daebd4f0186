"""Depth sectioning: where multislice ptychography puts single Sn atoms inside Si [110].

1. Simulate ``ground_truth/Si_110_Sn.yaml`` (Si [110], 100 A thick, Sn interstitials at 20, 50
   and 80 A, one per channel, 7.68 A apart along x) with
   :func:`phaser.simulate.from_specimen.simulate_specimen_dataset`: 2 A simulation slices,
   Debye-Waller smeared potential, Poisson noise; the scan covers the three Sn columns.
2. Reconstruct with the gradient engine (jax, Adam, Poisson noise model) in slices of
   ``--recon-slice`` A (``phaser.plan.validate_plan`` + ``phaser.run.run_plan``).
3. For each Sn column: the reconstructed phase of every slice in a disk of radius ``--disk`` A at
   the column's lateral position (refined to the local maximum of the smoothed projected phase
   within ``--search`` A of where the truth puts it), minus the same in the neighbouring empty
   channels 3.84 A away along x (equivalent sites without Sn: removes each slice's arbitrary phase
   offset and the Si background). The profile's depth axis is each slice's entrance plane
   ``s * dz`` (where the model applies that slice's potential), the same for the truth, whose
   slice ``s`` holds the atoms with ``s dz <= z < (s + 1) dz``.
4. :func:`phaser.metrics.depth.depth_profile_fit` (a Gaussian plus background) on both profiles:
   fitted depth ``z0`` and ``fwhm`` against the known depth; for the reconstruction once over all
   slices and once without the last ``--exit-slices`` (2) slices, which carry artefacts of the exit
   surface in every column. The truth, a one-slice spike at the reconstruction's slicing, is also
   summarised by its centroid and rms width (the fit is degenerate there), as is the
   reconstruction's interior profile.

Run ``python benchmarks/depth_analysis.py --help``; the default takes 2-4 minutes on 2 CPU cores
(110 s for the reconstruction with other jobs running). Results: ``results/depth_analysis.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy.ndimage import gaussian_filter

from phaser.metrics.depth import FWHM_PER_SIGMA, depth_profile_fit
from phaser.metrics.truth import frame_offset_px
from phaser.physics.constants import interaction_constant
from phaser.plan import validate_plan
from phaser.run import run_plan
from phaser.simulate.from_specimen import SpecimenDataset, simulate_specimen_dataset, write_specimen_dataset
from phaser.simulate.specimen import build_atoms, load_specimen

REPO = Path(__file__).resolve().parents[1]
SPECIMEN = REPO / "ground_truth" / "Si_110_Sn.yaml"
# Period [A] of projected Si [110] along x (the [-110] direction): a * sqrt(2) / 2.
CHANNEL_PERIOD_X_A = 5.431 * math.sqrt(2) / 2


def simulate(args: argparse.Namespace, folder: Path) -> tuple[SpecimenDataset, Path, np.ndarray]:
    """The dataset (scan centred between the Sn columns), its file, and the Sn positions ``(x, y, z)`` [A]."""
    spec = load_specimen(SPECIMEN)
    atoms = build_atoms(spec)
    tin = atoms.positions[atoms.numbers == 50]
    centre = (float(tin[:, 1].mean()), float((tin[:, 0].min() + tin[:, 0].max()) / 2))
    sd = simulate_specimen_dataset(
        spec,
        kv=args.kv,
        conv_angle_mrad=args.conv_angle,
        defocus_A=args.defocus,
        pattern_shape=(args.pattern_size, args.pattern_size),
        diff_step_mrad=args.diff_step,
        scan_shape=tuple(args.scan),
        scan_step_A=args.step,
        scan_centre_A=centre,
        slice_thickness_A=args.sim_slice,
        dose_per_pattern=args.dose,
        frozen_phonons=args.frozen_phonons,
        seed=args.seed,
        recon_slice_thickness_A=args.recon_slice,
    )
    return sd, write_specimen_dataset(sd, folder / "si_110_sn.h5"), tin


def plan_data(args: argparse.Namespace, data_path: Path, thickness_A: float) -> dict[str, Any]:
    """The reconstruction plan as a dict (validated by :func:`phaser.plan.validate_plan`)."""
    n_slices = math.ceil(thickness_A / args.recon_slice - 1e-9)
    return {
        "name": "depth_si_110_sn",
        "backend": "jax",
        "dtype": "float32",
        "seed": args.seed,
        "raw_data": {"type": "manual", "path": str(data_path)},
        "init": {
            "probe": {"type": "focused", "conv_angle": args.conv_angle, "defocus": args.defocus},
            "scan": {"type": "raster"},
        },
        "slices": {"n": n_slices, "slice_thickness": args.recon_slice},
        "engines": [
            {
                "type": "gradient",
                "niter": args.niter,
                "grouping": 64,
                "noise_model": {"type": "poisson", "eps": 0.1},
                "solvers": {
                    # the cosine decay matters: at a constant 0.02 the loss rose again after ~200 iterations
                    "object": {
                        "type": "adam",
                        "learning_rate": {"type": "cosine", "init": args.object_lr, "final": args.object_lr_final},
                    },
                    "probe": {"type": "adam", "learning_rate": 0.01},
                },
                "update_probe": {"after": 10},
            }
        ],
    }


def disk_mean(slices: np.ndarray, centre_px: np.ndarray, radius_px: float) -> np.ndarray:
    """Mean of each slice ``(S, Ny, Nx)`` over pixels within ``radius_px`` of ``centre_px`` ``(y, x)``."""
    iy, ix = np.indices(slices.shape[-2:])
    inside = (iy - centre_px[0]) ** 2 + (ix - centre_px[1]) ** 2 <= radius_px**2
    return slices[:, inside].mean(axis=1)


def local_maximum(image: np.ndarray, centre_px: np.ndarray, radius_px: float) -> np.ndarray:
    """The pixel ``(y, x)`` of the largest value of ``image`` within ``radius_px`` of ``centre_px``."""
    iy, ix = np.indices(image.shape)
    inside = (iy - centre_px[0]) ** 2 + (ix - centre_px[1]) ** 2 <= radius_px**2
    index = np.argmax(np.where(inside, image, -np.inf))
    return np.array(np.unravel_index(index, image.shape), dtype=np.float64)


def column_profile(
    slices: np.ndarray, site_px: np.ndarray, references_px: list[np.ndarray], radius_px: float
) -> np.ndarray:
    """Per-slice disk mean at ``site_px`` minus the mean of the same at the reference sites."""
    reference = np.mean([disk_mean(slices, ref, radius_px) for ref in references_px], axis=0)
    return disk_mean(slices, site_px, radius_px) - reference


def fit(z: np.ndarray, values: np.ndarray, start_fwhm_A: float) -> dict[str, float]:
    """:func:`depth_profile_fit` as a dict (nan when it does not converge), started from the highest
    point (Sn raises the phase) with width ``start_fwhm_A`` and the lowest value as background.

    The function's own start (the point farthest from the median) picks a dip as often as the peak
    on these profiles, and then fits the dip."""
    peak = int(np.argmax(values))
    p0 = (float(z[peak]), start_fwhm_A, float(values[peak] - values.min()), float(values.min()))
    try:
        result = depth_profile_fit(z, values, p0=p0)
    except (RuntimeError, ValueError) as exc:
        return {"z0_A": math.nan, "fwhm_A": math.nan, "amplitude_rad": math.nan, "error": str(exc)}
    return {"z0_A": result.z0, "fwhm_A": result.fwhm, "amplitude_rad": result.amplitude}


def moments(z: np.ndarray, values: np.ndarray) -> dict[str, float]:
    """Centroid and Gaussian-equivalent FWHM (2.355 x rms width) of the part of a profile above its
    median: defined for a one-slice spike (FWHM 0), where a Gaussian fit is degenerate."""
    weights = np.clip(values - np.median(values), 0.0, None)
    if weights.sum() <= 0:
        return {"z0_A": math.nan, "fwhm_A": math.nan}
    centre = float(np.sum(z * weights) / weights.sum())
    width = math.sqrt(float(np.sum((z - centre) ** 2 * weights) / weights.sum()))
    return {"z0_A": centre, "fwhm_A": FWHM_PER_SIGMA * width}


def analyse(args: argparse.Namespace, sd: SpecimenDataset, state: Any, tin: np.ndarray) -> dict[str, Any]:
    """Depth profiles and fits of every Sn column, reconstructed and true."""
    ds = sd.dataset
    sampling = np.asarray(state.sampling_A)
    if not np.allclose(sampling, ds.sampling_A):
        raise RuntimeError("reconstruction and truth pixel sizes differ")
    recon_phase = np.angle(np.asarray(state.object_slices)).astype(np.float64)
    truth_phase = sd.potential_VA.astype(np.float64) * interaction_constant(ds.kv)
    if recon_phase.shape[0] != truth_phase.shape[0]:
        raise RuntimeError(f"{recon_phase.shape[0]} reconstructed slices but {truth_phase.shape[0]} truth slices")
    offset = frame_offset_px(np.asarray(state.positions_A), ds.positions_A, tuple(sampling))
    z = np.arange(recon_phase.shape[0]) * args.recon_slice
    interior = recon_phase.shape[0] - args.exit_slices
    # The simulation's own slices: the truth at the finest depth sampling there is.
    fine_phase = np.angle(ds.object.astype(np.complex128))
    z_fine = np.arange(fine_phase.shape[0]) * ds.slice_thickness_A
    radius = args.disk / sampling[0]
    smoothed = gaussian_filter(recon_phase.sum(axis=0), 1.0)
    scan_lo = ds.positions_A.min(axis=0) / sampling
    scan_hi = ds.positions_A.max(axis=0) / sampling

    columns = []
    for x, y, depth in sorted(tin.tolist(), key=lambda p: p[2]):
        truth_px = sd.to_object_A([y, x]) / sampling
        refs_truth = [truth_px + [0.0, k * CHANNEL_PERIOD_X_A / sampling[1]] for k in (-1, 1)]
        refs_truth = [r for r in refs_truth if np.all(r >= scan_lo) and np.all(r <= scan_hi)]
        predicted = truth_px + offset
        found = local_maximum(smoothed, predicted, args.search / sampling[0])
        shift = found - predicted
        refs_recon = [r + offset + shift for r in refs_truth]
        recon_profile = column_profile(recon_phase, found, refs_recon, radius)
        truth_profile = column_profile(truth_phase, truth_px, refs_truth, radius)
        fine_profile = column_profile(fine_phase, truth_px, refs_truth, radius)
        columns.append(
            {
                "known_depth_A": depth,
                "position_xy_A": [x, y],
                "lateral_refinement_A": (shift * sampling).tolist(),
                "reference_channels": len(refs_truth),
                "recon": fit(z, recon_profile, 2 * args.recon_slice),
                "recon_interior": fit(z[:interior], recon_profile[:interior], 2 * args.recon_slice),
                "recon_interior_moments": moments(z[:interior], recon_profile[:interior]),
                "truth": fit(z, truth_profile, args.recon_slice),
                "truth_moments": moments(z, truth_profile),
                "truth_fine_slices": fit(z_fine, fine_profile, args.sim_slice),
                "recon_profile_rad": recon_profile.tolist(),
                "truth_profile_rad": truth_profile.tolist(),
                "recon_peak_slice_depth_A": float(z[int(np.argmax(recon_profile))]),
            }
        )
    return {"slice_depth_A": z.tolist(), "columns": columns}


def format_table(result: dict[str, Any]) -> str:
    lines = [
        "| known depth [A] | recon z0 / FWHM [A], all slices | recon z0 / FWHM [A], without the last slices | "
        "recon peak slice [A] | truth z0 / FWHM [A] (centroid, 2.355 rms), recon slices | "
        "truth z0 / FWHM [A] (Gaussian fit), simulation slices |",
        "|---|---|---|---|---|---|",
    ]
    for c in result["analysis"]["columns"]:
        lines.append(
            f"| {c['known_depth_A']:.0f} | {c['recon']['z0_A']:.1f} / {c['recon']['fwhm_A']:.1f} | "
            f"{c['recon_interior']['z0_A']:.1f} / {c['recon_interior']['fwhm_A']:.1f} | "
            f"{c['recon_peak_slice_depth_A']:.0f} | "
            f"{c['truth_moments']['z0_A']:.1f} / {c['truth_moments']['fwhm_A']:.1f} | "
            f"{c['truth_fine_slices']['z0_A']:.1f} / {c['truth_fine_slices']['fwhm_A']:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kv", type=float, default=300.0, help="accelerating voltage [kV]")
    parser.add_argument("--conv-angle", type=float, default=30.0, help="semi-convergence angle [mrad]")
    parser.add_argument("--defocus", type=float, default=-50.0, help="C10 [A]; -50 focuses 50 A below the entrance")
    parser.add_argument("--pattern-size", type=int, default=64, help="pattern side [px]")
    parser.add_argument("--diff-step", type=float, default=1.5, help="detector pixel [mrad/px]")
    parser.add_argument("--scan", type=int, nargs=2, default=[16, 44], metavar=("NY", "NX"), help="raster shape")
    parser.add_argument("--step", type=float, default=0.5, help="scan step [A]")
    parser.add_argument("--sim-slice", type=float, default=2.0, help="simulation slice thickness [A]")
    parser.add_argument("--recon-slice", type=float, default=10.0, help="reconstruction slice thickness [A]")
    parser.add_argument("--dose", type=float, default=1e5, help="electrons per pattern")
    parser.add_argument("--frozen-phonons", type=int, default=0, help="0: Debye-Waller smeared potential")
    parser.add_argument("--niter", type=int, default=200, help="gradient iterations")
    parser.add_argument("--object-lr", type=float, default=0.02, help="Adam learning rate of the object, at the start")
    parser.add_argument("--object-lr-final", type=float, default=0.002, help="... and at the end (cosine decay)")
    parser.add_argument(
        "--exit-slices", type=int, default=2, help="last slices left out of the interior fit (exit-surface artefacts)"
    )
    parser.add_argument("--disk", type=float, default=0.35, help="radius [A] of the profile's disk")
    parser.add_argument("--search", type=float, default=0.6, help="lateral search radius [A] around each Sn")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "depth_analysis.json")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        sd, data_path, tin = simulate(args, Path(tmp))
        simulated = time.perf_counter() - start
        plan = validate_plan(plan_data(args, data_path, sd.cell_A[2]), source="depth_analysis", base=Path(tmp))
        start = time.perf_counter()
        state = run_plan(plan)
        reconstructed = time.perf_counter() - start
    result = {
        "command": " ".join(["python benchmarks/depth_analysis.py", *(sys.argv[1:] if argv is None else argv)]),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "dataset": {
            "sampling_A": list(sd.dataset.sampling_A),
            "object_shape": list(sd.dataset.object.shape),
            "positions": int(sd.dataset.positions_A.shape[0]),
            "dose_per_A2": args.dose / args.step**2,
        },
        "timing_s": {"simulate": simulated, "reconstruct": reconstructed},
        "error_first_last": [state.error_history[0], state.error_history[-1]] if state.error_history else [],
        "analysis": analyse(args, sd, state, tin),
        "versions": {"python": platform.python_version(), "numpy": np.__version__},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=float) + "\n")
    print(format_table(result))
    print(f"simulate {simulated:.1f} s, reconstruct {reconstructed:.1f} s; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
