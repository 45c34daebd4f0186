"""Projected-potential slices of a list of atoms, built in Fourier space on a periodic cell.

Each slice is ``v(r) = (1/A) sum_q sum_atoms 2 pi a0 e f_e(|q|) exp(-B q^2/4) exp(2 pi i q.(r - r_atom))``
(:mod:`phaser.simulate.kirkland`), ``A`` the cell area: the exact periodic sum of the atoms'
projected potentials, rolled off smoothly below the grid's Nyquist frequency, with thermal
(Debye-Waller) smearing applied analytically and sub-pixel atom positions handled by the phase
factor. An atom contributes to the slice that holds its z.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from phaser.simulate.kirkland import B_to_u_rms, atomic_number, projected_potential_fourier

# Where the band-limiting roll-off starts, as a fraction of the Nyquist frequency.
TAPER_START = 0.5


def _per_atom_B(B_A2: float | Any | Mapping[Any, float] | None, Z: np.ndarray) -> np.ndarray:
    """Debye-Waller B [A^2] of every atom from a scalar, an (n,) array, or a mapping element -> B."""
    if B_A2 is None:
        return np.zeros(Z.shape)
    if isinstance(B_A2, Mapping):
        by_z = {atomic_number(k): float(v) for k, v in B_A2.items()}
        return np.array([by_z.get(int(z), 0.0) for z in Z])
    B = np.broadcast_to(np.asarray(B_A2, dtype=np.float64), Z.shape).copy()
    if np.any(B < 0):
        raise ValueError("Debye-Waller B must be non-negative")
    return B


def nyquist_taper(q_invA: np.ndarray, nyquist_invA: float, start: float = TAPER_START) -> np.ndarray:
    """Isotropic cos^2 roll-off: 1 below ``start * nyquist_invA``, 0 from ``nyquist_invA`` [1/A] on.

    A sharp cut of the slowly decaying f_e(q) (~1/q^2) rings visibly around heavy atoms placed
    between pixels (over 20% at 1 A for Au at 0.05 A sampling); this roll-off keeps the grid
    within 1% of the analytic potential beyond 0.5 A and preserves the integral (q = 0).
    """
    x = np.asarray(q_invA) / nyquist_invA
    ramp = np.cos(0.5 * math.pi * np.clip((x - start) / (1 - start), 0.0, 1.0)) ** 2
    return np.where(x < 1, ramp, 0.0)


def _frequencies(cell_A: tuple[float, float], shape_px: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Spatial frequencies [1/A] along y (full FFT) and x (rfft half) of the grid."""
    ny, nx = shape_px
    qy = np.fft.fftfreq(ny, d=cell_A[1] / ny)
    qx = np.fft.rfftfreq(nx, d=cell_A[0] / nx)
    return qy, qx


def projected_potential_grid(
    positions_xy_A: Any,
    Z: Any,
    cell_A: tuple[float, float],
    shape_px: tuple[int, int],
    B_A2: float | Any | Mapping[Any, float] | None = None,
    taper_start: float = TAPER_START,
) -> np.ndarray:
    """Summed projected potential [V*A] ``(Ny, Nx)`` of atoms at ``positions_xy_A`` (n, 2) [A].

    ``cell_A = (Lx, Ly)`` [A] is the periodic cell, ``shape_px = (Ny, Nx)``; pixel ``(i, j)``
    lies at ``(x, y) = (j Lx / Nx, i Ly / Ny)``. ``B_A2``: Debye-Waller B [A^2] as a scalar,
    per atom, or per element (``{"Si": 0.5}``; elements left out get 0). The spectrum is rolled
    off by :func:`nyquist_taper` (``taper_start``: where the roll-off starts, a fraction of the
    Nyquist frequency).
    """
    positions = np.asarray(positions_xy_A, dtype=np.float64).reshape(-1, 2)
    Z = np.asarray([atomic_number(z) for z in np.atleast_1d(Z)], dtype=int)
    if len(Z) != len(positions):
        raise ValueError(f"{len(positions)} positions but {len(Z)} atomic numbers")
    B = _per_atom_B(B_A2, Z)
    ny, nx = shape_px
    qy, qx = _frequencies(cell_A, shape_px)
    q = np.sqrt(qy[:, None] ** 2 + qx[None, :] ** 2)
    spectrum = np.zeros((ny, nx // 2 + 1), dtype=np.complex128)
    taper = nyquist_taper(q, min(ny / (2 * cell_A[1]), nx / (2 * cell_A[0])), taper_start)
    for z, b in sorted({(int(z), float(b)) for z, b in zip(Z, B, strict=True)}):
        group = positions[(Z == z) & (B == b)]
        # The structure factor sum_n exp(-2 pi i (qy y_n + qx x_n)) as one (Ny, n) @ (n, Nx') product.
        phase_y = np.exp(-2j * math.pi * qy[:, None] * group[None, :, 1])
        phase_x = np.exp(-2j * math.pi * group[:, 0, None] * qx[None, :])
        spectrum += taper * projected_potential_fourier(z, q, b) * (phase_y @ phase_x)
    # irfft2 divides by Ny*Nx; the Fourier series needs 1/A.
    return np.fft.irfft2(spectrum, s=(ny, nx)) * (ny * nx / (cell_A[0] * cell_A[1]))


def projected_potential_slices(
    positions_A: Any,
    Z: Any,
    cell_A: tuple[float, float],
    thickness_A: float,
    slice_thickness_A: float,
    shape_px: tuple[int, int],
    B_A2: float | Any | Mapping[Any, float] | None = None,
    frozen_phonon_seed: int | np.random.Generator | None = None,
    dtype: Any = np.float32,
    taper_start: float = TAPER_START,
) -> np.ndarray:
    """Projected-potential slices [V*A] ``(S, Ny, Nx)`` of atoms at ``positions_A`` (n, 3) [A].

    Slice ``s`` holds the atoms with ``s * dz <= z < (s + 1) * dz`` (``dz = slice_thickness_A``),
    ``S = ceil(thickness_A / dz)``; atoms outside ``[0, thickness_A)`` go to the first or last
    slice. ``B_A2`` [A^2] (scalar, per atom, or per element) smears each atom with its Debye-Waller
    Gaussian. With ``frozen_phonon_seed`` set the atoms are instead displaced at random (rms
    ``sqrt(B / 8 pi^2)`` [A] along each axis) and not smeared: one frozen-phonon configuration.
    """
    positions = np.asarray(positions_A, dtype=np.float64).reshape(-1, 3).copy()
    Z = np.asarray([atomic_number(z) for z in np.atleast_1d(Z)], dtype=int)
    if len(Z) != len(positions):
        raise ValueError(f"{len(positions)} positions but {len(Z)} atomic numbers")
    if slice_thickness_A <= 0 or thickness_A <= 0:
        raise ValueError("thickness and slice thickness must be positive")
    B = _per_atom_B(B_A2, Z)
    if frozen_phonon_seed is not None:
        rng = np.random.default_rng(frozen_phonon_seed)
        u_rms = np.array([B_to_u_rms(b) for b in B])
        positions += rng.normal(size=positions.shape) * u_rms[:, None]
        B = np.zeros_like(B)
    n_slices = max(1, math.ceil(thickness_A / slice_thickness_A - 1e-9))
    index = np.clip(np.floor(positions[:, 2] / slice_thickness_A).astype(int), 0, n_slices - 1)
    slices = np.zeros((n_slices, *shape_px), dtype=dtype)
    for s in np.unique(index):
        held = index == s
        slices[s] = projected_potential_grid(positions[held, :2], Z[held], cell_A, shape_px, B[held], taper_start)
    return slices
