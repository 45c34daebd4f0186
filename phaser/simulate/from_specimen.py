"""4D-STEM datasets of a specimen described in YAML, with its ground-truth potential.

The specimen (:mod:`phaser.simulate.specimen`) is periodic laterally with its cell ``(Lx, Ly)``.
Its projected-potential slices [V*A] are computed on the cell (Kirkland parametrization,
:mod:`phaser.simulate.potentials`) and evaluated as a Fourier series at the pixels of the
simulation's object frame, whose pixel size is the simulation sampling ``wavelength / (N * diff_step)``:
the object is the periodically continued specimen, as large as the scan needs, with no seam. The
scan centre (object pixel ``(Ny//2, Nx//2)``) sits at the cell's centre unless ``scan_centre_A``
says otherwise. Each slice's transmission is ``exp(i sigma V)`` (pure phase, sigma from
:func:`phaser.physics.constants.interaction_constant`) and the patterns come from the multislice
forward model of :func:`phaser.simulate.dataset.simulate_dataset`.

Thermal vibrations: ``frozen_phonons=0`` smears every atom with its Debye-Waller factor (one
potential); ``n > 0`` averages the noiseless intensities of ``n`` configurations of randomly
displaced atoms (seeded). Poisson noise is drawn once, on the average.

Files (:func:`write_specimen_dataset`): the layout of :func:`phaser.simulate.files.write_dataset`
(``truth/object`` the fine-sliced, Debye-Waller-smeared transmission) plus ``truth/potential_VA``
(float32 ``(S, Ny, Nx)`` [V*A]): the Debye-Waller-smeared projected potential of each
reconstruction slice (atoms with ``s * dz <= z < (s + 1) * dz``, ``dz = recon_slice_thickness_A``;
one slice of the whole specimen by default) on the object frame, band-limited at the object
grid's Nyquist frequency (computed on a grid ``fourier_crop_factor`` times finer and
Fourier-cropped, :mod:`phaser.simulate.truth`). Its attributes are listed in
:data:`POTENTIAL_ATTRS`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from phaser.physics.aberrations import Aberration
from phaser.physics.constants import electron_wavelength_A, interaction_constant
from phaser.physics.grids import real_space_sampling_A
from phaser.physics.scan import raster_positions_A
from phaser.simulate.dataset import SimulatedDataset, required_object_shape, simulate_dataset
from phaser.simulate.files import write_dataset
from phaser.simulate.objects import transmission
from phaser.simulate.potentials import projected_potential_slices
from phaser.simulate.specimen import Specimen, build_atoms
from phaser.simulate.truth import band_limited_potential, default_factor, periodic_on_grid, resolve_specimen

# Bound on the complex elements of one batch's object patches, (batch, S, N, N): keeps memory ~128 MB.
_MAX_PATCH_ELEMENTS = 8_000_000

POTENTIAL_ATTRS = {
    "unit": "V*A",
    "slice_thickness_A": "thickness [A] of each slice (the last may be partly empty)",
    "slice_z_A": "entrance depth [A] of each slice below the top of the specimen cell",
    "sampling_A": "pixel size (dy, dx) [A], the truth object's",
    "origin_A": "specimen coordinates (y, x) [A] of object pixel (0, 0)",
    "cell_A": "specimen cell (Lx, Ly, Lz) [A]",
    "fine_slice_thickness_A": "slice thickness [A] of the simulation",
    "frozen_phonons": "configurations averaged (0: Debye-Waller smeared potential)",
    "interaction_constant": "sigma [rad/(V*A)] at the dataset's kV: phase = sigma * V",
    "specimen_name": "the specimen's name",
    "specimen_yaml": "the specimen description (YAML)",
    "fourier_crop_factor": "computed on a grid this many times finer, then Fourier-cropped to sampling_A",
}


@dataclass(frozen=True)
class SpecimenDataset:
    """A simulated dataset of a specimen and its ground truth.

    Attributes
    ----------
    dataset
        The patterns, probe, positions and truth object (fine-sliced, Debye-Waller-smeared
        transmission) as :class:`phaser.simulate.dataset.SimulatedDataset`.
    potential_VA
        float32 ``(S, Ny, Nx)`` [V*A] projected potential of each reconstruction slice on the
        object frame (Debye-Waller smeared).
    recon_slice_thickness_A
        Thickness [A] of the slices of ``potential_VA``.
    specimen
        The specimen description.
    specimen_yaml
        Its YAML text (the file's, when read from one).
    cell_A
        Specimen cell ``(Lx, Ly, Lz)`` [A].
    origin_A
        Specimen coordinates ``(y, x)`` [A] of object pixel ``(0, 0)``.
    frozen_phonons
        Configurations averaged (0: Debye-Waller smeared potential).
    fourier_crop_factor
        ``potential_VA`` was computed on a grid this many times finer and Fourier-cropped
        (:func:`phaser.simulate.truth.band_limited_potential`).
    """

    dataset: SimulatedDataset
    potential_VA: np.ndarray
    recon_slice_thickness_A: float
    specimen: Specimen
    specimen_yaml: str
    cell_A: tuple[float, float, float]
    origin_A: tuple[float, float]
    frozen_phonons: int
    fourier_crop_factor: int = 1

    @property
    def slice_z_A(self) -> np.ndarray:
        """Entrance depth [A] of each slice of ``potential_VA``."""
        return np.arange(self.potential_VA.shape[0]) * self.recon_slice_thickness_A

    def to_specimen_A(self, object_yx_A: Any) -> np.ndarray:
        """Object-frame coordinates ``(..., 2)`` ``(y, x)`` [A] as specimen coordinates [A]."""
        return np.asarray(object_yx_A, dtype=np.float64) + np.asarray(self.origin_A)

    def to_object_A(self, specimen_yx_A: Any) -> np.ndarray:
        """Specimen coordinates ``(..., 2)`` ``(y, x)`` [A] in the object frame [A]."""
        return np.asarray(specimen_yx_A, dtype=np.float64) - np.asarray(self.origin_A)


def _cell_shape(cell_yx_A: tuple[float, float], sampling_A: tuple[float, float]) -> tuple[int, int]:
    """Cell grid ``(My, Mx)`` with pixels no finer than ``sampling_A``: its Nyquist frequency stays
    at or below the object grid's, so evaluating its Fourier series there does not alias."""
    return tuple(max(2, math.floor(length / step + 1e-9)) for length, step in zip(cell_yx_A, sampling_A, strict=True))  # type: ignore[return-value]


def _specimen_slices(
    atoms: Any,
    spec: Specimen,
    slice_thickness_A: float,
    shape_px: tuple[int, int],
    sampling_A: tuple[float, float],
    origin_A: tuple[float, float],
    frozen_phonon_seed: Any = None,
) -> np.ndarray:
    """Projected-potential slices [V*A] ``(S, Ny, Nx)`` of ``atoms`` on the object frame."""
    lx, ly, lz = (float(v) for v in atoms.cell.lengths())
    cell_slices = projected_potential_slices(
        atoms.positions,
        atoms.numbers,
        (lx, ly),
        lz,
        slice_thickness_A,
        _cell_shape((ly, lx), sampling_A),
        B_A2=spec.debye_waller_B(),
        frozen_phonon_seed=frozen_phonon_seed,
        dtype=np.float64,
    )
    return periodic_on_grid(cell_slices, (ly, lx), shape_px, sampling_A, origin_A)


def dose_to_per_pattern(dose_per_pattern: float | None, dose_per_A2: float | None, scan_step_A: float) -> float | None:
    """Electrons per pattern from one of ``dose_per_pattern`` or ``dose_per_A2`` [e/A^2]
    (times the scan step squared [A^2]); ``None`` when neither is given (noiseless)."""
    if dose_per_pattern is not None and dose_per_A2 is not None:
        raise ValueError("give dose_per_pattern or dose_per_A2, not both")
    dose = dose_per_A2 * scan_step_A**2 if dose_per_A2 is not None else dose_per_pattern
    if dose is not None and not dose > 0:
        raise ValueError(f"the dose must be positive, got {dose}")
    return None if dose is None else float(dose)


def simulate_specimen_dataset(
    specimen: str | Path | Specimen,
    *,
    kv: float = 200.0,
    conv_angle_mrad: float = 20.0,
    defocus_A: float = 0.0,
    aberrations: list[Aberration] | tuple[Aberration, ...] = (),
    pattern_shape: tuple[int, int] = (64, 64),
    diff_step_mrad: float = 1.5,
    scan_shape: tuple[int, int] = (8, 8),
    scan_step_A: float = 0.4,
    scan_centre_A: tuple[float, float] | None = None,
    slice_thickness_A: float = 2.0,
    dose_per_pattern: float | None = None,
    dose_per_A2: float | None = None,
    frozen_phonons: int = 0,
    seed: int = 0,
    recon_slice_thickness_A: float | None = None,
) -> SpecimenDataset:
    """Simulate a raster-scan 4D-STEM dataset of a specimen (YAML file or :class:`Specimen`).

    Parameters
    ----------
    specimen
        Path of a specimen YAML (``ground_truth/*.yaml``) or a :class:`Specimen`.
    kv
        Accelerating voltage [kV].
    conv_angle_mrad
        Probe semi-convergence angle [mrad].
    defocus_A
        Probe C10 [A] (positive = overfocus; ``-z`` focuses the probe ``z`` below the entrance
        surface; abTEM's ``defocus`` is ``-C10``).
    aberrations
        Further probe aberrations.
    pattern_shape
        Detector shape ``(k_y, k_x)`` [px].
    diff_step_mrad
        Detector pixel [mrad/px]; the sampling is ``wavelength / (N * diff_step)`` [A].
    scan_shape, scan_step_A
        Raster shape ``(scan_y, scan_x)`` and step [A].
    scan_centre_A
        Specimen coordinates ``(y, x)`` [A] of the scan centre; default the cell's centre.
    slice_thickness_A
        Slice thickness [A] of the multislice simulation (1-2 A).
    dose_per_pattern, dose_per_A2
        Mean electrons per pattern, or per A^2 (times ``scan_step_A**2``); at most one. Neither:
        noiseless patterns of total intensity 1.
    frozen_phonons
        0: Debye-Waller smeared potential; ``n > 0``: mean intensity of ``n`` frozen-phonon
        configurations.
    seed
        Seed of the frozen-phonon displacements and the Poisson noise.
    recon_slice_thickness_A
        Slice thickness [A] of the truth potential ``potential_VA``; ``None``: one slice holding
        the whole specimen.
    """
    if frozen_phonons < 0:
        raise ValueError(f"frozen_phonons must be >= 0, got {frozen_phonons}")
    if slice_thickness_A <= 0 or (recon_slice_thickness_A is not None and recon_slice_thickness_A <= 0):
        raise ValueError("slice thicknesses must be positive")
    dose = dose_to_per_pattern(dose_per_pattern, dose_per_A2, scan_step_A)
    spec, spec_yaml = resolve_specimen(specimen)
    atoms = build_atoms(spec)
    lx, ly, lz = (float(v) for v in atoms.cell.lengths())

    wavelength = electron_wavelength_A(kv)
    sampling = real_space_sampling_A(wavelength, pattern_shape, diff_step_mrad)
    nominal = raster_positions_A(scan_shape, scan_step_A)
    shape = required_object_shape(nominal, pattern_shape, sampling)
    centre = (ly / 2, lx / 2) if scan_centre_A is None else tuple(float(c) for c in scan_centre_A)
    origin = (centre[0] - shape[0] // 2 * sampling[0], centre[1] - shape[1] // 2 * sampling[1])

    def slices(dz: float, phonon_rng: Any = None) -> np.ndarray:
        return _specimen_slices(atoms, spec, dz, shape, sampling, origin, phonon_rng)

    smeared = slices(slice_thickness_A)
    sigma = interaction_constant(kv)
    noise_seq, phonon_seq = np.random.SeedSequence(seed).spawn(2)
    # Generated one at a time: each frozen-phonon potential is as large as the smeared one.
    configurations = (
        [smeared]
        if frozen_phonons == 0
        else (slices(slice_thickness_A, np.random.default_rng(s)) for s in phonon_seq.spawn(frozen_phonons))
    )
    batch = max(1, min(64, _MAX_PATCH_ELEMENTS // (smeared.shape[0] * pattern_shape[0] * pattern_shape[1])))
    common = dict(
        kv=kv,
        conv_angle_mrad=conv_angle_mrad,
        defocus_A=defocus_A,
        diff_step_mrad=diff_step_mrad,
        scan_step_A=scan_step_A,
        aberrations=list(aberrations),
        pattern_shape=tuple(pattern_shape),
        scan_shape=tuple(scan_shape),
        slice_thickness_A=slice_thickness_A,
        batch_size=batch,
    )
    configurations = iter(configurations)
    first = simulate_dataset(object_phase=sigma * next(configurations), **common)
    summed = first.patterns.astype(np.float64)
    for potential in configurations:
        summed += simulate_dataset(object_phase=sigma * potential, **common).patterns
    total = 1.0 if dose is None else dose
    patterns = summed * (total / max(frozen_phonons, 1))
    if dose is not None:
        patterns = np.random.default_rng(noise_seq).poisson(np.clip(patterns, 0.0, None))
    dataset = dataclasses.replace(
        first,
        patterns=patterns.astype(np.float32),
        probe_modes=(first.probe_modes * np.float32(math.sqrt(total))).astype(np.complex64),
        object=transmission(sigma * smeared),
        dose_per_pattern=dose,
    )

    recon_dz = lz if recon_slice_thickness_A is None else float(recon_slice_thickness_A)
    # the truth is band-limited at the grid's Nyquist frequency, untapered (phaser.simulate.truth)
    factor = default_factor(sampling)
    potential = band_limited_potential(spec, sampling, shape, recon_dz, origin, factor=factor, atoms=atoms)
    return SpecimenDataset(
        dataset=dataset,
        potential_VA=potential.astype(np.float32),
        recon_slice_thickness_A=recon_dz,
        specimen=spec,
        specimen_yaml=spec_yaml,
        cell_A=(lx, ly, lz),
        origin_A=(float(origin[0]), float(origin[1])),
        frozen_phonons=int(frozen_phonons),
        fourier_crop_factor=factor,
    )


def write_specimen_dataset(sd: SpecimenDataset, path: str | Path) -> Path:
    """Write ``sd`` to the HDF5 file ``path``: :func:`write_dataset`'s layout plus ``truth/potential_VA``."""
    path = write_dataset(sd.dataset, path)
    ds = sd.dataset
    with h5py.File(path, "a") as f:
        potential = f["truth"].create_dataset("potential_VA", data=sd.potential_VA.astype(np.float32))
        attrs = potential.attrs
        attrs["unit"] = "V*A"
        attrs["slice_thickness_A"] = sd.recon_slice_thickness_A
        attrs["slice_z_A"] = sd.slice_z_A
        attrs["sampling_A"] = np.asarray(ds.sampling_A, dtype=np.float64)
        attrs["origin_A"] = np.asarray(sd.origin_A, dtype=np.float64)
        attrs["cell_A"] = np.asarray(sd.cell_A, dtype=np.float64)
        attrs["fine_slice_thickness_A"] = ds.slice_thickness_A
        attrs["frozen_phonons"] = sd.frozen_phonons
        attrs["interaction_constant"] = interaction_constant(ds.kv)
        attrs["specimen_name"] = sd.specimen.name
        attrs["specimen_yaml"] = sd.specimen_yaml
        attrs["fourier_crop_factor"] = sd.fourier_crop_factor
    return path


def read_potential(path: str | Path) -> tuple[np.ndarray, dict[str, Any]]:
    """``truth/potential_VA`` [V*A] of a file from :func:`write_specimen_dataset` and its attributes
    (arrays as tuples of floats, except ``slice_z_A``; strings as ``str``)."""
    with h5py.File(Path(path), "r") as f:
        dataset = f["truth/potential_VA"]
        potential = dataset[()]
        attrs: dict[str, Any] = {}
        for key, value in dataset.attrs.items():
            if isinstance(value, (str, bytes)):
                attrs[key] = value.decode() if isinstance(value, bytes) else value
            elif key == "slice_z_A":
                attrs[key] = np.asarray(value, dtype=np.float64)
            elif np.ndim(value):
                attrs[key] = tuple(float(v) for v in value)
            else:
                attrs[key] = value.item() if hasattr(value, "item") else value
    return potential, attrs


__all__ = [
    "POTENTIAL_ATTRS",
    "SpecimenDataset",
    "dose_to_per_pattern",
    "periodic_on_grid",
    "read_potential",
    "simulate_specimen_dataset",
    "write_specimen_dataset",
]
