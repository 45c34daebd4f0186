"""Sampling relations between real space and the detector, and frequency grids."""

from __future__ import annotations

from types import ModuleType
from typing import Any


def real_space_sampling_A(wavelength_A: float, shape: tuple[int, int], diff_step_mrad: float) -> tuple[float, float]:
    """Real-space pixel size [A] of an ``shape`` grid whose detector pixel spans ``diff_step_mrad``.

    One detector pixel is ``diff_step_mrad * 1e-3 / wavelength`` in 1/A, and the grid's extent is the
    inverse of that, so ``dx = wavelength / (N * diff_step)``.
    """
    step = diff_step_mrad * 1e-3
    return (wavelength_A / (shape[0] * step), wavelength_A / (shape[1] * step))


def fft_frequencies(
    xp: ModuleType, shape: tuple[int, int], sampling_A: tuple[float, float], dtype: Any
) -> tuple[Any, Any]:
    """Spatial frequencies ``(ky, kx)`` [1/A] of an unshifted FFT grid, broadcastable to ``shape``."""
    ky = xp.fft.fftfreq(shape[0], d=sampling_A[0]).astype(dtype)
    kx = xp.fft.fftfreq(shape[1], d=sampling_A[1]).astype(dtype)
    return ky[:, None], kx[None, :]
