"""The ``phaser simulate`` subcommand: simulate a small 4D-STEM dataset and write it to HDF5."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from phaser.simulate.dataset import simulate_dataset
from phaser.simulate.files import write_dataset


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``simulate`` to an argparse ``subparsers`` object; its handler is ``args.handler``."""
    parser = subparsers.add_parser(
        "simulate",
        help="simulate a 4D-STEM dataset of Gaussian atoms and write it to HDF5",
        description="Simulate a raster-scan 4D-STEM dataset of a square lattice of Gaussian "
        "atoms (multislice, optional incoherent probe modes and Poisson noise).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--out", type=Path, required=True, help="output HDF5 file (.h5)")
    parser.add_argument("--kv", type=float, default=200.0, help="accelerating voltage [kV]")
    parser.add_argument("--conv-angle", type=float, default=20.0, help="probe semi-convergence angle [mrad]")
    parser.add_argument("--defocus", type=float, default=100.0, help="probe C10 [A] (positive = overfocus)")
    parser.add_argument("--pattern-size", type=int, default=32, help="detector side [px]")
    parser.add_argument("--diff-step", type=float, default=2.0, help="detector pixel [mrad/px]")
    parser.add_argument("--scan", type=int, nargs=2, default=[16, 16], metavar=("NY", "NX"), help="raster shape")
    parser.add_argument("--step", type=float, default=0.6, help="scan step [A]")
    parser.add_argument("--slices", type=int, default=1, help="object slices")
    parser.add_argument("--slice-thickness", type=float, default=10.0, help="distance between slices [A]")
    parser.add_argument("--dose", type=float, default=1e5, help="electrons per pattern (0: noiseless, total 1)")
    parser.add_argument("--probe-modes", type=int, default=1, help="incoherent probe modes (powers 1, 1/2, 1/4...)")
    parser.add_argument("--jitter", type=float, default=0.0, help="position error rms [A]")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.set_defaults(handler=run_simulate)
    return parser


def run_simulate(args: argparse.Namespace) -> int:
    """Simulate from parsed ``args``, write the file and print a one-line summary; returns 0."""
    if args.probe_modes < 1:
        raise SystemExit(f"--probe-modes must be at least 1, got {args.probe_modes}")
    ds = simulate_dataset(
        kv=args.kv,
        conv_angle_mrad=args.conv_angle,
        defocus_A=args.defocus,
        diff_step_mrad=args.diff_step,
        scan_step_A=args.step,
        pattern_shape=(args.pattern_size, args.pattern_size),
        scan_shape=tuple(args.scan),
        n_slices=args.slices,
        slice_thickness_A=args.slice_thickness,
        probe_modes_weights=[0.5**k for k in range(args.probe_modes)],
        dose_per_pattern=args.dose if args.dose > 0 else None,
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
