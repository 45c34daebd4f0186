"""Independent 4D-STEM data of SrTiO3 [001] simulated by abTEM, with its ground truth and plans.

The specimen is cubic SrTiO3 (Pm-3m, a = 3.905 A at room temperature: M. Schmidbauer, A.
Kwasniewski, J. Schwarzkopf, Acta Cryst. B 68, 8-14 (2012)), built by ``ase.spacegroup.crystal``
and viewed along [001]. abTEM (1.0.11, its own virtual environment) computes the Kirkland
potential (``parametrization="kirkland"``, infinite projection, no thermal smearing and no frozen
phonons: the data come from exactly the potential stored as truth) sliced every a/2 with every
atom plane in the middle of its slice, and a multislice 4D-STEM scan of a probe with
``defocus=-C10``: abTEM's ``defocus`` is -C10, and ``defocus=+100`` focuses 100 A below the
entrance surface, which the abTEM run re-checks by propagating the probe through vacuum.

Full mode (default; ``--out``, default ``/tmp/abtem-data/``): 300 kV, 25 mrad, C10 = -100 A,
10 x 10 cells on a 0.0814 A grid (480 px), 32 x 32 raster of 0.366 A steps (fast axis x) centred on
the cell, patterns cropped and binned 3 x 3 to 64 x 64 pixels of 1.512 mrad (3 lambda / L, the
zero frequency in the middle of pixel (32, 32)), Poisson counts at 1e6 e/A^2. Two thicknesses:
"thin" (5 cells, 19.5 A) first, then ``READY_THIN``; then "thick" (32 cells, 125 A), the plans,
``README.md`` and last ``READY``. Each set is ``srtio3_<set>.npy`` (float32
``[scan_y, scan_x, k_y, k_x]`` counts, the ``manual`` loader's layout) and
``srtio3_<set>_truth.npz`` (projected potential [V*A], 8 slabs, sampling, scan positions in the
potential's frame; see :func:`truth_arrays`). The phaserem-format plans of the comparison go to
``--out`` with their data path filled in, and to ``benchmarks/abtem_srtio3_plans/`` with
``${DATA}`` left in; ``--check-plans`` runs each for 2 iterations in both packages. All four run on
jax, 30 iterations: gradient (Adam with Nesterov, learning rate 2e-2 object / 1e-2 probe, poisson,
grouping 64) on the thin set with 1 slice and on the thick set with 8; ePIE (grouping 16,
amplitude, beta 0.5) and LSQML (grouping 16, anscombe, beta 1, gamma 1e-4) on the thin set.

Repeatable: FFTW plans by estimate (the same algorithms every run), Poisson counts by the inverse
CDF of seeded uniforms (a last-bit change of one intensity cannot reshuffle the other counts).

``--debye-waller``: the chosen sets (``--sets``) with every atom smeared by its room-temperature
rms displacement (abTEM's ``KirklandParametrization(sigmas=...)``, :data:`SRTIO3_U_RMS_A`) in the
data and in the truth, written as ``srtio3_<set>_dw.npy``, ``srtio3_<set>_dw_truth.npz`` and the
plans ``<plan>_<set>_dw.yaml`` in ``--out`` (``README.md``, ``metadata.json`` and ``READY`` are left
as they are).

``--small``: a tiny dataset for a unit test (3 cells thick, 16 x 16 scan, 32 x 32 patterns, high
dose) written as one compressed ``tests/data/abtem_srtio3_small.npz`` with its truth and metadata.

:func:`score` gives the NCC of a reconstruction's summed phase against a truth file after
registration (shift, offset and ramp removed by :func:`phaser.metrics.align_to_truth`).

Run ``python benchmarks/abtem_srtio3.py --help``. abTEM runs in ``/tmp/abtem-venv``
(``--install`` creates it with ``pip install abtem==1.0.11``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import poisson

sys.path.insert(0, str(Path(__file__).resolve().parent))
import simulation_check  # noqa: E402  (the abTEM import check)

from phaser.metrics import align_to_truth, frame_offset_px, ncc, potential_to_phase, probe_radius_px  # noqa: E402
from phaser.physics.constants import electron_wavelength_A  # noqa: E402
from phaser.simulate.kirkland import B_to_u_rms  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ABTEM_VERSION = "1.0.11"
DEFAULT_ABTEM_PYTHON = Path("/tmp/abtem-venv/bin/python")
DEFAULT_OUT = Path("/tmp/abtem-data")
PLANS_DIR = REPO / "benchmarks" / "abtem_srtio3_plans"
SMALL_OUT = REPO / "tests" / "data" / "abtem_srtio3_small.npz"
# SrTiO3 lattice parameter [A] at room temperature: Schmidbauer et al., Acta Cryst. B 68, 8 (2012).
SRTIO3_A = 3.905
# Slabs of the truth: per-slice scores of an 8-slice reconstruction.
TRUTH_SLABS = 8


@dataclass(frozen=True)
class Setup:
    """One simulated dataset: specimen, optics, scan, detector and dose."""

    name: str
    cells_z: int
    """specimen thickness [unit cells along c]"""
    cells_xy: int = 10
    """lateral periodic supercell [unit cells]; its side L sets the detector pixel lambda/L"""
    gpts: int = 480
    """potential grid [px] over L; 480 = 2^5 * 3 * 5 (0.0814 A for 10 cells) FFTs 5x faster than 482 = 2 * 241"""
    kv: float = 300.0
    conv_angle_mrad: float = 25.0
    defocus_C10_A: float = -100.0
    """C10 [A]; abTEM gets defocus = -C10"""
    scan_shape: tuple[int, int] = (32, 32)
    scan_step_A: float = 0.366
    pattern_px: int = 64
    bin_factor: int = 3
    """simulated detector pixels binned per output pixel (odd: the zero frequency stays a pixel centre)"""
    dose_per_A2: float = 1e6
    seed: int = 0
    u_rms_A: tuple[tuple[str, float], ...] = ()
    """(element, rms displacement per axis [A]) pairs: a Debye-Waller smeared potential; empty: sharp atoms"""

    @property
    def lattice_A(self) -> float:
        return SRTIO3_A

    @property
    def side_A(self) -> float:
        return self.cells_xy * SRTIO3_A

    @property
    def thickness_A(self) -> float:
        return self.cells_z * SRTIO3_A

    @property
    def sampling_A(self) -> float:
        return self.side_A / self.gpts

    @property
    def diff_step_mrad(self) -> float:
        """Output detector pixel [mrad]: ``bin_factor`` simulated pixels of lambda / L each."""
        return self.bin_factor * electron_wavelength_A(self.kv) / self.side_A * 1e3

    @property
    def dose_per_pattern(self) -> float:
        return self.dose_per_A2 * self.scan_step_A**2

    @property
    def scan_start_A(self) -> float:
        """First scan position (y and x) [A]: the raster is centred on the supercell."""
        return 0.5 * (self.side_A - (self.scan_shape[0] - 1) * self.scan_step_A)


THIN = Setup("thin", cells_z=5)
THICK = Setup("thick", cells_z=32)
# Room-temperature Debye-Waller factors of SrTiO3 as in ground_truth/SrTiO3_001.yaml: approximate
# typical room-temperature values B = 0.6 (Sr), 0.4 (Ti), 0.7 (O) A^2 (not taken from one source),
# as rms displacements per axis u = sqrt(B / (8 pi^2)): 0.0872, 0.0712, 0.0942 A.
SRTIO3_U_RMS_A = tuple((element, B_to_u_rms(b)) for element, b in (("Sr", 0.6), ("Ti", 0.4), ("O", 0.7)))
# 6 cells: 2.52 mrad pixels (32 px span +-40 mrad) and a 7.8 A probe window holding the
# C10 = -50 A probe (disc radius ~1.3 A); 16 x 16 steps of 0.4 A cover 1.5 cells.
SMALL = Setup(
    "small",
    cells_z=3,
    cells_xy=6,
    gpts=288,
    defocus_C10_A=-50.0,
    scan_shape=(16, 16),
    scan_step_A=0.4,
    pattern_px=32,
    dose_per_A2=1e7,
)


ABTEM_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    import numpy as np
    import abtem, ase
    from abtem.parametrizations import KirklandParametrization
    from ase.spacegroup import crystal

    cfg = json.load(open(sys.argv[1]))
    # FFTW_ESTIMATE: the same FFT algorithms (and so the same rounding) on every run
    abtem.config.set({"precision": "float32", "device": "cpu", "diagnostics.progress_bar": False,
                      "fftw.planning_effort": "FFTW_ESTIMATE"})
    a = cfg["lattice_A"]
    unit = crystal(["Sr", "Ti", "O"], basis=[(0, 0, 0), (0.5, 0.5, 0.5), (0.5, 0.5, 0)],
                   spacegroup=221, cellpar=[a, a, a, 90, 90, 90])
    atoms = unit * (cfg["cells_xy"], cfg["cells_xy"], cfg["cells_z"])
    atoms.positions[:, 2] += a / 4  # every atom plane in the middle of its a/2 slice
    gpts = (cfg["gpts"], cfg["gpts"])
    out = {}
    # sigmas: rms displacement per axis [A] per element, the Debye-Waller smearing of each atom
    kirkland = KirklandParametrization(sigmas=cfg["sigmas"]) if cfg["sigmas"] else "kirkland"
    start = time.perf_counter()
    potential = abtem.Potential(atoms, gpts=gpts, slice_thickness=a / 2,
                                parametrization=kirkland, projection="infinite").build().compute()
    out["potential_xy"] = potential.project().compute().array
    slabs = abtem.Potential(atoms, gpts=gpts, slice_thickness=atoms.cell[2, 2] / cfg["slabs"],
                            parametrization=kirkland, projection="infinite").build().compute()
    out["slabs_xy"] = slabs.array
    out["slice_thicknesses"] = np.asarray(potential.slice_thickness)
    out["seconds_potential"] = np.array(time.perf_counter() - start)

    probe = abtem.Probe(semiangle_cutoff=cfg["conv_angle_mrad"], energy=cfg["energy_eV"],
                        defocus=cfg["abtem_defocus_A"])
    probe.grid.match(potential)
    n = cfg["scan_shape"]  # (y, x)
    s0, step = cfg["scan_start_A"], cfg["scan_step_A"]
    scan = abtem.GridScan(start=(s0, s0), end=(s0 + n[1] * step, s0 + n[0] * step),
                          gpts=(n[1], n[0]), endpoint=False)  # abTEM axes: x first
    out["positions_xy"] = scan.get_positions()
    start = time.perf_counter()
    measured = probe.scan(potential, scan=scan,
                          detectors=abtem.PixelatedDetector(max_angle=cfg["max_angle_mrad"])).compute()
    out["seconds_multislice"] = np.array(time.perf_counter() - start)
    out["patterns_xy"] = measured.array  # (scan_x, scan_y, k_x, k_y), fftshifted
    out["angular_sampling_mrad"] = np.asarray(measured.angular_sampling)
    out["incident_total"] = np.array(probe.build().diffraction_patterns(max_angle="full").compute().array.sum())

    # the sign convention: the vacuum probe's peak intensity at the entrance and |defocus| below it
    depth = abs(cfg["abtem_defocus_A"])
    peaks = []
    for dz in (1e-3, depth):
        vacuum = abtem.Potential(ase.Atoms(cell=[potential.extent[0], potential.extent[1], dz]),
                                 gpts=gpts, slice_thickness=dz / 4)
        wave = probe.multislice(vacuum).compute().array
        intensity = np.abs(wave) ** 2
        peaks.append(float(intensity.max() / intensity.sum()))
    out["vacuum_peak_fraction"] = np.array(peaks)
    out["version"] = np.array(abtem.__version__)
    np.savez(cfg["out"], **out)
    """
)


