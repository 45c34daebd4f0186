"""Small array helpers the conventional engines need on every backend (numpy, jax, cupy)."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from phaser.physics.multislice import object_patches

# Floor of denominators: keeps every division finite without changing any non-degenerate value.
TINY = 1e-30


def is_jax(xp: ModuleType) -> bool:
    """Whether ``xp`` is ``jax.numpy`` (arrays are immutable, updates go through ``.at``)."""
    return xp.__name__.startswith("jax")


def scatter_add(xp: ModuleType, target: Any, index: Any, values: Any) -> Any:
    """``target`` with ``values`` added at flat ``index`` (repeated indices accumulate); a new array.

    numpy uses ``np.add.at``, jax ``.at[].add``, cupy ``cupyx.scatter_add`` (real and imaginary
    parts separately, since CUDA's atomic add has no complex type).
    """
    if is_jax(xp):
        return target.at[index].add(values)
    if xp is np:
        out = target.copy()
        np.add.at(out, index, values)
        return out
    import cupyx  # only reached with the cupy backend

    if xp.iscomplexobj(target):
        real = xp.zeros(target.shape, dtype=target.real.dtype)
        imag = xp.zeros(target.shape, dtype=target.real.dtype)
        cupyx.scatter_add(real, index, xp.ascontiguousarray(values.real))
        cupyx.scatter_add(imag, index, xp.ascontiguousarray(values.imag))
        return target + (real + 1j * imag).astype(target.dtype)
    out = target.copy()
    cupyx.scatter_add(out, index, values)
    return out


def patch_indices(xp: ModuleType, top_left: Any, patch_shape: tuple[int, int], object_shape: tuple[int, int]) -> Any:
    """Flat indices ``(B, N, N)`` into an ``object_shape`` array of the patches at ``top_left`` ``(B, 2)``."""
    iy = top_left[:, 0, None] + xp.arange(patch_shape[0])[None, :]
    ix = top_left[:, 1, None] + xp.arange(patch_shape[1])[None, :]
    return iy[:, :, None] * object_shape[1] + ix[:, None, :]


def add_patches(xp: ModuleType, object_shape: tuple[int, int], top_left: Any, patches: Any) -> Any:
    """Sum of ``patches`` ``(B, N, N)`` placed at ``top_left`` on a zero ``object_shape`` array.

    ``top_left`` must keep every patch inside the object.
    """
    if is_jax(xp):
        return _add_patches_jax(object_shape, top_left, patches)
    index = patch_indices(xp, top_left, patches.shape[-2:], object_shape).reshape(-1)
    flat = xp.zeros(object_shape[0] * object_shape[1], dtype=patches.dtype)
    return scatter_add(xp, flat, index, patches.reshape(-1)).reshape(object_shape)


def _add_patches_jax(object_shape: tuple[int, int], top_left: Any, patches: Any) -> Any:
    # one in-place slice update per patch: on the CPU about 15x faster than XLA's element-wise scatter
    import jax

    def add_one(j: Any, total: Any) -> Any:
        corner = (top_left[j, 0], top_left[j, 1])
        current = jax.lax.dynamic_slice(total, corner, patches.shape[-2:])
        return jax.lax.dynamic_update_slice(total, current + patches[j], corner)

    zero = jax.numpy.zeros(object_shape, dtype=patches.dtype)
    return jax.lax.fori_loop(0, patches.shape[0], add_one, zero)


def cut_patches(xp: ModuleType, obj: Any, top_left: Any, patch_shape: tuple[int, int]) -> Any:
    """Patches ``(B, S, N, N)`` of ``obj`` ``(S, Ny, Nx)`` at ``top_left`` ``(B, 2)`` (inside the object).

    On jax one ``dynamic_slice`` per position (about 1.6x faster on the CPU than an index gather).
    """
    if not is_jax(xp):
        return object_patches(xp, obj, top_left, patch_shape)
    import jax

    def cut(corner: Any) -> Any:
        return jax.lax.dynamic_slice(obj, (0, corner[0], corner[1]), (obj.shape[0], *patch_shape))

    return jax.vmap(cut)(top_left)


def abs2(xp: ModuleType, z: Any) -> Any:
    """``|z|^2`` without the square root of ``abs``.

    On jax as ``Re(z conj(z))``, which XLA fuses into one pass (about 2x faster on the CPU than
    squaring the real and imaginary parts, each of which it extracts in a pass of its own).
    """
    if is_jax(xp) and xp.iscomplexobj(z):
        return xp.real(z * xp.conj(z))
    return xp.real(z) ** 2 + xp.imag(z) ** 2
