"""The multislice forward model written for JAX autodiff inside the gradient engine.

Same physics as :mod:`phaser.physics.multislice` (and tested against it), but patches are cut with
``vmap(dynamic_slice)`` (its gradient is a cheap dynamic-update, not an element-wise scatter) and
the per-position tilt enters the propagators as two 1D phase ramps.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from phaser.physics.shift import ramp_factors


def cut_slice_patches(obj_slice: Any, top_left: Any, patch_shape: tuple[int, int]) -> Any:
    """``(B, N, N)`` patches of one slice ``(Ny, Nx)`` at integer corners ``top_left`` ``(B, 2)``.

    The model cuts each slice on its own: the gradient of one ``(B, S, N, N)`` cut of all slices
    would assemble every slice's patch gradients into one array first, a pass over ``S`` times the
    group's waves (measured: 6% of an 8-slice iteration) that per-slice cuts, scattered straight
    into the object, do not need.
    """
    return jax.vmap(lambda corner: jax.lax.dynamic_slice(obj_slice, (corner[0], corner[1]), patch_shape))(top_left)


def cut_all_slices(obj: Any, top_left: Any, patch_shape: tuple[int, int]) -> list[Any]:
    """Every slice's ``(B, N, N)`` patches of ``obj`` ``(S, Ny, Nx)``, one array per slice."""
    return [cut_slice_patches(obj[s], top_left, patch_shape) for s in range(obj.shape[0])]


def split_positions(positions_px: Any, patch_shape: tuple[int, int], object_shape: tuple[int, int]) -> tuple[Any, Any]:
    """Integer patch corners (kept inside the object) and the differentiable sub-pixel rest."""
    rounded = jax.lax.stop_gradient(jnp.round(positions_px))
    centre = jnp.asarray([patch_shape[0] // 2, patch_shape[1] // 2], dtype=positions_px.dtype)
    limit = jnp.asarray([object_shape[0] - patch_shape[0], object_shape[1] - patch_shape[1]], dtype=positions_px.dtype)
    top_left = jnp.clip(rounded - centre, 0, limit).astype(jnp.int32)
    return top_left, positions_px - (top_left + centre)


def materialised(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)``, computed on its own and stored, so that XLA cannot fuse it into its consumers.

    XLA fuses cheap-to-store but costly-to-compute values (the exponentials of 1D phase ramps) into
    every consumer of their broadcast outer product, so each is evaluated once per pixel and per
    use, in the forward and again in the backward pass: measured, a quarter of a 1-slice gradient
    iteration on the CPU. There a conditional is a boundary that fusion does not cross (an
    optimisation barrier did not stop it); both branches are ``fn``, so the predicate never matters.
    """
    if jax.default_backend() != "cpu":
        # on a GPU the recomputation is cheap, and a conditional waits for its predicate on the host
        return fn(*args)
    # a predicate XLA cannot fold to a constant (a constant one would inline the conditional again)
    first = jax.tree_util.tree_leaves(args)[0]
    unknown = jnp.isfinite(jnp.ravel(first)[0])
    return jax.lax.cond(unknown, fn, fn, *args)


def separable_ramp(frac: Any, patch_shape: tuple[int, int]) -> Any:
    """The sub-pixel phase ramp ``(B, N, N)``: the outer product of its 1D factors, computed once."""
    ramp_y, ramp_x = materialised(lambda f: ramp_factors(jnp, f, patch_shape), frac)
    return ramp_y[..., :, None] * ramp_x[..., None, :]


def tilted_propagators(base: Any, thicknesses_A: Any, ky: Any, kx: Any, tilt_mrad: Any) -> Any:
    """Per-position propagators ``(B, S-1, N, N)``: ``base`` times the tilt ramps of each gap."""

    def tilt_factors(tilt_mrad: Any) -> tuple[Any, Any]:
        tan = jnp.tan(tilt_mrad * 1e-3)  # (B, 2)
        dz = thicknesses_A[:-1]  # (S-1,)
        ramp_y = jnp.exp(-2j * math.pi * dz[None, :, None] * ky[None, None, :] * tan[:, None, 0:1])  # (B,S-1,N)
        ramp_x = jnp.exp(-2j * math.pi * dz[None, :, None] * kx[None, None, :] * tan[:, None, 1:2])
        return ramp_y, ramp_x

    ramp_y, ramp_x = materialised(tilt_factors, tilt_mrad)
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
    return intensity_from_patches(probe_modes, cut_all_slices(obj, top_left, patch_shape), frac, propagators)


def intensity_from_patches(probe_modes: Any, patches: list[Any], frac: Any, propagators: Any) -> Any:
    """:func:`model_intensity` from the object patches already cut: one ``(B, N, N)`` per slice.

    ``frac`` ``(B, 2)`` is the sub-pixel rest of each position (:func:`split_positions`).
    """
    ramp = separable_ramp(frac, probe_modes.shape[-2:])  # (B, N, N)
    wave = jnp.fft.ifft2(jnp.fft.fft2(probe_modes)[None] * ramp[:, None])  # (B, M, N, N)
    n_slices = len(patches)
    for s in range(n_slices):
        wave = wave * patches[s][:, None]
        if s < n_slices - 1:
            prop = propagators[..., s, :, :]
            prop = prop[:, None] if prop.ndim == 3 else prop
            wave = jnp.fft.ifft2(jnp.fft.fft2(wave) * prop)
    far = jnp.fft.fft2(wave, norm="ortho")
    return jnp.sum(jnp.real(far) ** 2 + jnp.imag(far) ** 2, axis=1)
