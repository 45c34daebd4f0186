"""Probe formation: a condenser aperture with aberrations, brought to real space."""

from __future__ import annotations

from types import ModuleType
from typing import Any

from phaser.physics.aberrations import Aberration, aberration_function
from phaser.physics.grids import fft_frequencies


def aperture(
    xp: ModuleType, ky: Any, kx: Any, wavelength_A: float, conv_angle_mrad: float, sampling_A: tuple[float, float]
) -> Any:
    """Condenser aperture of semi-angle ``conv_angle_mrad``, its edge smoothed over one pixel.

    A one-pixel linear edge keeps the probe free of ringing from a hard step and is differentiable.
    """
    k_cut = conv_angle_mrad * 1e-3 / wavelength_A
    k = xp.sqrt(ky**2 + kx**2)
    dk = min(1.0 / (ky.shape[0] * sampling_A[0]), 1.0 / (kx.shape[1] * sampling_A[1]))
    return xp.clip((k_cut - k) / dk + 0.5, 0.0, 1.0)


def focused_probe(
    xp: ModuleType,
    shape: tuple[int, int],
    sampling_A: tuple[float, float],
    wavelength_A: float,
    conv_angle_mrad: float,
    aberrations: list[Aberration],
    total_intensity: float = 1.0,
    dtype: Any = None,
) -> Any:
    """Real-space probe ``ifft2(A(k) exp(-i chi(k)))`` centred at pixel ``(N//2, N//2)``.

    Normalised so that ``sum |probe|^2 == total_intensity`` (electrons per pattern when the
    far field uses the orthonormal FFT).
    """
    real_dtype = dtype if dtype is not None else xp.float32
    ky, kx = fft_frequencies(xp, shape, sampling_A, real_dtype)
    amp = aperture(xp, ky, kx, wavelength_A, conv_angle_mrad, sampling_A)
    chi = aberration_function(xp, ky, kx, wavelength_A, aberrations)
    wave_k = amp * xp.exp(-1j * chi)
    probe = xp.fft.fftshift(xp.fft.ifft2(wave_k, norm="ortho"), axes=(-2, -1))
    norm = xp.sqrt(total_intensity / xp.sum(xp.abs(probe) ** 2))
    return probe * norm