def ensure_abtem(python: Path, install: bool) -> None:
    """Create the abTEM venv (pinned version) when ``install`` and it is missing, then check it imports."""
    if not python.exists() and install:
        venv = python.parent.parent
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", f"abtem=={ABTEM_VERSION}"], check=True)
    simulation_check.ensure_abtem(python, install=False)


def run_abtem(setup: Setup, python: Path) -> dict[str, Any]:
    """abTEM's potential, slabs, scan positions and cropped patterns (its own (x, y) axes)."""
    max_angle = (setup.pattern_px // 2 + 1) * setup.diff_step_mrad + 1.0
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        config = {
            "lattice_A": setup.lattice_A,
            "cells_xy": setup.cells_xy,
            "cells_z": setup.cells_z,
            "gpts": setup.gpts,
            "slabs": TRUTH_SLABS,
            "conv_angle_mrad": setup.conv_angle_mrad,
            "energy_eV": setup.kv * 1e3,
            "abtem_defocus_A": -setup.defocus_C10_A,  # abTEM's defocus is -C10
            "scan_shape": list(setup.scan_shape),
            "scan_start_A": setup.scan_start_A,
            "scan_step_A": setup.scan_step_A,
            "max_angle_mrad": max_angle,
            "sigmas": dict(setup.u_rms_A),
            "out": str(tmp_path / "abtem.npz"),
        }
        (tmp_path / "config.json").write_text(json.dumps(config))
        (tmp_path / "run_abtem.py").write_text(ABTEM_SCRIPT)
        start = time.perf_counter()
        subprocess.run([str(python), "run_abtem.py", "config.json"], check=True, cwd=tmp)
        wall = time.perf_counter() - start
        with np.load(tmp_path / "abtem.npz") as data:
            result = {key: data[key] for key in data.files}
    result["seconds_wall"] = wall
    return result


def crop_and_bin(patterns: np.ndarray, pattern_px: int, factor: int) -> np.ndarray:
    """Centred ``(..., G, G)`` patterns (zero frequency at ``G // 2``) summed over ``factor`` x
    ``factor`` blocks into ``(..., pattern_px, pattern_px)`` with the zero frequency in the middle
    of output pixel ``pattern_px // 2``."""
    if factor % 2 != 1:
        raise ValueError(f"bin factor {factor} must be odd to keep the zero frequency at a pixel centre")
    size = patterns.shape[-1]
    first = size // 2 - (pattern_px // 2 * factor + factor // 2)
    last = first + pattern_px * factor
    if first < 0 or last > size or patterns.shape[-2] != size:
        raise ValueError(f"patterns of {patterns.shape[-2:]} px cannot give {pattern_px} px binned by {factor}")
    region = np.asarray(patterns[..., first:last, first:last], dtype=np.float64)
    return region.reshape(*region.shape[:-2], pattern_px, factor, pattern_px, factor).sum(axis=(-3, -1))


def poisson_counts(mean: np.ndarray, seed: int) -> np.ndarray:
    """Poisson counts (float32) of ``mean`` by the inverse CDF of one uniform number per pixel: a
    rounding-level change of one mean changes at most that pixel's count, so the data do not hang on
    the last bit of the simulation."""
    uniform = np.random.default_rng(seed).random(mean.shape)
    return np.maximum(poisson.ppf(uniform, mean), 0.0).astype(np.float32)


def dataset_arrays(setup: Setup, raw: dict[str, Any]) -> dict[str, np.ndarray]:
    """Counts ``[scan_y, scan_x, k_y, k_x]`` (float32) and truth arrays in (y, x) order from abTEM's
    (x, y) arrays."""
    sampling = raw["angular_sampling_mrad"]
    expected = setup.diff_step_mrad / setup.bin_factor
    if not np.allclose(sampling, expected, rtol=1e-4):
        raise RuntimeError(f"abTEM's angular sampling {sampling} mrad differs from lambda/L = {expected:.5f}")
    intensity = crop_and_bin(raw["patterns_xy"], setup.pattern_px, setup.bin_factor) / float(raw["incident_total"])
    intensity = np.transpose(intensity, (1, 0, 3, 2))  # (x, y, kx, ky) -> (y, x, ky, kx)
    counts = poisson_counts(np.clip(intensity, 0.0, None) * setup.dose_per_pattern, setup.seed)
    positions_yx = np.transpose(raw["positions_xy"], (1, 0, 2))[..., ::-1].reshape(-1, 2)
    return {
        "patterns": counts,
        "detected_fraction": np.array(float(intensity.sum(axis=(-2, -1)).mean())),
        **truth_arrays(setup, raw, positions_yx),
    }


def truth_arrays(setup: Setup, raw: dict[str, Any], positions_yx: np.ndarray) -> dict[str, np.ndarray]:
    """The truth: ``potential_VA`` ``(Ny, Nx)`` projected over the whole thickness [V*A], ``slabs_VA``
    ``(8, Ny, Nx)`` over 8 equal slabs from the entrance surface, ``sampling_A`` ``(dy, dx)``,
    ``positions_A`` ``(P, 2)`` the scan positions (y, x) [A] in that frame (pixel (i, j) at
    (i dy, j dx), raster order, fast x), and ``phase_rad`` = sigma(kv) * potential_VA."""
    potential = np.asarray(raw["potential_xy"], dtype=np.float32).T
    slabs = np.swapaxes(np.asarray(raw["slabs_xy"], dtype=np.float32), -2, -1)
    return {
        "potential_VA": potential,
        "slabs_VA": slabs,
        "phase_rad": potential_to_phase(potential, setup.kv).astype(np.float32),
        "sampling_A": np.array([setup.sampling_A, setup.sampling_A]),
        "positions_A": np.asarray(positions_yx, dtype=np.float64),
        "slab_thickness_A": np.array(setup.thickness_A / TRUTH_SLABS),
    }


def metadata(setup: Setup, raw: dict[str, Any]) -> dict[str, Any]:
    """Numbers describing a dataset (JSON-ready)."""
    return {
        **{k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(setup).items()},
        "lattice_A": setup.lattice_A,
        "side_A": setup.side_A,
        "thickness_A": setup.thickness_A,
        "sampling_A": setup.sampling_A,
        "diff_step_mrad": setup.diff_step_mrad,
        "abtem_defocus_A": -setup.defocus_C10_A,
        "dose_per_pattern": setup.dose_per_pattern,
        "scan_start_A": setup.scan_start_A,
        "simulation_slices": len(raw["slice_thicknesses"]),
        "simulation_slice_A": float(raw["slice_thicknesses"][0]),
        "vacuum_peak_fraction_entrance_and_at_depth": [float(v) for v in raw["vacuum_peak_fraction"]],
        "abtem_version": str(raw["version"]),
        "seconds": {
            "potential": float(raw["seconds_potential"]),
            "multislice": float(raw["seconds_multislice"]),
            "abtem_wall_with_import": float(raw["seconds_wall"]),
        },
    }


def check_focus(meta: dict[str, Any]) -> None:
    """Refuse data whose probe does not focus below the entrance for C10 < 0 (or above for C10 > 0)."""
    entrance, at_depth = meta["vacuum_peak_fraction_entrance_and_at_depth"]
    if (at_depth > entrance) != (meta["defocus_C10_A"] < 0):
        raise RuntimeError(f"abTEM's defocus sign is not -C10: vacuum peak {entrance:.3g} -> {at_depth:.3g}")


def simulate_set(setup: Setup, python: Path, out: Path) -> dict[str, Any]:
    """Simulate one full-size set and write ``srtio3_<name>.npy`` and ``srtio3_<name>_truth.npz``."""
    raw = run_abtem(setup, python)
    meta = metadata(setup, raw)
    check_focus(meta)
    arrays = dataset_arrays(setup, raw)
    np.save(out / f"srtio3_{setup.name}.npy", arrays.pop("patterns"))
    meta["detected_fraction"] = float(arrays.pop("detected_fraction"))
    np.savez(
        out / f"srtio3_{setup.name}_truth.npz",
        **arrays,
        kv=np.array(setup.kv),
        thickness_A=np.array(setup.thickness_A),
        metadata=np.array(json.dumps(meta)),
    )
    print(
        f"{setup.name}: {setup.thickness_A:.2f} A, {meta['simulation_slices']} slices, abTEM potential "
        f"{meta['seconds']['potential']:.1f} s, multislice {meta['seconds']['multislice']:.1f} s, wall "
        f"{meta['seconds']['abtem_wall_with_import']:.1f} s; detected fraction {meta['detected_fraction']:.4f}"
    )
    return meta


def simulate_small(python: Path, out: Path) -> dict[str, Any]:
    """Simulate :data:`SMALL` and write one compressed ``.npz`` (patterns, truth, metadata)."""
    raw = run_abtem(SMALL, python)
    meta = metadata(SMALL, raw)
    check_focus(meta)
    arrays = dataset_arrays(SMALL, raw)
    arrays.pop("slabs_VA")  # a single-slice test needs the projection only
    meta["detected_fraction"] = float(arrays.pop("detected_fraction"))
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        out,
        patterns=arrays["patterns"],
        truth_potential_VA=arrays["potential_VA"],
        truth_sampling_A=arrays["sampling_A"],
        truth_positions_A=arrays["positions_A"],
        kv=np.array(SMALL.kv),
        diff_step_mrad=np.array(SMALL.diff_step_mrad),
        scan_step_A=np.array(SMALL.scan_step_A),
        conv_angle_mrad=np.array(SMALL.conv_angle_mrad),
        defocus_C10_A=np.array(SMALL.defocus_C10_A),
        thickness_A=np.array(SMALL.thickness_A),
        dose_per_A2=np.array(SMALL.dose_per_A2),
        metadata=np.array(json.dumps(meta)),
    )
    wall = meta["seconds"]["abtem_wall_with_import"]
    print(f"small: wrote {out} ({out.stat().st_size / 1e6:.2f} MB), abTEM wall {wall:.1f} s")
    return meta


