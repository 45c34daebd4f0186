"""Constraints: projections applied to the variables after a group step or after an iteration.

Each is a pure function ``constraint(xp, variables, params, context) -> variables`` over the
variables dict (``object`` (S, Ny, Nx) complex, ``probe`` (M, N, N) complex, real space, centred
at ``N//2``, ``positions`` (P, 2) [object px], ``tilt`` (P, 2) [mrad]); it returns a new dict and
leaves a variable it does not know untouched (a missing key is left missing). ``params`` holds the
traced numbers of :func:`constraint_numbers` (schedules evaluated), so a new value never
recompiles; ``context`` (:class:`ConstraintContext`) holds what the run fixes. Every function runs
on numpy and jax.numpy alike and traces under ``jax.jit`` (shapes come only from the arrays).

Names and parameters follow the original phaser package where it has the constraint, so its plans
run here (``limit_probe_support`` is ``probe_support_recip`` with a hard edge by default).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import ModuleType
from typing import Annotated, Any

import numpy as np
from pydantic import Field, model_validator

from phaser.hooks import HookProps
from phaser.schedules import Schedule, ScheduleModel, schedule_at

_TINY = 1e-30  # keeps divisions by a zero width or sigma finite


@dataclass(frozen=True)
class ConstraintContext:
    """What a constraint may need besides the variables; fixed during an engine run.

    Attributes
    ----------
    sampling_A
        Real-space pixel size ``(dy, dx)`` [A] of the probe and the object.
    wavelength_A
        Electron wavelength [A].
    slice_thicknesses_A
        ``(S,)`` slice thicknesses [A].
    scan_shape
        ``(rows, cols)`` of a raster scan (positions in C order, rows = y), or ``None``.
    initial_positions_px
        ``(P, 2)`` positions [object px] at the start of the run, ``(y, x)``.
    """

    sampling_A: tuple[float, float]
    wavelength_A: float
    slice_thicknesses_A: Any
    scan_shape: tuple[int, int] | None
    initial_positions_px: Any

    @classmethod
    def from_state(cls, state: Any) -> ConstraintContext:
        """The context of a :class:`phaser.state.ReconsState` (positions from ``initial_positions_A``)."""
        sampling = tuple(float(s) for s in state.sampling_A)
        return cls(
            sampling_A=sampling,  # type: ignore[arg-type]
            wavelength_A=float(state.wavelength_A),
            slice_thicknesses_A=np.asarray(state.slice_thicknesses_A, dtype=np.float64),
            scan_shape=None if state.scan_shape is None else tuple(state.scan_shape),
            initial_positions_px=np.asarray(state.initial_positions_A, dtype=np.float64) / np.asarray(sampling),
        )


def _register_pytree() -> None:
    # arrays travel as traced leaves, the rest is static: the context can be a jit argument
    try:
        import jax
    except ImportError:  # pragma: no cover - jax is a dependency, but the module does not need it
        return
    jax.tree_util.register_pytree_node(
        ConstraintContext,
        lambda c: ((c.slice_thicknesses_A, c.initial_positions_px), (c.sampling_A, c.wavelength_A, c.scan_shape)),
        lambda aux, leaves: ConstraintContext(aux[0], aux[1], leaves[0], aux[2], leaves[1]),
    )


_register_pytree()


# --- parameters ----------------------------------------------------------------------------------

# schedules whose plain-number form is bounded (a schedule's values are not checked)
Positive = Annotated[float, Field(gt=0)] | ScheduleModel
NonNegative = Annotated[float, Field(ge=0)] | ScheduleModel
Fraction = Annotated[float, Field(ge=0, le=1)] | ScheduleModel


class ConstraintProps(HookProps):
    """Base of the constraints' parameters; :meth:`numbers` gives the function's ``params``."""

    def numbers(self, i: int, niter: int) -> dict[str, float]:
        """The numbers at engine iteration ``i`` (1-based): numeric fields, schedules evaluated, bools as 0/1."""
        out = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, bool):
                out[name] = float(value)
            elif isinstance(value, (int, float)) or hasattr(value, "at"):
                out[name] = schedule_at(value, i, niter)
        return out


def constraint_numbers(props: Any, i: int, niter: int) -> dict[str, float]:
    """``params`` of a constraint hook at iteration ``i``: ``props.numbers``, or a custom hook's plain numbers."""
    if isinstance(props, ConstraintProps):
        return props.numbers(i, niter)
    dumped = props.model_dump() if hasattr(props, "model_dump") else dict(props)
    return {k: float(v) for k, v in dumped.items() if isinstance(v, (int, float))}


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


