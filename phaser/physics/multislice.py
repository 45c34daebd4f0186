"""The multislice forward model over incoherent probe modes.

Shapes: probe modes ``(M, N, N)``; object slices ``(S, Ny, Nx)`` (complex transmission);
positions ``(B, 2)`` in object pixels, the probe centre ``(N//2, N//2)`` landing on the position.
The wave is multiplied by each slice and propagated by that slice's thickness to the next, so
``S`` slices need ``S - 1`` propagators and the exit wave leaves the last slice unpropagated.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from phaser.physics.shift import phase_ramp


def split_positions(xp: ModuleType, positions_px: Any, patch_shape: tuple[int, int]) -> tuple[Any, Any]:
    """Integer top-left corners of the object patches, and the sub-pixel rest in [-0.5, 0.5]."""
    rounded = xp.round(positions_px)
    centre = xp.asarray([patch_shape[0] // 2, patch_shape[1] // 2], dtype=positions_px.dtype)
    top_left = (rounded - centre).astype(xp.int32)
    return top_left, positions_px - rounded


def object_patches(xp: ModuleType, obj: Any, top_left: Any, patch_shape: tuple[int, int]) -> Any:
    """Cut ``(B, S, N, N)`` patches from ``obj`` ``(S, Ny, Nx)`` at integer corners ``top_left``."""
    iy = top_left[:, 0, None] + xp.arange(patch_shape[0])[None, :]  # (B, N)
    ix = top_left[:, 1, None] + xp.arange(patch_shape[1])[None, :]
    return obj[:, iy[:, :, None], ix[:, None, :]].transpose(1, 0, 2, 3)


def shifted_probes(xp: ModuleType, probe_modes_k: Any, shift_px: Any) -> Any:
    """Probe modes moved by sub-pixel ``shift_px`` ``(B, 2)``: ``(B, M, N, N)`` in real space.

    ``probe_modes_k`` is ``fft2(probe_modes)``, computed once and shared by every position.
    """
    ramp = phase_ramp(xp, probe_modes_k.shape[-2:], shift_px)  # (B, N, N)
    return xp.fft.ifft2(probe_modes_k[None, :, :, :] * ramp[:, None, :, :])


def exit_waves(xp: ModuleType, probes: Any, patches: Any, propagators: Any) -> Any:
    """Exit waves ``(B, M, N, N)`` after the probes cross the ``S`` slices of ``patches``.

    ``propagators`` is ``(S-1, N, N)`` (shared) or ``(B, S-1, N, N)`` (per position, e.g. tilt).
    """
    n_slices = patches.shape[1]
    wave = probes
    for s in range(n_slices):
        wave = wave * patches[:, s, None, :, :]
        if s < n_slices - 1:
            prop = propagators[..., s, :, :]
            prop = prop[:, None] if prop.ndim == 3 else prop
            wave = xp.fft.ifft2(xp.fft.fft2(wave) * prop)
    return wave


def far_field(xp: ModuleType, waves: Any) -> Any:
    """Detector-plane waves: orthonormal FFT, zero frequency at pixel 0."""
    return xp.fft.fft2(waves, norm="ortho")


def intensity(xp: ModuleType, far_field_waves: Any) -> Any:
    """Incoherent sum over probe modes (axis -3) of ``|far field|^2``."""
    return xp.sum(xp.abs(far_field_waves) ** 2, axis=-3)


def forward_intensity(xp: ModuleType, probe_modes: Any, obj: Any, positions_px: Any, propagators: Any) -> Any:
    """Model diffraction intensities ``(B, N, N)`` (zero frequency at pixel 0) for ``positions_px``.

    Probe modes are normalised so that ``sum |probe|^2`` over real space is the electrons per
    pattern; the ``ifft2`` of the shift keeps that, and the orthonormal FFT carries it to the detector.
    """
    patch_shape = probe_modes.shape[-2:]
    top_left, frac = split_positions(xp, positions_px, patch_shape)
    patches = object_patches(xp, obj, top_left, patch_shape)
    probes = shifted_probes(xp, xp.fft.fft2(probe_modes), frac)
    return intensity(xp, far_field(xp, exit_waves(xp, probes, patches, propagators)))