# ---------------------------------------------------------------- plans


def _engine_common(niter: int, grouping: int) -> dict[str, Any]:
    return {
        "niter": niter,
        "probe_modes": 1,
        "update_probe": True,
        "save": False,
        "save_images": False,
        "group_constraints": [],
        "iter_constraints": [],
        "grouping": grouping,
    }


def plans(thin: Setup, thick: Setup, niter: int = 30) -> dict[str, dict[str, Any]]:
    """The four phaserem-format plans of the comparison (``${DATA}`` is the data folder)."""

    def base(name: str, setup: Setup, engine: dict[str, Any]) -> dict[str, Any]:
        plan: dict[str, Any] = {
            "name": name,
            "backend": "jax",
            "dtype": "float32",
            "raw_data": {
                "type": "manual",
                "path": f"${{DATA}}/srtio3_{setup.name}.npy",
                "diff_step": round(setup.diff_step_mrad, 6),
                "kv": setup.kv,
                "adu": 1.0,
            },
            "init": {
                "probe": {"type": "focused", "conv_angle": setup.conv_angle_mrad, "defocus": setup.defocus_C10_A},
                "scan": {"type": "raster", "shape": list(setup.scan_shape), "step_size": setup.scan_step_A},
            },
        }
        if setup.cells_z > thin.cells_z:
            plan["slices"] = {"n": TRUTH_SLABS, "total_thickness": round(setup.thickness_A, 4)}
        plan["engines"] = [engine]
        return plan

    adam = {
        "object": {"type": "adam", "learning_rate": 0.02, "nesterov": True},
        "probe": {"type": "adam", "learning_rate": 0.01, "nesterov": True},
    }
    gradient = {
        "type": "gradient",
        **_engine_common(niter, 64),
        "noise_model": {"type": "poisson", "eps": 0.1},
        "solvers": adam,
        "regularizers": [],
    }
    epie = {
        "type": "conventional",
        **_engine_common(niter, 16),
        "noise_model": {"type": "amplitude", "eps": 0.1},
        "solver": {"type": "epie", "beta_object": 0.5, "beta_probe": 0.5},
    }
    lsqml = {
        "type": "conventional",
        **_engine_common(niter, 16),
        "noise_model": {"type": "anscombe", "eps": 0.1},
        "solver": {
            "type": "lsqml",
            "beta_object": 1.0,
            "beta_probe": 1.0,
            "gamma": 0.0001,
            "illum_reg_object": 0.01,
            "illum_reg_probe": 0.01,
        },
    }
    return {
        f"grad_1slice_{thin.name}": base(f"grad_1slice_{thin.name}", thin, gradient),
        f"grad_8slice_{thick.name}": base(f"grad_8slice_{thick.name}", thick, gradient),
        f"epie_1slice_{thin.name}": base(f"epie_1slice_{thin.name}", thin, epie),
        f"lsqml_1slice_{thin.name}": base(f"lsqml_1slice_{thin.name}", thin, lsqml),
    }