def _real_dtype(array: Any) -> Any:
    return array.real.dtype


def _soft_step(xp: ModuleType, excess: Any, width: Any) -> Any:
    """1 where ``excess <= 0``, a raised-cosine fall to 0 at ``excess = width``; a hard step for width 0.

    The hard step keeps a point within 1e-5 of the edge (rounding must not decide it).
    """
    t = xp.clip(excess / xp.maximum(width, _TINY), 0.0, 1.0)
    return xp.where(width > 0, 0.5 * (1.0 + xp.cos(math.pi * t)), xp.where(excess <= 1e-5, 1.0, 0.0))


def _blend(weight: Any, new: Any, old: Any) -> Any:
    return weight * new + (1.0 - weight) * old


def _gaussian_matrix(xp: ModuleType, coords: Any, sigma: Any) -> Any:
    """Row-normalised Gaussian weights between 1D ``coords``: no wrap-around, the kernel renormalised at the ends."""
    diff = (coords[:, None] - coords[None, :]) / xp.maximum(sigma, _TINY)
    weights = xp.exp(-0.5 * diff**2)
    return weights / xp.sum(weights, axis=1, keepdims=True)


def _frequencies(xp: ModuleType, shape: tuple[int, ...], spacing: tuple[float, float], dtype: Any) -> tuple[Any, Any]:
    """Unshifted spatial frequencies ``(ky[:, None], kx[None, :])`` [1/unit of spacing]."""
    ky = xp.asarray(xp.fft.fftfreq(shape[-2], spacing[0]), dtype=dtype)
    kx = xp.asarray(xp.fft.fftfreq(shape[-1], spacing[1]), dtype=dtype)
    return ky[:, None], kx[None, :]


def _fourier_filter(xp: ModuleType, array: Any, filt: Any) -> Any:
    return xp.fft.ifft2(xp.fft.fft2(array) * filt).astype(array.dtype)


# --- object --------------------------------------------------------------------------------------


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


def apply_constraints(
    xp: ModuleType,
    functions: tuple[Any, ...],
    variables: dict[str, Any],
    params: tuple[Any, ...],
    context: ConstraintContext,
) -> dict[str, Any]:
    """Apply ``functions`` in order, each with its ``params``."""
    for function, numbers in zip(functions, params, strict=True):
        variables = function(xp, variables, numbers, context)
    return variables


CONSTRAINTS: dict[str, tuple[Any, type[HookProps]]] = {
    "clamp_object_amplitude": (clamp_object_amplitude, ClampObjectAmplitudeProps),
    "limit_probe_support": (probe_support_recip, LimitProbeSupportProps),
    "probe_support_recip": (probe_support_recip, ProbeSupportRecipProps),
    "probe_support_real": (probe_support_real, ProbeSupportRealProps),
    "layers": (layers, LayersProps),
    "obj_low_pass": (obj_low_pass, ObjLowPassProps),
    "obj_gaussian": (obj_gaussian, ObjGaussianProps),
    "remove_phase_ramp": (remove_phase_ramp, RemovePhaseRampProps),
    "nonneg_object_phase": (nonneg_object_phase, NonNegObjectPhaseProps),
    "tilt_gaussian": (tilt_gaussian, TiltGaussianProps),
    "positions_affine": (positions_affine, PositionsProjectionProps),
    "positions_lines": (positions_lines, PositionsProjectionProps),
}
"""Every built-in constraint: name -> (function, props class); each is both a group and an iteration constraint."""
