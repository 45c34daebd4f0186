"""Cross-check of the specimen simulation against abTEM (an independent multislice code).

For one specimen (default ``ground_truth/SrTiO3_001.yaml``: SrTiO3 [001], 4 x 4 cells, 39 A thick)
the same ``ase.Atoms`` (:func:`phaser.simulate.specimen.build_atoms`, exported as extended XYZ)
go to both codes on the same grid:

- **projected potential** [V*A]: ours (``truth/potential_VA`` of
  :func:`phaser.simulate.from_specimen.simulate_specimen_dataset`, one slice) against abTEM's
  ``Potential(..., parametrization=KirklandParametrization(sigmas=u_rms), projection="infinite")``
  projected; both Debye-Waller smeared with the same rms displacements. Reported: relative RMS
  difference over the whole cell, the same after low-passing both below half the Nyquist frequency
  (where our anti-ringing taper is 1, so only the parametrization and atom placement differ), and
  the ratio of the integrals;
- **diffraction patterns** (CBED) of single probe positions: our noiseless multislice pattern
  against abTEM's ``Probe(semiangle_cutoff, energy, defocus=-C10).multislice(potential)`` with
  the same slices; relative RMS difference inside abTEM's anti-aliasing aperture (2/3 of the
  Nyquist frequency; ours has no such limit, so the fraction of our intensity outside it is
  reported too), each pattern normalised to the incident probe's intensity. As a check of the
  defocus convention, abTEM is also run with the opposite sign (``defocus=+C10``).

The sampling is chosen so that a pattern's real-space window is exactly one specimen cell
(``diff_step = wavelength / Lx``): our probe window then holds one period of the periodic object,
as abTEM's periodic cell does, and probe positions lie on both codes' pixels.

abTEM lives in its own venv (``python3 -m venv /tmp/abtem && /tmp/abtem/bin/pip install abtem``;
``--install`` does it); this script writes a small abTEM script to a temporary folder and runs it
there. Run ``python benchmarks/simulation_check.py --help``; about 40 s on 2 cores (128 and 256 px).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np

from phaser.physics.constants import electron_wavelength_A
from phaser.simulate.from_specimen import simulate_specimen_dataset
from phaser.simulate.kirkland import B_to_u_rms
from phaser.simulate.specimen import build_atoms, load_specimen

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SPECIMEN = REPO / "ground_truth" / "SrTiO3_001.yaml"
DEFAULT_ABTEM_PYTHON = Path("/tmp/abtem/bin/python")
# Fraction of the Nyquist frequency that abTEM's anti-aliasing aperture keeps (its default).
ABTEM_ANTIALIAS = 2.0 / 3.0
# Below this fraction of the Nyquist frequency our potential's taper is 1 (phaser.simulate.potentials).
OUR_TAPER_START = 0.5

ABTEM_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    import numpy as np
    import abtem, ase.io
    from abtem.parametrizations import KirklandParametrization

    cfg = json.load(open(sys.argv[1]))
    abtem.config.set({"precision": "float64", "device": "cpu", "diagnostics.progress_bar": False})
    atoms = ase.io.read(cfg["xyz"])
    start = time.perf_counter()
    potential = abtem.Potential(
        atoms,
        gpts=tuple(cfg["gpts"]),
        slice_thickness=tuple(cfg["slice_thicknesses"]),
        parametrization=KirklandParametrization(sigmas=cfg["sigmas"]),
        projection="infinite",
    ).build().compute()
    projected = potential.project().compute().array  # (x, y)
    positions = np.asarray(cfg["positions_xy"], dtype=float)
    out = {"potential_xy": projected}
    for label, defocus in (("patterns", cfg["defocus"]), ("patterns_flipped", -cfg["defocus"])):
        probe = abtem.Probe(semiangle_cutoff=cfg["conv_angle_mrad"], energy=cfg["energy_eV"], defocus=defocus)
        probe.grid.match(potential)
        incident = probe.build(scan=positions).compute().array  # (P, x, y)
        exit_waves = probe.multislice(potential, scan=positions).compute().array
        norm = np.sum(np.abs(incident) ** 2, axis=(-2, -1), keepdims=True) * np.prod(incident.shape[-2:])
        out[label] = np.abs(np.fft.fft2(exit_waves)) ** 2 / norm  # unshifted, (P, kx, ky)
    out["seconds"] = np.array(time.perf_counter() - start)
    out["version"] = np.array(abtem.__version__)
    np.savez(cfg["out"], **out)
    """
)


