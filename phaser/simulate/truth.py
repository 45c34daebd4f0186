"""Ground-truth projected potentials band-limited at a reconstruction grid's Nyquist frequency.

A reconstruction on pixels ``(dy, dx)`` [A] can only hold spatial frequencies inside the band
``|f_y| < 1 / (2 dy)``, ``|f_x| < 1 / (2 dx)``; the truth it is scored against must hold exactly
those, untapered. :func:`band_limited_potential` computes the specimen's periodic cell on a grid
finer by an integer factor (where the Kirkland series of :mod:`phaser.simulate.potentials` is
exact up to the coarse band: its roll-off starts at half the fine Nyquist frequency), keeps the
cell's Fourier coefficients inside the band (:func:`fourier_crop`) and evaluates that Fourier
series at the reconstruction's pixels (:func:`periodic_on_grid`), as an independent simulator's
(abTEM's) potential computed finely and cropped is. Evaluating the potential directly at the
coarse sampling instead rolls it off from half the Nyquist frequency on.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from phaser.simulate.potentials import projected_potential_slices
from phaser.simulate.specimen import Specimen, build_atoms, load_specimen

# Default finest pixel [A] of the grid the potential is computed on before the crop.
FINE_SAMPLING_A = 0.05
# Smallest default ratio of the reconstruction's pixel to the fine grid's.
MIN_FACTOR = 4


def fourier_crop(image_or_stack: Any, shape: tuple[int, int]) -> np.ndarray:
    """Real image ``(..., Ny, Nx)`` resampled on ``shape`` ``(My, Mx)`` (not larger) by Fourier cropping.

    The image is one period of a periodic function; the result samples the same period with
    ``shape`` pixels, keeping the ``My x Mx`` lowest frequencies (no taper) and dropping the rest.
    Values are scaled by ``My Mx / (Ny Nx)``, so the mean, the amplitude of every kept frequency and,
    for an image band-limited inside the new grid's band, the values at coinciding pixels are kept.
    """
    image = np.asarray(image_or_stack, dtype=np.float64)
    in_shape, out_shape = image.shape[-2:], tuple(int(n) for n in shape)
    if any(o > i or o < 1 for o, i in zip(out_shape, in_shape, strict=True)):
        raise ValueError(f"fourier_crop shrinks: cannot go from {in_shape} to {out_shape}")
    spectrum = np.fft.fftshift(np.fft.fft2(image), axes=(-2, -1))
    starts = [i // 2 - o // 2 for i, o in zip(in_shape, out_shape, strict=True)]
    kept = spectrum[..., starts[0] : starts[0] + out_shape[0], starts[1] : starts[1] + out_shape[1]]
    scale = out_shape[0] * out_shape[1] / (in_shape[0] * in_shape[1])
    # an even side keeps one of its two Nyquist bins; the real part splits it evenly between +-f
    return np.real(np.fft.ifft2(np.fft.ifftshift(kept, axes=(-2, -1)))) * scale


def periodic_on_grid(
    cell_slices: np.ndarray,
    cell_yx_A: tuple[float, float],
    shape_px: tuple[int, int],
    sampling_A: tuple[float, float],
    origin_yx_A: tuple[float, float],
) -> np.ndarray:
    """A periodic, band-limited image sampled at other pixels: its Fourier series evaluated there.

    ``cell_slices`` ``(S, My, Mx)`` samples one period ``cell_yx_A = (Ly, Lx)`` [A]; the result
    ``(S, Ny, Nx)`` holds its values at ``(origin_y + i dy, origin_x + j dx)`` [A]. Exact when the
    image has no power at its Nyquist frequency (the tapered potentials of
    :mod:`phaser.simulate.potentials` have none) and the new grid is not coarser.
    """
    slices = np.asarray(cell_slices, dtype=np.float64)
    slices = slices[None] if slices.ndim == 2 else slices
    my, mx = slices.shape[-2:]
    coefficients = np.fft.fft2(slices) / (my * mx)
    fy = np.fft.fftfreq(my, d=cell_yx_A[0] / my)
    fx = np.fft.fftfreq(mx, d=cell_yx_A[1] / mx)
    y = origin_yx_A[0] + np.arange(shape_px[0]) * sampling_A[0]
    x = origin_yx_A[1] + np.arange(shape_px[1]) * sampling_A[1]
    basis_y = np.exp(2j * math.pi * y[:, None] * fy[None, :])  # (Ny, My)
    basis_x = np.exp(2j * math.pi * fx[:, None] * x[None, :])  # (Mx, Nx)
    return np.real(basis_y @ coefficients @ basis_x)


def resolve_specimen(specimen: str | Path | Specimen) -> tuple[Specimen, str]:
    """The specimen (from a YAML path or as given) and its YAML text."""
    if isinstance(specimen, Specimen):
        return specimen, yaml.safe_dump(specimen.model_dump(mode="json"), sort_keys=False)
    path = Path(specimen)
    return load_specimen(path), path.read_text()


def default_factor(sampling_A: tuple[float, float]) -> int:
    """Integer refinement making the fine pixel at most :data:`FINE_SAMPLING_A` [A], at least
    :data:`MIN_FACTOR`."""
    return max(MIN_FACTOR, math.ceil(max(sampling_A) / FINE_SAMPLING_A - 1e-9))


def band_cell_shape(cell_yx_A: tuple[float, float], sampling_A: tuple[float, float]) -> tuple[int, int]:
    """Odd cell grid ``(My, Mx)`` whose frequencies ``k / L`` are exactly those strictly inside the
    band ``|f| < 1 / (2 d)`` of pixels ``sampling_A`` [A] (odd: no half-kept Nyquist bin)."""
    sides = [2 * math.ceil(length / (2 * step) - 1e-9) - 1 for length, step in zip(cell_yx_A, sampling_A, strict=True)]
    return sides[0], sides[1]


def band_limited_cell(
    atoms: Any,
    spec: Specimen,
    sampling_A: tuple[float, float],
    slice_thickness_A: float | None = None,
    factor: int | None = None,
) -> np.ndarray:
    """Projected potential [V*A] ``(S, My, Mx)`` of the periodic cell of ``atoms``, band-limited at the
    Nyquist frequency of pixels ``sampling_A`` ``(dy, dx)`` [A], sampled on :func:`band_cell_shape`.

    Computed on the cell at pixels ``factor`` times finer (default :func:`default_factor`), then
    Fourier-cropped. ``slice_thickness_A``: thickness [A] of each slice; None: one slice holding
    the whole cell. Debye-Waller smeared (``spec.debye_waller_B()``).
    """
    factor = default_factor(sampling_A) if factor is None else int(factor)
    if factor < 2:
        raise ValueError(f"factor must be at least 2 (the fine grid rolls off from half its Nyquist), got {factor}")
    lx, ly, lz = (float(v) for v in atoms.cell.lengths())
    band = band_cell_shape((ly, lx), sampling_A)
    # at least twice the band, so the Kirkland roll-off (from half the fine Nyquist) stays outside it
    fine = [max(2 * b + 2, math.ceil(n * factor / d)) for b, n, d in zip(band, (ly, lx), sampling_A, strict=True)]
    cell_slices = projected_potential_slices(
        atoms.positions,
        atoms.numbers,
        (lx, ly),
        lz,
        lz if slice_thickness_A is None else slice_thickness_A,
        (fine[0], fine[1]),
        B_A2=spec.debye_waller_B(),
        dtype=np.float64,
    )
    return fourier_crop(cell_slices, band)


def band_limited_potential(
    specimen: str | Path | Specimen,
    sampling_A: tuple[float, float],
    shape_px: tuple[int, int],
    slice_thickness_A: float | None = None,
    origin_A: tuple[float, float] = (0.0, 0.0),
    *,
    factor: int | None = None,
    atoms: Any = None,
) -> np.ndarray:
    """Projected potential [V*A] ``(S, Ny, Nx)`` per reconstruction slice, band-limited at the grid's
    Nyquist frequency.

    Parameters
    ----------
    specimen
        Specimen YAML path or :class:`Specimen` (periodic laterally with its cell).
    sampling_A
        Reconstruction pixel ``(dy, dx)`` [A].
    shape_px
        Grid ``(Ny, Nx)``; pixel ``(i, j)`` lies at specimen coordinates
        ``(origin_y + i dy, origin_x + j dx)`` [A] (the specimen continued periodically).
    slice_thickness_A
        Reconstruction slice thickness [A] (slice ``s`` holds atoms with ``s dz <= z < (s+1) dz``);
        None: one slice holding the whole specimen.
    origin_A
        Specimen coordinates ``(y, x)`` [A] of pixel ``(0, 0)``.
    factor
        Refinement of the grid the potential is computed on (default :func:`default_factor`).
    atoms
        The specimen's atoms when already built (:func:`phaser.simulate.specimen.build_atoms`).
    """
    spec, _ = resolve_specimen(specimen)
    atoms = build_atoms(spec) if atoms is None else atoms
    lx, ly, _ = (float(v) for v in atoms.cell.lengths())
    cell = band_limited_cell(atoms, spec, sampling_A, slice_thickness_A, factor)
    return periodic_on_grid(cell, (ly, lx), shape_px, sampling_A, origin_A)


def specimen_truth(
    specimen: str | Path | Specimen,
    sampling_A: tuple[float, float],
    slice_thickness_A: float | None,
    shape_px: tuple[int, int] | None = None,
    *,
    factor: int | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """The truth a reconstruction of ``specimen`` at pixels ``sampling_A`` ``(dy, dx)`` [A] is scored against.

    Returns float32 ``(S, Ny, Nx)`` [V*A] (:func:`band_limited_potential`, origin at the cell's
    corner) and its attributes: ``unit``, ``sampling_A``, ``slice_thickness_A`` (the whole
    specimen's thickness when ``slice_thickness_A`` is None), ``slice_z_A``, ``cell_A``
    ``(Lx, Ly, Lz)``, ``origin_A``, ``fourier_crop_factor``, ``specimen_name``, ``specimen_yaml``.
    ``shape_px`` default: ``round(L / d)`` pixels, about one cell (the grid is periodic with the
    cell only when ``L / d`` is a whole number).
    """
    spec, spec_yaml = resolve_specimen(specimen)
    atoms = build_atoms(spec)
    lx, ly, lz = (float(v) for v in atoms.cell.lengths())
    sampling = (float(sampling_A[0]), float(sampling_A[1]))
    if shape_px is None:
        shape_px = (max(1, round(ly / sampling[0])), max(1, round(lx / sampling[1])))
    factor = default_factor(sampling) if factor is None else int(factor)
    potential = band_limited_potential(spec, sampling, shape_px, slice_thickness_A, factor=factor, atoms=atoms)
    dz = lz if slice_thickness_A is None else float(slice_thickness_A)
    attrs = {
        "unit": "V*A",
        "sampling_A": sampling,
        "slice_thickness_A": dz,
        "slice_z_A": np.arange(potential.shape[0]) * dz,
        "cell_A": (lx, ly, lz),
        "origin_A": (0.0, 0.0),
        "fourier_crop_factor": factor,
        "specimen_name": spec.name,
        "specimen_yaml": spec_yaml,
    }
    return potential.astype(np.float32), attrs


__all__ = [
    "band_cell_shape",
    "band_limited_cell",
    "band_limited_potential",
    "default_factor",
    "fourier_crop",
    "periodic_on_grid",
    "resolve_specimen",
    "specimen_truth",
]
