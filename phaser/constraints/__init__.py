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

from types import ModuleType
from typing import Any

from phaser.constraints.base import ConstraintContext, ConstraintProps, constraint_numbers, constraint_params
from phaser.constraints.object import (
    ClampObjectAmplitudeProps,
    LayersProps,
    NonNegObjectPhaseProps,
    ObjGaussianProps,
    ObjLowPassProps,
    RemovePhaseRampProps,
    clamp_object_amplitude,
    layers,
    nonneg_object_phase,
    obj_gaussian,
    obj_low_pass,
    remove_phase_ramp,
)
from phaser.constraints.positions import (
    PositionsProjectionProps,
    TiltGaussianProps,
    positions_affine,
    positions_lines,
    tilt_gaussian,
)
from phaser.constraints.probe import (
    LimitProbeSupportProps,
    ProbeSupportRealProps,
    ProbeSupportRecipProps,
    probe_support_real,
    probe_support_recip,
)
from phaser.hooks import HookProps


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

__all__ = [
    "CONSTRAINTS",
    "ClampObjectAmplitudeProps",
    "ConstraintContext",
    "ConstraintProps",
    "LayersProps",
    "LimitProbeSupportProps",
    "NonNegObjectPhaseProps",
    "ObjGaussianProps",
    "ObjLowPassProps",
    "PositionsProjectionProps",
    "ProbeSupportRealProps",
    "ProbeSupportRecipProps",
    "RemovePhaseRampProps",
    "TiltGaussianProps",
    "apply_constraints",
    "clamp_object_amplitude",
    "constraint_numbers",
    "constraint_params",
    "layers",
    "nonneg_object_phase",
    "obj_gaussian",
    "obj_low_pass",
    "positions_affine",
    "positions_lines",
    "probe_support_real",
    "probe_support_recip",
    "remove_phase_ramp",
    "tilt_gaussian",
]
