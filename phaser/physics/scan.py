"""Scan patterns: raster grids with step, rotation and an affine distortion."""

from __future__ import annotations

import math

import numpy as np


def raster_positions_A(
    shape: tuple[int, int],
    step_A: float | tuple[float, float],
    rotation_deg: float = 0.0,
    affine: np.ndarray | None = None,
) -> np.ndarray:
    """Probe positions [A], shape ``(scan_y * scan_x, 2)`` as ``(y, x)``, fast axis x, zero mean.

    ``rotation_deg`` turns the scan counter-clockwise (from +x towards +y); ``affine`` is a 2x2 matrix
    applied to ``(y, x)`` after the rotation (scan distortion).
    """
    step_y, step_x = (step_A, step_A) if np.isscalar(step_A) else step_A
    iy, ix = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    pos = np.stack([iy.ravel() * step_y, ix.ravel() * step_x], axis=-1).astype(np.float64)
    pos -= pos.mean(axis=0)
    theta = math.radians(rotation_deg)
    rot = np.array([[math.cos(theta), math.sin(theta)], [-math.sin(theta), math.cos(theta)]])
    # rows act on (y, x): y' = y cos + x sin, x' = -y sin + x cos  (counter-clockwise in x-y)
    pos = pos @ rot.T
    if affine is not None:
        pos = pos @ np.asarray(affine, dtype=np.float64).T
    return pos