def plan_yaml(plan: dict[str, Any], data: str | None = None) -> str:
    """``plan`` as YAML, with ``${DATA}`` replaced by ``data`` when given."""
    import yaml

    text = yaml.safe_dump(plan, sort_keys=False)
    return text if data is None else text.replace("${DATA}", data)


def write_plans(all_plans: dict[str, dict[str, Any]], out: Path, plans_dir: Path | None) -> None:
    """The plans into ``out`` (data path filled in) and ``plans_dir`` (``${DATA}`` left in)."""
    for name, plan in all_plans.items():
        (out / f"{name}.yaml").write_text(plan_yaml(plan, str(out)))
        if plans_dir is not None:
            plans_dir.mkdir(parents=True, exist_ok=True)
            (plans_dir / f"{name}.yaml").write_text(plan_yaml(plan))


def check_plans(
    all_plans: dict[str, dict[str, Any]], out: Path, phaserem: Path, niter: int = 2
) -> dict[str, dict[str, Any]]:
    """Run every plan for ``niter`` iterations with phaserem's ``phaser run`` and ours; exit codes and seconds."""
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, plan in all_plans.items():
            short = json.loads(json.dumps(plan))
            short["engines"][0]["niter"] = niter
            path = Path(tmp) / f"{name}.yaml"
            path.write_text(plan_yaml(short, str(out)))
            results[name] = {}
            for label, command in (("phaserem", [str(phaserem), "run", str(path)]), ("ours", _our_run(path))):
                start = time.perf_counter()
                done = subprocess.run(command, cwd=tmp, capture_output=True, text=True)
                results[name][label] = {"rc": done.returncode, "seconds": round(time.perf_counter() - start, 1)}
                if done.returncode != 0:
                    results[name][label]["tail"] = (done.stdout + done.stderr)[-2000:]
                print(f"{name} {label}: rc {done.returncode} in {results[name][label]['seconds']} s")
    return results