def ensure_abtem(python: Path, install: bool) -> None:
    """Check that ``python`` imports abtem; with ``install``, create the venv first if needed."""
    if not python.exists() and install:
        venv = python.parent.parent
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "abtem"], check=True)
    if not python.exists():
        raise SystemExit(
            f"{python} not found: run with --install (python3 -m venv /tmp/abtem; /tmp/abtem/bin/pip install abtem)"
        )
    subprocess.run([str(python), "-c", "import abtem"], check=True)


def relative_rms(ours: np.ndarray, reference: np.ndarray, mask: np.ndarray | None = None) -> float:
    """``||ours - reference|| / ||reference||`` over ``mask`` (default: everywhere)."""
    mask = np.ones(reference.shape, dtype=bool) if mask is None else mask
    return float(np.sqrt(np.sum((ours - reference)[mask] ** 2) / np.sum(reference[mask] ** 2)))


def low_pass(image: np.ndarray, fraction: float) -> np.ndarray:
    """``image`` without spatial frequencies above ``fraction`` of the Nyquist frequency."""
    ky = np.fft.fftfreq(image.shape[-2])[:, None]
    kx = np.fft.fftfreq(image.shape[-1])[None, :]
    keep = np.sqrt(ky**2 + kx**2) <= 0.5 * fraction
    return np.real(np.fft.ifft2(np.fft.fft2(image) * keep))


def centred_disk(shape: tuple[int, int], fraction: float) -> np.ndarray:
    """Centred-pattern pixels within ``fraction`` of the Nyquist frequency."""
    ky = np.fft.fftshift(np.fft.fftfreq(shape[0]))[:, None]
    kx = np.fft.fftshift(np.fft.fftfreq(shape[1]))[None, :]
    return np.sqrt(ky**2 + kx**2) <= 0.5 * fraction


def run_ours(
    args: argparse.Namespace, spec: Any, positions_yx: list[tuple[float, float]], n: int, diff_step: float
) -> dict:
    """Our potential (one slice, on the object frame) and noiseless pattern per position."""
    results = []
    start = time.perf_counter()
    for centre in positions_yx:
        sd = simulate_specimen_dataset(
            spec,
            kv=args.kv,
            conv_angle_mrad=args.conv_angle,
            defocus_A=args.defocus,
            pattern_shape=(n, n),
            diff_step_mrad=diff_step,
            scan_shape=(1, 1),
            scan_step_A=1.0,
            scan_centre_A=centre,
            slice_thickness_A=args.slice_thickness,
        )
        results.append(sd)
    return {"datasets": results, "seconds": time.perf_counter() - start}


