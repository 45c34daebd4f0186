"""Known test objects: a square lattice of Gaussian "atoms" as a phase, and its transmission."""

from __future__ import annotations

import math

import numpy as np


def _pair(value: float | tuple[float, float]) -> tuple[float, float]:
    """``(y, x)`` from a scalar or a pair."""
    if np.isscalar(value):
        return (float(value), float(value))  # type: ignore[arg-type]
    y, x = value  # type: ignore[misc]
    return (float(y), float(x))


def _as_rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    """A Generator from a Generator, a seed, or ``None`` (seed 0: reproducible default)."""
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(0 if rng is None else rng)


def gaussian_atom_phase(
    shape_px: tuple[int, int],
    sampling_A: float | tuple[float, float],
    lattice_A: float = 2.7,
    peak_rad: float = 0.8,
    sigma_A: float = 0.35,
    n_slices: int = 1,
    rng: np.random.Generator | int | None = None,
    jitter_A: float = 0.0,
) -> np.ndarray:
    """Phase [rad], float32 ``(n_slices, Ny, Nx)``, of a square lattice of Gaussian atoms.

    Parameters
    ----------
    shape_px
        Object shape ``(Ny, Nx)`` [pixels]; pixel ``(i, j)`` sits at ``(i * dy, j * dx)`` [A].
    sampling_A
        Pixel size ``dy, dx`` [A] (one number for square pixels).
    lattice_A
        Lattice constant [A]; atoms sit at ``(i + 1/2) * lattice_A`` along each axis.
    peak_rad
        Phase at an atom's centre [rad]. Each atom lies in one slice, so the projected phase
        (sum over slices) also peaks at about ``peak_rad``.
    sigma_A
        Standard deviation of each atom's Gaussian [A].
    n_slices
        Number of slices; each atom goes to one slice, balanced and shuffled by ``rng``.
    rng
        Generator or seed for the slice assignment and the jitter (``None``: seed 0).
    jitter_A
        Standard deviation [A] of random displacements of the atoms from their lattice sites.
    """
    if n_slices < 1:
        raise ValueError(f"n_slices must be at least 1, got {n_slices}")
    rng = _as_rng(rng)
    dy, dx = _pair(sampling_A)
    ny, nx = shape_px
    sites_y = (np.arange(math.ceil(ny * dy / lattice_A)) + 0.5) * lattice_A
    sites_x = (np.arange(math.ceil(nx * dx / lattice_A)) + 0.5) * lattice_A
    centres = np.stack(np.meshgrid(sites_y, sites_x, indexing="ij"), axis=-1).reshape(-1, 2)
    slice_of = rng.permutation(np.arange(len(centres)) % n_slices)
    if jitter_A > 0:
        centres = centres + rng.normal(scale=jitter_A, size=centres.shape)

    phase = np.zeros((n_slices, ny, nx), dtype=np.float64)
    # Each atom only touches a window of +-5 sigma: keeps large objects cheap.
    reach_y, reach_x = math.ceil(5 * sigma_A / dy), math.ceil(5 * sigma_A / dx)
    for (cy, cx), s in zip(centres, slice_of, strict=True):
        iy0, ix0 = round(cy / dy), round(cx / dx)
        ys = np.arange(max(iy0 - reach_y, 0), min(iy0 + reach_y + 1, ny))
        xs = np.arange(max(ix0 - reach_x, 0), min(ix0 + reach_x + 1, nx))
        if ys.size == 0 or xs.size == 0:
            continue
        gy = np.exp(-((ys * dy - cy) ** 2) / (2 * sigma_A**2))
        gx = np.exp(-((xs * dx - cx) ** 2) / (2 * sigma_A**2))
        phase[s, ys[0] : ys[-1] + 1, xs[0] : xs[-1] + 1] += peak_rad * np.outer(gy, gx)
    return phase.astype(np.float32)


def transmission(phase: np.ndarray, amplitude: np.ndarray | float | None = None) -> np.ndarray:
    """Complex64 transmission ``amplitude * exp(i * phase)``.

    ``phase`` [rad] and ``amplitude`` (dimensionless; ``None``: a pure phase object) broadcast
    against each other.
    """
    trans = np.exp(1j * np.asarray(phase, dtype=np.float64))
    if amplitude is not None:
        trans = trans * np.asarray(amplitude)
    return trans.astype(np.complex64)
