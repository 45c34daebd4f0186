"""Constraints on the positions and tilts: tilt smoothing and projections of the position updates."""

from __future__ import annotations

import math
from types import ModuleType
from typing import Any

import numpy as np
from pydantic import Field, model_validator

from phaser.constraints.base import (
    _TINY,
    ConstraintContext,
    ConstraintProps,
    Fraction,
    NonNegative,
    _blend,
    _gaussian_matrix,
    _real_dtype,
)
from phaser.schedules import schedule_at


class TiltGaussianProps(ConstraintProps):
    """Gaussian smoothing of the tilt map over the scan, ``sigma`` [A] or ``sigma_positions``."""

    sigma: NonNegative | None = Field(None, description="standard deviation [A] in the scan plane")
    sigma_positions: NonNegative | None = Field(None, description="standard deviation [scan steps]")
    weight: Fraction = Field(0.9, description="blend: 1 = fully smoothed, 0 = unchanged")

    @model_validator(mode="after")
    def _one_sigma(self) -> TiltGaussianProps:
        if (self.sigma is None) == (self.sigma_positions is None):
            raise ValueError("give exactly one of sigma and sigma_positions")
        return self

    def numbers(self, i: int, niter: int) -> dict[str, float]:
        return {
            "sigma": 0.0 if self.sigma is None else schedule_at(self.sigma, i, niter),
            "sigma_positions": 0.0 if self.sigma_positions is None else schedule_at(self.sigma_positions, i, niter),
            "weight": schedule_at(self.weight, i, niter),
        }


class PositionsProjectionProps(ConstraintProps):
    """Projection of the positions' displacement (from the initial ones) onto a model."""

    weight: Fraction = Field(1.0, description="blend: 1 = projected, 0 = unchanged")


# --- helpers -------------------------------------------------------------------------------------


def _mean_step(xp: ModuleType, grid: Any, axis: int) -> Any:
    """Mean distance between neighbours of ``grid`` ``(rows, cols, 2)`` along ``axis`` (1 if none)."""
    steps = xp.diff(grid, axis=axis)
    if steps.shape[axis] == 0:
        return xp.asarray(1.0, dtype=grid.dtype)
    return xp.mean(xp.sqrt(xp.sum(steps**2, axis=-1)))


def tilt_gaussian(xp: ModuleType, variables: dict[str, Any], params: Any, context: ConstraintContext) -> dict[str, Any]:
    """Gaussian smoothing of the tilt map ``(P, 2)`` [mrad] over the scan, blended by ``weight``.

    With ``context.scan_shape`` (matching the positions): separable along scan rows and columns (``sigma`` [A] converted
    with the mean initial step); otherwise over every position by its initial distance [A]
    (``sigma_positions`` times the mean nearest-neighbour distance; ``(P, P)`` memory). No
    wrap-around: the kernels are renormalised at the scan edges.
    """
    if "tilt" not in variables:
        return variables
    tilt = variables["tilt"]
    real = _real_dtype(tilt)
    initial_A = xp.asarray(context.initial_positions_px, dtype=real) * xp.asarray(context.sampling_A, dtype=real)
    if context.scan_shape is not None and math.prod(context.scan_shape) == tilt.shape[0]:
        rows, cols = context.scan_shape
        grid = initial_A.reshape(rows, cols, 2)
        sigmas = []
        for axis in (0, 1):
            in_A = params["sigma"] / xp.maximum(_mean_step(xp, grid, axis), _TINY)
            sigmas.append(xp.where(params["sigma_positions"] > 0, params["sigma_positions"], in_A))
        along_y = _gaussian_matrix(xp, xp.arange(rows, dtype=real), sigmas[0])
        along_x = _gaussian_matrix(xp, xp.arange(cols, dtype=real), sigmas[1])
        smoothed = xp.einsum("ab,bcd,ec->aed", along_y, tilt.reshape(rows, cols, 2), along_x).reshape(tilt.shape)
    else:
        distance = xp.sqrt(xp.sum((initial_A[:, None, :] - initial_A[None, :, :]) ** 2, axis=-1))
        n = distance.shape[0]
        nearest = xp.min(distance + xp.where(xp.eye(n) > 0, np.inf, 0.0), axis=1) if n > 1 else xp.ones(1)
        sigma = xp.where(params["sigma_positions"] > 0, params["sigma_positions"] * xp.mean(nearest), params["sigma"])
        weights = xp.exp(-0.5 * (distance / xp.maximum(sigma, _TINY)) ** 2)
        smoothed = (weights / xp.sum(weights, axis=1, keepdims=True)) @ tilt
    return {**variables, "tilt": _blend(params["weight"], smoothed, tilt).astype(tilt.dtype)}


def positions_affine(
    xp: ModuleType, variables: dict[str, Any], params: Any, context: ConstraintContext
) -> dict[str, Any]:
    """Replace the displacement from the initial positions by its least-squares affine fit ``A @ initial + b``.

    Keeps a global scan distortion (scale, rotation, shear, drift) and removes everything else.
    """
    if "positions" not in variables:
        return variables
    pos = variables["positions"]
    real = _real_dtype(pos)
    initial = xp.asarray(context.initial_positions_px, dtype=real)
    displacement = pos - initial
    centred = initial - xp.mean(initial, axis=0, keepdims=True)
    scale = xp.maximum(xp.max(xp.abs(centred)), 1.0)  # unit-sized columns: a well conditioned solve
    design = xp.concatenate([centred / scale, xp.ones((initial.shape[0], 1), dtype=real)], axis=1)  # (P, 3)
    normal = design.T @ design
    ridge = 1e-7 * xp.trace(normal) * xp.eye(3, dtype=real)  # only matters for a collinear scan
    coeffs = xp.linalg.solve(normal + ridge, design.T @ displacement)  # (3, 2)
    fitted = design @ coeffs
    return {**variables, "positions": (initial + _blend(params["weight"], fitted, displacement)).astype(pos.dtype)}


def positions_lines(
    xp: ModuleType, variables: dict[str, Any], params: Any, context: ConstraintContext
) -> dict[str, Any]:
    """Each scan row moves rigidly: the displacement from the initial positions is averaged per row.

    Needs ``context.scan_shape`` (positions in C order, a row = one fast-axis line).
    """
    if "positions" not in variables:
        return variables
    pos = variables["positions"]
    if context.scan_shape is None or math.prod(context.scan_shape) != pos.shape[0]:
        raise ValueError(f"positions_lines needs the scan shape (a raster scan) of {pos.shape[0]} positions")
    rows, cols = context.scan_shape
    initial = xp.asarray(context.initial_positions_px, dtype=_real_dtype(pos))
    displacement = (pos - initial).reshape(rows, cols, 2)
    per_row = xp.broadcast_to(xp.mean(displacement, axis=1, keepdims=True), displacement.shape)
    moved = _blend(params["weight"], per_row, displacement).reshape(pos.shape)
    return {**variables, "positions": (initial + moved).astype(pos.dtype)}