def run_abtem(args: argparse.Namespace, atoms: Any, spec: Any, positions_yx: list[tuple[float, float]], n: int) -> dict:
    """abTEM's projected potential ``(y, x)`` and unshifted patterns ``(P, ky, kx)`` (both orientations
    turned into ours)."""
    lz = float(atoms.cell.lengths()[2])
    n_slices = max(1, math.ceil(lz / args.slice_thickness - 1e-9))
    thicknesses = [args.slice_thickness] * (n_slices - 1) + [lz - (n_slices - 1) * args.slice_thickness]
    sigmas = {element: B_to_u_rms(b) for element, b in spec.debye_waller_B().items()}
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        atoms.write(tmp_path / "atoms.xyz", format="extxyz")
        config = {
            "xyz": str(tmp_path / "atoms.xyz"),
            "gpts": [n, n],
            "slice_thicknesses": thicknesses,
            "sigmas": sigmas,
            "positions_xy": [[x, y] for y, x in positions_yx],
            "conv_angle_mrad": args.conv_angle,
            "energy_eV": args.kv * 1e3,
            "defocus": -args.defocus,  # abTEM's defocus is -C10
            "out": str(tmp_path / "abtem.npz"),
        }
        (tmp_path / "config.json").write_text(json.dumps(config))
        (tmp_path / "run_abtem.py").write_text(ABTEM_SCRIPT)
        start = time.perf_counter()
        subprocess.run(
            [str(args.abtem_python), str(tmp_path / "run_abtem.py"), str(tmp_path / "config.json")],
            check=True,
            cwd=tmp,
        )
        wall = time.perf_counter() - start
        with np.load(tmp_path / "abtem.npz") as data:
            return {
                "potential": data["potential_xy"].T,
                "patterns": np.swapaxes(data["patterns"], -2, -1),
                "patterns_flipped": np.swapaxes(data["patterns_flipped"], -2, -1),
                "seconds_inside": float(data["seconds"]),
                "seconds_wall": wall,
                "version": str(data["version"]),
                "n_slices": n_slices,
            }


def compare(args: argparse.Namespace, n: int) -> dict[str, Any]:
    """Run both codes with ``n`` x ``n`` patterns and return every number of the comparison."""
    spec = load_specimen(args.specimen)
    atoms = build_atoms(spec)
    lx, ly, _ = (float(v) for v in atoms.cell.lengths())
    if abs(lx - ly) > 1e-6:
        raise SystemExit(f"this check needs a square cell, got {lx:.4f} x {ly:.4f} A")
    wavelength = electron_wavelength_A(args.kv)
    diff_step = wavelength / lx * 1e3  # one pattern window = one cell
    d = lx / n
    # Probe positions (y, x) on the pixels: a Sr column (0, 0), a Ti column (a/2, a/2) and a general point.
    a = lx / spec.supercell[0]
    positions = [(0.0, 0.0), (a / 2, a / 2), (round(0.31 * a / d) * d, round(0.77 * a / d) * d)]
    labels = ["Sr column", "Ti column", "between columns"]

    ours = run_ours(args, spec, positions, n, diff_step)
    theirs = run_abtem(args, atoms, spec, positions, n)

    result: dict[str, Any] = {"positions": []}
    # Potential: the first N x N pixels of our object frame, matched to abTEM's pixels.
    sd0 = ours["datasets"][0]
    offset = np.asarray(sd0.origin_A) / d
    if np.abs(offset - np.round(offset)).max() > 1e-6:
        raise RuntimeError(f"object origin {sd0.origin_A} is not on abTEM's pixels")
    shift = np.round(offset).astype(int) % n
    ours_potential = sd0.potential_VA[0, :n, :n].astype(np.float64)
    ab_potential = np.roll(theirs["potential"], (-shift[0], -shift[1]), axis=(0, 1))
    result["potential"] = {
        "relative_rms": relative_rms(ours_potential, ab_potential),
        "relative_rms_below_half_nyquist": relative_rms(
            low_pass(ours_potential, OUR_TAPER_START), low_pass(ab_potential, OUR_TAPER_START)
        ),
        "integral_ratio_ours_over_abtem": float(ours_potential.sum() / ab_potential.sum()),
        "max_VA": {"ours": float(ours_potential.max()), "abtem": float(ab_potential.max())},
        "mean_VA": {"ours": float(ours_potential.mean()), "abtem": float(ab_potential.mean())},
    }
    disk = centred_disk((n, n), ABTEM_ANTIALIAS)
    for index, (label, position) in enumerate(zip(labels, positions, strict=True)):
        ours_pattern = ours["datasets"][index].dataset.patterns[0, 0].astype(np.float64)
        ab_pattern = np.fft.fftshift(theirs["patterns"][index])
        flipped = np.fft.fftshift(theirs["patterns_flipped"][index])
        result["positions"].append(
            {
                "label": label,
                "position_yx_A": [float(position[0]), float(position[1])],
                "relative_rms_in_antialias_aperture": relative_rms(ours_pattern, ab_pattern, disk),
                "relative_rms_abtem_opposite_defocus_sign": relative_rms(ours_pattern, flipped, disk),
                "ours_intensity_outside_aperture": float(ours_pattern[~disk].sum()),
                "abtem_total_intensity": float(ab_pattern.sum()),
                "ours_total_intensity": float(ours_pattern.sum()),
            }
        )
    result["setup"] = {
        "specimen": str(Path(args.specimen).resolve().relative_to(REPO))
        if Path(args.specimen).resolve().is_relative_to(REPO)
        else str(args.specimen),
        "atoms": len(atoms),
        "cell_A": [float(v) for v in atoms.cell.lengths()],
        "kv": args.kv,
        "conv_angle_mrad": args.conv_angle,
        "defocus_C10_A": args.defocus,
        "abtem_defocus_A": -args.defocus,
        "pattern_size": n,
        "diff_step_mrad": diff_step,
        "sampling_A": d,
        "slice_thickness_A": args.slice_thickness,
        "slices": theirs["n_slices"],
        "debye_waller_u_rms_A": {k: B_to_u_rms(v) for k, v in spec.debye_waller_B().items()},
        "abtem_antialias_fraction_of_nyquist": ABTEM_ANTIALIAS,
    }
    result["timing_s"] = {
        "ours_3_positions": ours["seconds"],
        "abtem_inside": theirs["seconds_inside"],
        "abtem_wall_with_import": theirs["seconds_wall"],
    }
    result["versions"] = {"abtem": theirs["version"], "python": platform.python_version(), "numpy": np.__version__}
    return result


