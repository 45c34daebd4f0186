"""Pixel-wise comparisons of two images on the same grid: MSE, RMSE and SSIM.

None of these functions aligns anything: ``a`` and ``b`` must already share grid, origin, offset
and scale (see :func:`phaser.metrics.align.align_to`). ``b`` is the reference (e.g. the truth).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from skimage.metrics import structural_similarity


def _pair(a: Any, b: Any) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    return a, b


def _selected(values: np.ndarray, mask: Any) -> np.ndarray:
    if mask is None:
        return values
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != values.shape:
        raise ValueError(f"mask of shape {mask.shape} does not match images of shape {values.shape}")
    if not mask.any():
        raise ValueError("mask selects no pixel")
    return values[mask]


def mse(a: Any, b: Any, mask: Any = None) -> float:
    """Mean squared difference ``mean |a - b|^2`` over the pixels (of ``mask``, if given).

    Lower is better (0 for identical images). Units: the images' unit squared (rad^2 for phases).
    Alignment: none, the images must already be aligned.
    """
    a, b = _pair(a, b)
    return float(np.mean(_selected(np.abs(a - b) ** 2, mask)))


def ncc(a: Any, b: Any, mask: Any = None) -> float:
    """Normalised cross-correlation (Pearson's r) of two real images over the pixels (of ``mask``).

    1 for images equal up to a positive scale and an offset, 0 for unrelated ones; unitless and
    blind to the phase scale, so it scores the shape of a reconstruction. Alignment: none.
    """
    a, b = _pair(a, b)
    x = _selected(np.asarray(a, dtype=np.float64), mask)
    y = _selected(np.asarray(b, dtype=np.float64), mask)
    x, y = x - x.mean(), y - y.mean()
    denominator = float(np.sqrt(np.sum(x * x) * np.sum(y * y)))
    if denominator == 0.0:
        raise ValueError("ncc: an image is constant over the selected pixels")
    return float(np.sum(x * y) / denominator)


def rmse(a: Any, b: Any, mask: Any = None) -> float:
    """Root of :func:`mse`: the rms difference of ``a`` and ``b``.

    Lower is better (0 for identical images). Units: the images' unit (rad for phases).
    Alignment: none, the images must already be aligned.
    """
    return float(np.sqrt(mse(a, b, mask)))


def ssim(a: Any, b: Any, data_range: float | None = None, mask: Any = None) -> float:
    """Structural similarity (Wang et al. 2004) of real images ``a`` and reference ``b``.

    :func:`skimage.metrics.structural_similarity` on float64 copies with its default 7x7 uniform
    window (so both sides must be at least 7 px); with ``mask`` the SSIM map is averaged over the
    masked pixels only (windows near the mask's edge still see a few pixels outside it).

    Higher is better: 1 for identical images, about 0 for unrelated ones, down to -1.
    Unitless. ``data_range`` is the dynamic range of the images in their unit (default: the range
    of ``b`` inside the mask; 1 if ``b`` is constant). Alignment: none.
    """
    a, b = _pair(a, b)
    if np.iscomplexobj(a) or np.iscomplexobj(b):
        raise TypeError("ssim needs real images (e.g. phases), not complex ones")
    a, b = a.astype(np.float64), b.astype(np.float64)
    if data_range is None:
        reference = _selected(b, mask)
        data_range = float(reference.max() - reference.min()) or 1.0
    mean_ssim, ssim_map = structural_similarity(a, b, data_range=data_range, full=True)
    # without a mask, skimage's own mean (which skips a half-window border) is the standard value
    return float(mean_ssim if mask is None else np.mean(_selected(ssim_map, mask)))