def _our_run(path: Path) -> list[str]:
    return [sys.executable, "-m", "phaser", "run", str(path)]


# ---------------------------------------------------------------- scoring


def score(
    object_slices: Any,
    positions_A: Any,
    sampling_A: tuple[float, float],
    probe_modes: Any,
    truth: dict[str, Any],
    kv: float,
) -> dict[str, Any]:
    """NCC of a reconstruction against a truth file's arrays (``np.load`` of ``*_truth.npz``).

    The summed phase of ``object_slices`` ``(S, Ny, Nx)`` [complex] is registered on
    sigma(kv) * ``potential_VA`` (sub-pixel shift, offset and ramp; the truth resampled onto the
    reconstruction grid and placed by the scan positions) inside the region within the probe's
    half-intensity radius of a position; with 8 slices, each slice is scored against its slab with
    the projection's shift. Returns ``ncc``, ``per_slice`` (or None) and the fitted ``shift_px``.
    """
    slices = np.asarray(object_slices)
    slices = slices[None] if slices.ndim == 2 else slices
    phases = np.angle(slices)
    positions = np.asarray(positions_A, dtype=np.float64)
    common = dict(
        sampling_A=tuple(float(v) for v in sampling_A),
        truth_sampling_A=tuple(float(v) for v in truth["sampling_A"]),
        truth_offset_px=frame_offset_px(positions, truth["positions_A"], sampling_A),
    )
    positions_px = positions / np.asarray(sampling_A, dtype=np.float64)
    radius = probe_radius_px(probe_modes)
    truth_phase = potential_to_phase(np.asarray(truth["potential_VA"], dtype=np.float64), kv)
    pair = align_to_truth(phases.sum(axis=0), truth_phase, positions_px, radius, **common)
    result: dict[str, Any] = {"ncc": ncc(pair.image_aligned, pair.reference, pair.mask), "shift_px": pair.shift}
    result["per_slice"] = None
    slabs = np.asarray(truth["slabs_VA"], dtype=np.float64) if "slabs_VA" in truth else None
    if slabs is not None and phases.shape[0] == slabs.shape[0] > 1:
        result["per_slice"] = []
        for phase, slab in zip(phases, slabs, strict=True):
            one = align_to_truth(phase, potential_to_phase(slab, kv), positions_px, radius, shift=pair.shift, **common)
            result["per_slice"].append(ncc(one.image_aligned, one.reference, one.mask))
    return result


