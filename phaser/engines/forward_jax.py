"""The multislice forward model written for JAX autodiff inside the gradient engine.

Same physics as :mod:`phaser.physics.multislice` (and tested against it), but patches are cut with
``vmap(dynamic_slice)`` (its gradient is a cheap dynamic-update, not an element-wise scatter) and
the per-position tilt enters the propagators as two 1D phase ramps.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

from phaser.physics.shift import phase_ramp


def cut_patches(obj: Any, top_left: Any, patch_shape: tuple[int, int]) -> Any:
    """``(B, S, N, N)`` patches of ``obj`` ``(S, Ny, Nx)`` at integer corners ``top_left`` ``(B, 2)``."""
    n_slices = obj.shape[0]

    def cut(corner: Any) -> Any:
        # the leading index must share the corners' integer type (int64 under jax_enable_x64)
        return jax.lax.dynamic_slice(obj, (jnp.zeros((), corner.dtype), corner[0], corner[1]), (n_slices, *patch_shape))

    return jax.vmap(cut)(top_left)


def split_positions(positions_px: Any, patch_shape: tuple[int, int], object_shape: tuple[int, int]) -> tuple[Any, Any]:
    """Integer patch corners (kept inside the object) and the differentiable sub-pixel rest."""
    rounded = jax.lax.stop_gradient(jnp.round(positions_px))
    centre = jnp.asarray([patch_shape[0] // 2, patch_shape[1] // 2], dtype=positions_px.dtype)
    limit = jnp.asarray([object_shape[0] - patch_shape[0], object_shape[1] - patch_shape[1]], dtype=positions_px.dtype)
    top_left = jnp.clip(rounded - centre, 0, limit).astype(jnp.int32)
    return top_left, positions_px - (top_left + centre)


def tilted_propagators(base: Any, thicknesses_A: Any, ky: Any, kx: Any, tilt_mrad: Any) -> Any:
    """Per-position propagators ``(B, S-1, N, N)``: ``base`` times the tilt ramps of each gap."""
    tan = jnp.tan(tilt_mrad * 1e-3)  # (B, 2)
    dz = thicknesses_A[:-1]  # (S-1,)
    ramp_y = jnp.exp(-2j * math.pi * dz[None, :, None] * ky[None, None, :] * tan[:, None, 0:1])  # (B,S-1,N)
    ramp_x = jnp.exp(-2j * math.pi * dz[None, :, None] * kx[None, None, :] * tan[:, None, 1:2])
    return base[None] * ramp_y[..., :, None] * ramp_x[..., None, :]


def model_intensity(
    probe_modes: Any,
    obj: Any,
    positions_px: Any,
    propagators: Any,
) -> Any:
    """Modelled intensities ``(B, N, N)``, zero frequency at pixel 0.

    ``propagators`` is ``(S-1, N, N)`` or ``(B, S-1, N, N)``.
    """
    patch_shape = probe_modes.shape[-2:]
    top_left, frac = split_positions(positions_px, patch_shape, obj.shape[-2:])
    patches = cut_patches(obj, top_left, patch_shape)
    ramp = phase_ramp(jnp, patch_shape, frac)  # (B, N, N)
    wave = jnp.fft.ifft2(jnp.fft.fft2(probe_modes)[None] * ramp[:, None])  # (B, M, N, N)
    n_slices = obj.shape[0]
    for s in range(n_slices):
        wave = wave * patches[:, s, None]
        if s < n_slices - 1:
            prop = propagators[..., s, :, :]
            prop = prop[:, None] if prop.ndim == 3 else prop
            wave = jnp.fft.ifft2(jnp.fft.fft2(wave) * prop)
    far = jnp.fft.fft2(wave, norm="ortho")
    return jnp.sum(jnp.real(far) ** 2 + jnp.imag(far) ** 2, axis=1)
