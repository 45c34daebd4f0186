"""Small array helpers the conventional engines need on every backend (numpy, jax, cupy)."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

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
    """Sum of ``patches`` ``(B, N, N)`` placed at ``top_left`` on a zero ``object_shape`` array."""
    index = patch_indices(xp, top_left, patches.shape[-2:], object_shape).reshape(-1)
    flat = xp.zeros(object_shape[0] * object_shape[1], dtype=patches.dtype)
    return scatter_add(xp, flat, index, patches.reshape(-1)).reshape(object_shape)


def abs2(xp: ModuleType, z: Any) -> Any:
    """``|z|^2`` without the square root of ``abs``."""
    return xp.real(z) ** 2 + xp.imag(z) ** 2
