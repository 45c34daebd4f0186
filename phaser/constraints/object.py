"""Constraints on the object: amplitude clamp, depth and lateral smoothing, phase ramp, phase sign."""

from __future__ import annotations

import math
from types import ModuleType
from typing import Any

from pydantic import Field, model_validator

from phaser.constraints.base import (
    _TINY,
    ConstraintContext,
    ConstraintProps,
    Fraction,
    NonNegative,
    Positive,
    _blend,
    _fourier_filter,
    _frequencies,
    _gaussian_matrix,
    _real_dtype,
    _soft_step,
)
from phaser.schedules import Schedule, schedule_at


class ClampObjectAmplitudeProps(ConstraintProps):
    """``amplitude``: the maximum, or ``[min, max]`` (either may be null)."""

    amplitude: float | list[float | None] = Field(1.1, description="max |O|, or [min, max]")

    @model_validator(mode="after")
    def _two_bounds(self) -> ClampObjectAmplitudeProps:
        if isinstance(self.amplitude, list) and len(self.amplitude) != 2:
            raise ValueError("amplitude must be a number or [min, max]")
        return self

    def numbers(self, i: int, niter: int) -> dict[str, float]:
        low, high = self.amplitude if isinstance(self.amplitude, list) else (None, self.amplitude)
        return {"min": 0.0 if low is None else float(low), "max": math.inf if high is None else float(high)}


class LayersProps(ConstraintProps):
    """Gaussian blur of ``log O`` along depth."""

    sigma: NonNegative = Field(50.0, description="standard deviation along depth [A]")
    weight: Fraction = Field(0.9, description="blend: 1 = fully blurred, 0 = unchanged")


class ObjLowPassProps(ConstraintProps):
    """Fourier low-pass of each slice; the cutoff as ``max_freq`` [1/px], ``cutoff_nyquist`` or ``cutoff_A``."""

    max_freq: Positive | None = Field(None, description="cutoff [cycles/px] (Nyquist 0.5); default 0.4")
    cutoff_nyquist: Positive | None = Field(None, description="cutoff as a fraction of Nyquist")
    cutoff_A: Positive | None = Field(None, description="smallest period kept [A]")
    edge: NonNegative = Field(0.0, description="cosine edge width beyond the cutoff, as a fraction of it")

    @model_validator(mode="after")
    def _one_cutoff(self) -> ObjLowPassProps:
        if sum(v is not None for v in (self.max_freq, self.cutoff_nyquist, self.cutoff_A)) > 1:
            raise ValueError("give at most one of max_freq, cutoff_nyquist and cutoff_A")
        return self

    def numbers(self, i: int, niter: int) -> dict[str, float]:
        def value(v: Schedule | None) -> float | None:
            return None if v is None else schedule_at(v, i, niter)

        per_px = value(self.max_freq)
        nyquist, period = value(self.cutoff_nyquist), value(self.cutoff_A)
        if nyquist is not None:
            per_px = 0.5 * nyquist
        if per_px is None and period is None:
            per_px = 0.4
        return {
            "max_freq": per_px or 0.0,
            "max_freq_invA": 0.0 if period is None else 1.0 / period,
            "edge": schedule_at(self.edge, i, niter),
        }


class ObjGaussianProps(ConstraintProps):
    """Lateral Gaussian blur of each slice."""

    sigma: NonNegative = Field(description="standard deviation [A]")
    weight: Fraction = Field(0.9, description="blend: 1 = fully blurred, 0 = unchanged")


class RemovePhaseRampProps(ConstraintProps):
    """Removal of the affine phase ramp (least squares, robust to phase wraps)."""

    per_slice: bool = Field(True, description="fit each slice; false: fit the summed phase, share it among slices")
    scan_region: bool = Field(True, description="fit inside the positions' bounding box (else the whole object)")


class NonNegObjectPhaseProps(ConstraintProps):
    """Negative object phases pulled to zero."""

    weight: Fraction = Field(1.0, description="blend: 1 = phase clipped at 0, 0 = unchanged")


