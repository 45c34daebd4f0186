"""Shared parts of the constraints: the run context, the props base and small array helpers."""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import ModuleType
from typing import Annotated, Any

import numpy as np
from pydantic import Field

from phaser.hooks import HookProps
from phaser.schedules import ScheduleModel, schedule_at

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


def constraint_params(xp: ModuleType, hooks: Any, i: int, niter: int, dtype: Any) -> tuple[dict[str, Any], ...]:
    """The numbers of each constraint hook at iteration ``i`` as ``xp`` scalars (traced under jit)."""
    return tuple(
        {k: xp.asarray(v, dtype=dtype) for k, v in constraint_numbers(h.props, i, niter).items()} for h in hooks
    )