# ---------------------------------------------------------------- main


README = """# SrTiO3 [001] simulated by abTEM {version}

Made by `{command}` ({date}); abTEM in its own venv. Specimen: SrTiO3, Pm-3m, a = 3.905 A
(Schmidbauer et al., Acta Cryst. B 68, 8 (2012)), `ase.spacegroup.crystal`, {cells_xy} x {cells_xy}
cells laterally (periodic, {side_A:.3f} A), atom planes in the middle of a/2 slices.
Potential: Kirkland parametrization, infinite projection, {gpts} x {gpts} px of {sampling_A:.5f} A,
slices of a/2 = {slice:.4f} A; no thermal smearing, no frozen phonons.
Probe: {kv:g} kV, {conv:g} mrad, C10 = {c10:g} A (abTEM `defocus={abdef:g}`: the crossover is
{depth:g} A below the entrance surface; checked: vacuum peak intensity fraction at the entrance
{peak0:.2e}, {depth:g} A below {peak1:.2e}). In the original package's plans `defocus` is C10: {c10:g}.
Scan: {ny} x {nx} raster, fast axis x, step {step:g} A, first position ({start:.4f}, {start:.4f}) A
in the potential's frame (centred on the cell).
Detector: abTEM patterns (pixel lambda/L = {fine:.5f} mrad) cropped and binned {b} x {b} to
{px} x {px} px of **{diff:.6f} mrad** (zero frequency in the middle of pixel ({half}, {half})), normalised
to the incident probe, then Poisson counts at {dose:g} e/A^2 ({dpp:.4g} e per pattern, seed {seed}).

Files:
- `srtio3_thin.npy`, `srtio3_thick.npy`: float32 `[scan_y, scan_x, k_y, k_x]` counts (the
  `manual` loader's layout);
- `srtio3_<set>_truth.npz`: `potential_VA` (Ny, Nx) projected over the whole thickness [V*A];
  `slabs_VA` (8, Ny, Nx) over 8 equal slabs from the entrance; `phase_rad` = sigma * potential;
  `sampling_A` (dy, dx); `positions_A` (P, 2) the scan positions (y, x) [A] in that frame (pixel
  (i, j) at (i dy, j dx); raster order, fast x); `slab_thickness_A`, `thickness_A`, `kv`;
  `metadata` (a JSON string: every number above and the timings);
- `metadata.json`: the same numbers for both sets;
- `*.yaml`: phaserem-format plans with the data path filled in: {plan_names};
- `plan_checks.json` (with `--check-plans`): each plan run for 2 iterations in both packages;
- `READY_THIN`, then `READY`: written when the thin set, then everything, is complete.

Sets:
{sets}

Timings: abTEM float32 on the CPU of the machine that made the data (shared with other jobs).

Scoring: `score()` in `benchmarks/abtem_srtio3.py` (NCC of the summed phase against sigma *
`potential_VA` after sub-pixel registration, offset and ramp removal with `phaser.metrics`, inside
the probe's half-intensity radius of the scan positions; per slab with 8 slices):

```python
import sys; import numpy as np; sys.path.insert(0, "benchmarks")
from abtem_srtio3 import score
truth = dict(np.load("{out}/srtio3_thick_truth.npz"))
score(state.object_slices, state.positions_A, state.sampling_A, state.probe_modes, truth, kv=300.0)
# -> {{"ncc": ..., "per_slice": [...] (8 slices) or None, "shift_px": (dy, dx)}}
```
For the thin set the 8 slabs cut its 10 atom planes unevenly (two planes lie on slab boundaries;
abTEM puts each in one slab): per-slab scores are meant for the thick set (8 planes per slab).
"""


