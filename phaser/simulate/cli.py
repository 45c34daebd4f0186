"""The ``phaser simulate`` subcommand: simulate a small 4D-STEM dataset and write it to HDF5.

Without a specimen the object is a square lattice of Gaussian atoms
(:func:`phaser.simulate.dataset.simulate_dataset`); with a specimen YAML (``ground_truth/``) it is
that specimen's Kirkland potential (:func:`phaser.simulate.from_specimen.simulate_specimen_dataset`),
and the file also holds the ground-truth potential ``truth/potential_VA``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from phaser.simulate.dataset import simulate_dataset
from phaser.simulate.files import write_dataset

# Defaults of options whose default depends on the object (or on another option).
GAUSSIAN_SLICE_THICKNESS_A = 10.0
SPECIMEN_SLICE_THICKNESS_A = 2.0
DEFAULT_DOSE_PER_PATTERN = 1e5


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``simulate`` to an argparse ``subparsers`` object; its handler is ``args.handler``."""
    parser = subparsers.add_parser(
        "simulate",
        help="simulate a 4D-STEM dataset (Gaussian atoms, or a specimen YAML) and write it to HDF5",
        description="Simulate a raster-scan 4D-STEM dataset (multislice, Poisson noise) of a square "
        "lattice of Gaussian atoms (optional incoherent probe modes, position jitter), or, given a "
        "specimen YAML (e.g. ground_truth/SrTiO3_001.yaml), of that specimen's Kirkland potential "
        "with Debye-Waller smearing or frozen phonons; the file then also holds the ground-truth "
        "projected potential per reconstruction slice (truth/potential_VA, V*A).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "specimen", type=Path, nargs="?", default=None, help="specimen YAML (ground_truth/*.yaml); None: Gaussian atoms"
    )
    parser.add_argument("--out", type=Path, required=True, help="output HDF5 file (.h5)")
    parser.add_argument("--kv", type=float, default=200.0, help="accelerating voltage [kV]")
    parser.add_argument("--conv-angle", type=float, default=20.0, help="probe semi-convergence angle [mrad]")
    parser.add_argument("--defocus", type=float, default=100.0, help="probe C10 [A] (positive = overfocus)")
    parser.add_argument("--pattern-size", type=int, default=32, help="detector side [px]")
    parser.add_argument("--diff-step", type=float, default=2.0, help="detector pixel [mrad/px]")
    parser.add_argument("--scan", type=int, nargs=2, default=[16, 16], metavar=("NY", "NX"), help="raster shape")
    parser.add_argument("--step", type=float, default=0.6, help="scan step [A]")
    parser.add_argument("--slices", type=int, default=1, help="object slices (Gaussian atoms)")
    parser.add_argument(
        "--slice-thickness",
        type=float,
        default=argparse.SUPPRESS,
        help=f"distance between slices [A] (default: {GAUSSIAN_SLICE_THICKNESS_A:g} for Gaussian atoms, "
        f"{SPECIMEN_SLICE_THICKNESS_A:g} for a specimen)",
    )
    dose = parser.add_mutually_exclusive_group()
    dose.add_argument(
        "--dose",
        type=float,
        default=argparse.SUPPRESS,
        help=f"electrons per pattern (0: noiseless, total 1; default: {DEFAULT_DOSE_PER_PATTERN:g})",
    )
    dose.add_argument(
        "--dose-per-area",
        type=float,
        default=argparse.SUPPRESS,
        help="electrons per A^2 (per pattern: times the step squared)",
    )
    parser.add_argument(
        "--probe-modes", type=int, default=1, help="incoherent probe modes (powers 1, 1/2, 1/4...; Gaussian atoms)"
    )
    parser.add_argument("--jitter", type=float, default=0.0, help="position error rms [A] (Gaussian atoms)")
    parser.add_argument(
        "--frozen-phonons",
        type=int,
        default=0,
        help="specimen: frozen-phonon configurations averaged (0: Debye-Waller smeared potential)",
    )
    parser.add_argument(
        "--recon-slice-thickness",
        type=float,
        default=None,
        help="specimen: slice thickness [A] of the truth potential; None: one slice, the whole specimen",
    )
    parser.add_argument(
        "--scan-centre",
        type=float,
        nargs=2,
        default=None,
        metavar=("Y", "X"),
        help="specimen: scan centre (y, x) in the specimen cell [A]; None: the cell's centre",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.set_defaults(handler=run_simulate)
    return parser


def _dose_per_pattern(args: argparse.Namespace) -> float | None:
    """Electrons per pattern from ``--dose`` or ``--dose-per-area``; ``None`` for noiseless."""
    if hasattr(args, "dose_per_area"):
        if not args.dose_per_area > 0:
            raise SystemExit(f"--dose-per-area must be positive, got {args.dose_per_area}")
        return args.dose_per_area * args.step**2
    dose = getattr(args, "dose", DEFAULT_DOSE_PER_PATTERN)
    return dose if dose > 0 else None


def _check_options(args: argparse.Namespace) -> None:
    """Reject options that do not apply to the chosen object."""
    if args.specimen is not None:
        wrong = {"--slices": args.slices != 1, "--probe-modes": args.probe_modes != 1, "--jitter": args.jitter != 0}
    else:
        wrong = {
            "--frozen-phonons": args.frozen_phonons != 0,
            "--recon-slice-thickness": args.recon_slice_thickness is not None,
            "--scan-centre": args.scan_centre is not None,
        }
    given = [name for name, bad in wrong.items() if bad]
    if given:
        kind = "with a specimen" if args.specimen is not None else "without a specimen (Gaussian atoms)"
        raise SystemExit(f"{', '.join(given)}: not used {kind}")
    if args.probe_modes < 1:
        raise SystemExit(f"--probe-modes must be at least 1, got {args.probe_modes}")
    if args.frozen_phonons < 0:
        raise SystemExit(f"--frozen-phonons must be at least 0, got {args.frozen_phonons}")


def run_simulate(args: argparse.Namespace) -> int:
    """Simulate from parsed ``args``, write the file and print a one-line summary; returns 0."""
    _check_options(args)
    if args.specimen is not None:
        return _run_specimen(args)
    ds = simulate_dataset(
        kv=args.kv,
        conv_angle_mrad=args.conv_angle,
        defocus_A=args.defocus,
        diff_step_mrad=args.diff_step,
        scan_step_A=args.step,
        pattern_shape=(args.pattern_size, args.pattern_size),
        scan_shape=tuple(args.scan),
        n_slices=args.slices,
        slice_thickness_A=getattr(args, "slice_thickness", GAUSSIAN_SLICE_THICKNESS_A),
        probe_modes_weights=[0.5**k for k in range(args.probe_modes)],
        dose_per_pattern=_dose_per_pattern(args),
        position_jitter_A=args.jitter,
        seed=args.seed,
    )
    path = write_dataset(ds, args.out)
    dose = "noiseless" if ds.dose_per_pattern is None else f"{ds.dose_per_pattern:g} e/pattern"
    print(
        f"wrote {path}: patterns {ds.patterns.shape}, object {ds.object.shape}, "
        f"probe modes {ds.probe_modes.shape}, sampling {ds.sampling_A[0]:.4f} x "
        f"{ds.sampling_A[1]:.4f} A, {dose}"
    )
    return 0


def _run_specimen(args: argparse.Namespace) -> int:
    """The specimen branch of :func:`run_simulate`."""
    from phaser.simulate.from_specimen import simulate_specimen_dataset, write_specimen_dataset

    if not args.specimen.is_file():
        raise SystemExit(f"{args.specimen}: specimen file not found")
    sd = simulate_specimen_dataset(
        args.specimen,
        kv=args.kv,
        conv_angle_mrad=args.conv_angle,
        defocus_A=args.defocus,
        pattern_shape=(args.pattern_size, args.pattern_size),
        diff_step_mrad=args.diff_step,
        scan_shape=tuple(args.scan),
        scan_step_A=args.step,
        scan_centre_A=None if args.scan_centre is None else tuple(args.scan_centre),
        slice_thickness_A=getattr(args, "slice_thickness", SPECIMEN_SLICE_THICKNESS_A),
        dose_per_pattern=_dose_per_pattern(args),
        frozen_phonons=args.frozen_phonons,
        seed=args.seed,
        recon_slice_thickness_A=args.recon_slice_thickness,
    )
    path = write_specimen_dataset(sd, args.out)
    ds = sd.dataset
    dose = "noiseless" if ds.dose_per_pattern is None else f"{ds.dose_per_pattern:g} e/pattern"
    phonons = "Debye-Waller smeared" if sd.frozen_phonons == 0 else f"{sd.frozen_phonons} frozen phonons"
    print(
        f"wrote {path}: specimen {sd.specimen.name}, patterns {ds.patterns.shape}, object {ds.object.shape} "
        f"({ds.slice_thickness_A:g} A slices, {phonons}), truth potential {sd.potential_VA.shape} "
        f"({sd.recon_slice_thickness_A:g} A slices), sampling {ds.sampling_A[0]:.4f} x {ds.sampling_A[1]:.4f} A, {dose}"
    )
    return 0