def format_report(result: dict[str, Any]) -> str:
    """A short plain-text summary."""
    pot = result["potential"]
    lines = [
        f"projected potential: relative RMS {pot['relative_rms']:.4f}, below half Nyquist "
        f"{pot['relative_rms_below_half_nyquist']:.5f}, integral ratio {pot['integral_ratio_ours_over_abtem']:.6f}, "
        f"max {pot['max_VA']['ours']:.1f} vs {pot['max_VA']['abtem']:.1f} V*A",
    ]
    for p in result["positions"]:
        lines.append(
            f"CBED at {p['label']:>16}: relative RMS {p['relative_rms_in_antialias_aperture']:.4f} "
            f"(abTEM with the opposite defocus sign: {p['relative_rms_abtem_opposite_defocus_sign']:.4f}); "
            f"ours outside abTEM's aperture {p['ours_intensity_outside_aperture']:.4f}, "
            f"abTEM total {p['abtem_total_intensity']:.4f}"
        )
    return "\n".join(lines)


def _command(argv: list[str] | None) -> str:
    return " ".join(["python benchmarks/simulation_check.py", *(sys.argv[1:] if argv is None else argv)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--specimen", type=Path, default=DEFAULT_SPECIMEN, help="specimen YAML with a square cell")
    parser.add_argument("--kv", type=float, default=200.0, help="accelerating voltage [kV]")
    parser.add_argument("--conv-angle", type=float, default=20.0, help="semi-convergence angle [mrad]")
    parser.add_argument("--defocus", type=float, default=-50.0, help="C10 [A] (ours; abTEM gets -C10)")
    parser.add_argument(
        "--pattern-size", type=int, nargs="+", default=[128, 256], help="pattern side(s) [px] (= pixels per cell)"
    )
    parser.add_argument("--slice-thickness", type=float, default=1.0, help="multislice slice thickness [A]")
    parser.add_argument("--abtem-python", type=Path, default=DEFAULT_ABTEM_PYTHON, help="python of the abTEM venv")
    parser.add_argument("--install", action="store_true", help="create the abTEM venv if it is missing")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "simulation_check.json")
    args = parser.parse_args(argv)

    ensure_abtem(args.abtem_python, args.install)
    runs = []
    for n in args.pattern_size:
        runs.append(compare(args, n))
        print(f"{n} x {n} px, sampling {runs[-1]['setup']['sampling_A']:.4f} A:")
        print(format_report(runs[-1]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"command": _command(argv), "runs": runs}, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
