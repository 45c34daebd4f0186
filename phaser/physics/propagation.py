"""Fresnel propagation between slices, with a bandwidth limit and a specimen tilt."""

from __future__ import annotations

import math
from types import ModuleType
from typing import Any

from phaser.physics.grids import fft_frequencies


def bandwidth_mask(
    xp: ModuleType, shape: tuple[int, int], sampling_A: tuple[float, float], bwlim_frac: float, dtype: Any
) -> Any:
    """1 inside ``|k| <= bwlim_frac * k_nyquist`` (the smaller axis's Nyquist), else 0.

    2/3 is the classic anti-aliasing limit for the product of two band-limited fields.
    """
    ky, kx = fft_frequencies(xp, shape, sampling_A, dtype)
    k_nyq = min(0.5 / sampling_A[0], 0.5 / sampling_A[1])
    return (ky**2 + kx**2 <= (bwlim_frac * k_nyq) ** 2).astype(dtype)


def fresnel_propagator(
    xp: ModuleType,
    shape: tuple[int, int],
    sampling_A: tuple[float, float],
    wavelength_A: float,
    dz_A: float,
    tilt_mrad: tuple[float, float] = (0.0, 0.0),
    bwlim_frac: float | None = 2.0 / 3.0,
    dtype: Any = None,
) -> Any:
    """Fourier-space propagator over ``dz_A`` [A]: ``exp(-i pi lambda dz k^2)`` times a tilt ramp.

    A tilt ``(t_y, t_x)`` [mrad] of the beam relative to the specimen shifts the wave laterally by
    ``dz * tan(t)`` per slice. ``bwlim_frac=None`` (or >= sqrt(2)) leaves the propagator unmasked.
    """
    real_dtype = dtype if dtype is not None else xp.float32
    ky, kx = fft_frequencies(xp, shape, sampling_A, real_dtype)
    phase = math.pi * wavelength_A * dz_A * (ky**2 + kx**2)
    phase = phase + 2 * math.pi * dz_A * (ky * math.tan(tilt_mrad[0] * 1e-3) + kx * math.tan(tilt_mrad[1] * 1e-3))
    prop = xp.exp(-1j * phase)
    if bwlim_frac is not None:
        prop = prop * bandwidth_mask(xp, shape, sampling_A, bwlim_frac, real_dtype)
    return prop


def propagate(xp: ModuleType, wave: Any, propagator: Any) -> Any:
    """Apply a Fourier-space ``propagator`` to real-space ``wave`` over its last two axes."""
    return xp.fft.ifft2(xp.fft.fft2(wave) * propagator)


def gap_propagators(
    xp: ModuleType,
    shape: tuple[int, int],
    sampling_A: tuple[float, float],
    wavelength_A: float,
    thicknesses_A: Any,
    bwlim_frac: float | None = 2.0 / 3.0,
    dtype: Any = None,
) -> Any:
    """``(S-1, N, N)`` propagators over the gaps after each slice but the last (``(0, N, N)`` for one)."""
    gaps = [float(dz) for dz in list(thicknesses_A)[:-1]]
    if not gaps:
        return xp.ones((0, *shape), dtype=xp.complex128)
    return xp.stack(
        [fresnel_propagator(xp, shape, sampling_A, wavelength_A, dz, bwlim_frac=bwlim_frac, dtype=dtype) for dz in gaps]
    )