def write_readme(out: Path, metas: dict[str, dict[str, Any]], plan_names: list[str], command: str) -> None:
    """``README.md`` of the output folder."""
    m = metas["thin"]
    sets = "\n".join(
        f"- `{name}`: {meta['cells_z']} cells = {meta['thickness_A']:.3f} A, {meta['simulation_slices']} slices; "
        f"abTEM potential {meta['seconds']['potential']:.1f} s, multislice {meta['seconds']['multislice']:.1f} s "
        f"(wall with import {meta['seconds']['abtem_wall_with_import']:.1f} s); detected fraction "
        f"{meta['detected_fraction']:.4f}"
        for name, meta in metas.items()
    )
    text = README.format(
        version=m["abtem_version"],
        command=command,
        date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        cells_xy=m["cells_xy"],
        side_A=m["side_A"],
        gpts=m["gpts"],
        sampling_A=m["sampling_A"],
        slice=m["simulation_slice_A"],
        kv=m["kv"],
        conv=m["conv_angle_mrad"],
        c10=m["defocus_C10_A"],
        abdef=m["abtem_defocus_A"],
        depth=abs(m["defocus_C10_A"]),
        peak0=m["vacuum_peak_fraction_entrance_and_at_depth"][0],
        peak1=m["vacuum_peak_fraction_entrance_and_at_depth"][1],
        ny=m["scan_shape"][0],
        nx=m["scan_shape"][1],
        step=m["scan_step_A"],
        start=m["scan_start_A"],
        fine=m["diff_step_mrad"] / m["bin_factor"],
        b=m["bin_factor"],
        px=m["pattern_px"],
        diff=m["diff_step_mrad"],
        half=m["pattern_px"] // 2,
        dose=m["dose_per_A2"],
        dpp=m["dose_per_pattern"],
        seed=m["seed"],
        plan_names=", ".join(f"`{n}.yaml`" for n in plan_names),
        sets=sets,
        out=out,
    )
    (out / "README.md").write_text(text)