def clamp_object_amplitude(xp: ModuleType, variables: dict[str, Any], params: Any, context: Any) -> dict[str, Any]:
    """``min <= |O| <= max``, the phase kept (a zero pixel becomes ``min``)."""
    obj = variables["object"]
    amp = xp.abs(obj)
    new_amp = xp.clip(amp, params["min"], params["max"])
    scaled = obj * (new_amp / xp.where(amp > 0, amp, 1.0))
    return {**variables, "object": xp.where(amp > 0, scaled, new_amp).astype(obj.dtype)}


def layers(xp: ModuleType, variables: dict[str, Any], params: Any, context: ConstraintContext) -> dict[str, Any]:
    """Gaussian blur of ``log O`` along depth (``sigma`` [A] between slice entrance planes), then blended.

    ``log O`` because the slices multiply; the phase is each slice's own ``arg`` (in (-pi, pi]),
    fine for slices thin enough to stay below pi. A dense ``(S, S)`` kernel renormalised at the
    ends: nothing wraps, the first and last slices never mix through the boundary.
    """
    obj = variables["object"]
    if obj.shape[0] < 2:
        return variables
    real = _real_dtype(obj)
    thickness = xp.asarray(context.slice_thicknesses_A, dtype=real)
    kernel = _gaussian_matrix(xp, xp.cumsum(thickness) - thickness, params["sigma"])
    log_obj = xp.log(xp.maximum(xp.abs(obj), 1e-30)) + 1j * xp.angle(obj)
    blurred = xp.exp(xp.tensordot(kernel.astype(obj.dtype), log_obj.astype(obj.dtype), axes=1))
    return {**variables, "object": _blend(params["weight"], blurred, obj).astype(obj.dtype)}


def obj_low_pass(xp: ModuleType, variables: dict[str, Any], params: Any, context: ConstraintContext) -> dict[str, Any]:
    """Fourier low-pass of each slice of ``O``: ``|k| <= max_freq`` [1/px] or ``max_freq_invA`` [1/A] pass.

    ``edge`` (a fraction of the cutoff) widens the hard edge into a raised cosine beyond the cutoff.
    """
    obj = variables["object"]
    real = _real_dtype(obj)
    ky_px, kx_px = _frequencies(xp, obj.shape, (1.0, 1.0), real)
    ky_A, kx_A = _frequencies(xp, obj.shape, context.sampling_A, real)
    per_px = xp.sqrt(ky_px**2 + kx_px**2) / xp.maximum(params["max_freq"], _TINY)
    per_A = xp.sqrt(ky_A**2 + kx_A**2) / xp.maximum(params["max_freq_invA"], _TINY)
    relative = xp.where(params["max_freq_invA"] > 0, per_A, per_px)
    filt = _soft_step(xp, relative - 1.0, params["edge"]).astype(real)
    return {**variables, "object": _fourier_filter(xp, obj, filt)}


def obj_gaussian(xp: ModuleType, variables: dict[str, Any], params: Any, context: ConstraintContext) -> dict[str, Any]:
    """Lateral Gaussian blur of each slice of ``O`` (``sigma`` [A], Fourier filter), blended by ``weight``."""
    obj = variables["object"]
    ky, kx = _frequencies(xp, obj.shape, context.sampling_A, _real_dtype(obj))
    filt = xp.exp(-2.0 * math.pi**2 * params["sigma"] ** 2 * (ky**2 + kx**2))
    filt = (1.0 - params["weight"] * (1.0 - filt)).astype(_real_dtype(obj))
    return {**variables, "object": _fourier_filter(xp, obj, filt)}


def _scan_region_weights(xp: ModuleType, variables: dict[str, Any], params: Any, shape: tuple[int, ...]) -> Any:
    """1 inside the positions' bounding box [object px] (everywhere without positions or ``scan_region``)."""
    ys = xp.arange(shape[-2])[:, None]
    xs = xp.arange(shape[-1])[None, :]
    everywhere = xp.ones(shape[-2:])
    if "positions" not in variables:
        return everywhere
    pos = variables["positions"]
    low, high = xp.min(pos, axis=0), xp.max(pos, axis=0)
    inside = (ys >= xp.floor(low[0])) & (ys <= xp.ceil(high[0])) & (xs >= xp.floor(low[1])) & (xs <= xp.ceil(high[1]))
    return xp.where(params["scan_region"] > 0, xp.where(inside, 1.0, 0.0), everywhere)


