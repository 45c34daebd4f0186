"""Constraints on the probe: supports in real and reciprocal space."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np
from pydantic import Field, model_validator

from phaser.constraints.base import (
    ConstraintContext,
    ConstraintProps,
    NonNegative,
    Positive,
    _fourier_filter,
    _frequencies,
    _real_dtype,
    _soft_step,
)
from phaser.schedules import schedule_at


class ProbeSupportRealProps(ConstraintProps):
    """A disc of radius ``radius_A`` [A] or ``radius_frac`` (of half the window's smaller side) around the centre."""

    radius_A: Positive | None = Field(None, description="radius [A]")
    radius_frac: Positive | None = Field(None, description="radius / (half the smaller window side)")
    edge_A: NonNegative = Field(1.0, description="width [A] of the cosine edge outside the radius (0: hard)")

    @model_validator(mode="after")
    def _one_radius(self) -> ProbeSupportRealProps:
        if (self.radius_A is None) == (self.radius_frac is None):
            raise ValueError("give exactly one of radius_A and radius_frac")
        return self

    def numbers(self, i: int, niter: int) -> dict[str, float]:
        return {
            "radius_A": 0.0 if self.radius_A is None else schedule_at(self.radius_A, i, niter),
            "radius_frac": 0.0 if self.radius_frac is None else schedule_at(self.radius_frac, i, niter),
            "edge_A": schedule_at(self.edge_A, i, niter),
        }


class LimitProbeSupportProps(ConstraintProps):
    """Aperture of the Fourier probe: scattering angles up to ``max_angle`` [mrad] pass."""

    max_angle: Positive = Field(description="aperture semi-angle [mrad]")
    edge_mrad: NonNegative = Field(0.0, description="width [mrad] of the cosine edge outside (0: hard)")


class ProbeSupportRecipProps(LimitProbeSupportProps):
    """Aperture of the Fourier probe with a soft edge by default."""

    edge_mrad: NonNegative = Field(1.0, description="width [mrad] of the cosine edge outside (0: hard)")


def probe_support_real(
    xp: ModuleType, variables: dict[str, Any], params: Any, context: ConstraintContext
) -> dict[str, Any]:
    """Zero the probe outside a disc around pixel ``N//2``: radius ``radius_A`` [A] or ``radius_frac``.

    ``radius_frac`` is a fraction of half the window's smaller side (1: the inscribed disc); a
    raised-cosine edge of width ``edge_A`` [A] lies outside the radius.
    """
    probe = variables["probe"]
    real = _real_dtype(probe)
    (ny, nx), (dy, dx) = probe.shape[-2:], context.sampling_A
    ys = xp.asarray((np.arange(ny) - ny // 2) * dy, dtype=real)[:, None]
    xs = xp.asarray((np.arange(nx) - nx // 2) * dx, dtype=real)[None, :]
    radius = params["radius_A"] + params["radius_frac"] * (0.5 * min(ny * dy, nx * dx))
    mask = _soft_step(xp, xp.sqrt(ys**2 + xs**2) - radius, params["edge_A"]).astype(real)
    return {**variables, "probe": (probe * mask).astype(probe.dtype)}


def probe_support_recip(
    xp: ModuleType, variables: dict[str, Any], params: Any, context: ConstraintContext
) -> dict[str, Any]:
    """Aperture on the Fourier probe: angles ``lambda |k|`` up to ``max_angle`` [mrad] pass, edge ``edge_mrad``."""
    probe = variables["probe"]
    real = _real_dtype(probe)
    ky, kx = _frequencies(xp, probe.shape, context.sampling_A, real)
    angle_mrad = 1e3 * context.wavelength_A * xp.sqrt(ky**2 + kx**2)
    mask = _soft_step(xp, angle_mrad - params["max_angle"], params["edge_mrad"]).astype(real)
    return {**variables, "probe": _fourier_filter(xp, probe, mask)}


# --- tilt and positions --------------------------------------------------------------------------