def debye_waller_setups() -> tuple[Setup, Setup]:
    """The thin and thick sets with the room-temperature Debye-Waller smeared potential (``<set>_dw``)."""
    return tuple(replace(s, name=f"{s.name}_dw", u_rms_A=SRTIO3_U_RMS_A) for s in (THIN, THICK))  # type: ignore[return-value]


def simulate_debye_waller(names: list[str], python: Path, install: bool, out: Path, plans_dir: Path | None) -> None:
    """The ``names`` sets with the room-temperature Debye-Waller smeared potential as ``<set>_dw``,
    and the plans of the sets present, into ``out`` (and as ``${DATA}`` templates into ``plans_dir``)."""
    dw = dict(zip(("thin", "thick"), debye_waller_setups(), strict=True))
    ensure_abtem(python, install)
    for name in names:
        simulate_set(dw[name], python, out)
    present = {s.name for s in dw.values() if (out / f"srtio3_{s.name}.npy").exists()}
    chosen = {n: p for n, p in plans(dw["thin"], dw["thick"]).items() if n.split("_", 2)[2] in present}
    write_plans(chosen, out, plans_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder of the full sets")
    parser.add_argument(
        "--small", action="store_true", help=f"write the small test set to {SMALL_OUT.relative_to(REPO)}"
    )
    parser.add_argument("--small-out", type=Path, default=SMALL_OUT, help="where --small writes")
    parser.add_argument("--sets", nargs="+", choices=["thin", "thick"], default=["thin", "thick"])
    parser.add_argument("--abtem-python", type=Path, default=DEFAULT_ABTEM_PYTHON, help="python of the abTEM venv")
    parser.add_argument(
        "--install", action="store_true", help=f"create the abTEM venv (abtem=={ABTEM_VERSION}) if missing"
    )
    parser.add_argument("--plans-only", action="store_true", help="write the plans (and README if possible) only")
    parser.add_argument("--plans-dir", type=Path, default=PLANS_DIR, help="where the ${DATA} plan templates go")
    parser.add_argument("--check-plans", action="store_true", help="run each plan 2 iterations in both packages")
    parser.add_argument("--phaserem", type=Path, default=Path("/tmp/phaserem/bin/phaser"), help="phaserem's CLI")
    parser.add_argument(
        "--debye-waller",
        action="store_true",
        help="Debye-Waller smeared potential (data and truth): sets and plans named with a _dw suffix, "
        "written to --out only (README, metadata.json and READY untouched)",
    )
    args = parser.parse_args(argv)
    command = " ".join(["python benchmarks/abtem_srtio3.py", *(sys.argv[1:] if argv is None else argv)])

    if args.small:
        ensure_abtem(args.abtem_python, args.install)
        simulate_small(args.abtem_python, args.small_out)
        return 0

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    if args.debye_waller:
        simulate_debye_waller(args.sets, args.abtem_python, args.install, out, args.plans_dir)
        return 0
    all_plans = plans(THIN, THICK)
    metas_path = out / "metadata.json"
    metas: dict[str, dict[str, Any]] = json.loads(metas_path.read_text()) if metas_path.exists() else {}
    if not args.plans_only:
        ensure_abtem(args.abtem_python, args.install)
        for name in args.sets:
            (out / "READY").unlink(missing_ok=True)
            if name == "thin":
                (out / "READY_THIN").unlink(missing_ok=True)
            setup = {"thin": THIN, "thick": THICK}[name]
            metas[name] = simulate_set(setup, args.abtem_python, out)
            metas_path.write_text(json.dumps(metas, indent=2) + "\n")
            write_plans(all_plans, out, args.plans_dir)
            write_readme(out, {k: metas[k] for k in ("thin", "thick") if k in metas}, list(all_plans), command)
            if name == "thin":
                (out / "READY_THIN").touch()
    write_plans(all_plans, out, args.plans_dir)
    if args.check_plans:
        checks = check_plans(all_plans, out, args.phaserem)
        (out / "plan_checks.json").write_text(json.dumps(checks, indent=2) + "\n")
    if "thin" in metas and not (args.plans_only and (out / "README.md").exists()):
        ordered = {k: metas[k] for k in ("thin", "thick") if k in metas}
        write_readme(out, ordered, list(all_plans), command)
    if all((out / f"srtio3_{n}.npy").exists() for n in ("thin", "thick")):
        (out / "READY").touch()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