def _fit_phase_ramp(xp: ModuleType, field: Any, weights: Any) -> Any:
    """Affine phase ``a + b y + c x`` [rad] of each of ``field`` ``(K, Ny, Nx)``, weighted least squares.

    First the slopes from the weighted mean of wrapped neighbour differences (exact for a pure
    ramp however many times it wraps) and the offset from the circular mean, then a least-squares
    fit of what is left (exact as long as that stays within +-pi).
    """
    ny, nx = field.shape[-2:]
    real = _real_dtype(field)
    w = xp.asarray(weights, dtype=real)
    pair_y, pair_x = w[1:, :] * w[:-1, :], w[:, 1:] * w[:, :-1]
    slope_y = xp.sum(pair_y * xp.angle(field[:, 1:, :] * xp.conj(field[:, :-1, :])), axis=(-2, -1))
    slope_x = xp.sum(pair_x * xp.angle(field[:, :, 1:] * xp.conj(field[:, :, :-1])), axis=(-2, -1))
    slope_y = slope_y / xp.maximum(xp.sum(pair_y), 1.0)
    slope_x = slope_x / xp.maximum(xp.sum(pair_x), 1.0)
    ys = xp.asarray(xp.arange(ny) - (ny - 1) / 2, dtype=real)[:, None] * xp.ones((1, nx), dtype=real)
    xs = xp.asarray(xp.arange(nx) - (nx - 1) / 2, dtype=real)[None, :] * xp.ones((ny, 1), dtype=real)
    coarse = slope_y[:, None, None] * ys + slope_x[:, None, None] * xs
    flattened = field * xp.exp(-1j * coarse).astype(field.dtype)
    # the circular mean as offset: what is left sits around 0, away from the branch cut
    coarse = coarse + xp.angle(xp.sum(flattened * w, axis=(-2, -1)))[:, None, None]
    rest = xp.angle(field * xp.exp(-1j * coarse).astype(field.dtype))
    basis = xp.stack([xp.ones((ny, nx), dtype=real), ys / ny, xs / nx]).reshape(3, -1)  # scaled: well conditioned
    normal = (basis * w.reshape(1, -1)) @ basis.T
    rhs = (rest.reshape(rest.shape[0], -1) * w.reshape(1, -1)) @ basis.T  # (K, 3)
    coeffs = xp.linalg.solve(normal + 1e-9 * xp.eye(3, dtype=real), rhs.T).T
    return coarse + (coeffs @ basis).reshape(rest.shape)


def remove_phase_ramp(xp: ModuleType, variables: dict[str, Any], params: Any, context: Any) -> dict[str, Any]:
    """Subtract the fitted affine phase ramp (offset included) [rad]; the amplitude is kept.

    ``per_slice``: each slice's ramp; otherwise the ramp of the summed phase (the phase of the
    product of the slices), shared equally among them. Fitted over the positions' bounding box when
    ``scan_region`` and the variables hold positions, else over the whole object.
    """
    obj = variables["object"]
    weights = _scan_region_weights(xp, variables, params, obj.shape)
    each = _fit_phase_ramp(xp, obj, weights)
    total = _fit_phase_ramp(xp, xp.prod(obj, axis=0, keepdims=True), weights) / obj.shape[0]
    ramp = xp.where(params["per_slice"] > 0, each, total)
    return {**variables, "object": (obj * xp.exp(-1j * ramp).astype(obj.dtype)).astype(obj.dtype)}


def nonneg_object_phase(xp: ModuleType, variables: dict[str, Any], params: Any, context: Any) -> dict[str, Any]:
    """``arg O -> weight * max(arg O, 0) + (1 - weight) * arg O``; the amplitude is kept."""
    obj = variables["object"]
    phase = xp.angle(obj)
    change = params["weight"] * (xp.maximum(phase, 0.0) - phase)
    return {**variables, "object": (obj * xp.exp(1j * change).astype(obj.dtype)).astype(obj.dtype)}


# --- probe ---------------------------------------------------------------------------------------
