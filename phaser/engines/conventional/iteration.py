"""One pass of the conventional engine over the groups of an iteration, compiled whole on jax.

A group step runs the multislice model for the group's positions, scores it with the noise model
(the engine's own loss) and with the common amplitude residual of :mod:`phaser.engines.errors`,
corrects the far-field waves with the noise model's wave update and hands the real-space exit-wave correction to the
solver hook; the group constraints follow. :func:`conventional_iteration` runs the steps of every
group of one iteration: on jax as one jit-compiled program (the groups inside ``lax.scan``; numbers
enter as traced values, so only the structure and the shapes compile), on numpy and cupy as a
Python loop over the same steps.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

from phaser.constraints import ConstraintContext, apply_constraints
from phaser.engines.conventional.arrays import abs2, is_jax, scatter_add
from phaser.engines.conventional.forward import (
    Setup,
    StepOptions,
    Variables,
    forward_group,
    split_positions,
)
from phaser.engines.conventional.noise_updates import wave_update
from phaser.engines.conventional.positions import shift_estimate
from phaser.engines.errors import amplitude_residuals
from phaser.noise import NOISE_LOSSES
from phaser.physics.shift import ramp_factors


def group_step(
    xp: Any,
    solver: Callable[..., Any],
    options: StepOptions,
    variables: Variables,
    solver_state: Any,
    indices: Any,
    weights: Any,
    setup: Setup,
    params: dict[str, Any],
    factors: tuple[Any, Any] | None = None,
) -> tuple[Variables, Any, Any, Any, Any]:
    """Forward, score, correct, update: returns variables, solver state, losses and amplitude residuals
    ``(B,)`` (zero for padding), and the shift estimates ``(B, 2)`` [px] (None without position updates).

    ``factors``: the sub-pixel ramp factors of the group's positions, if computed ahead.
    """
    forward = forward_group(xp, variables, indices, setup, options, factors)
    measured = setup.patterns[indices]
    model = xp.sum(abs2(xp, forward.far), axis=1)
    losses = NOISE_LOSSES[options.noise_model](xp, model, measured, setup.noise_params) * weights
    residuals = amplitude_residuals(xp, model, measured) * weights
    corrected = wave_update(options.noise_model)(xp, forward.far, measured, setup.noise_params)
    chi = xp.fft.ifft2(corrected - forward.far, norm="ortho") * weights[:, None, None, None]
    variables, solver_state, chi_first = solver(xp, variables, solver_state, forward, chi, weights, options, params)
    shifts = shift_estimate(xp, forward, chi_first, weights) if options.update_positions else None
    return variables, solver_state, losses, residuals, shifts


def constrained(
    xp: Any, functions: tuple[Any, ...], variables: Variables, params: tuple[Any, ...], context: ConstraintContext
) -> Variables:
    """``variables`` after the constraints (the engine's tuple converted to and from their dict)."""
    if not functions:
        return variables
    result = apply_constraints(xp, functions, variables._asdict(), params, context)
    return Variables(**{name: result[name] for name in Variables._fields})


def _constrained_step(
    xp: Any,
    solver: Callable[..., Any],
    options: StepOptions,
    group_constraints: tuple[Any, ...],
    variables: Variables,
    solver_state: Any,
    indices: Any,
    weights: Any,
    setup: Setup,
    params: dict[str, Any],
    group_params: tuple[Any, ...],
    context: ConstraintContext,
    factors: tuple[Any, Any] | None = None,
) -> tuple[Variables, Any, Any, Any, Any]:
    """:func:`group_step` then the group constraints; losses and residuals summed over the group."""
    variables, solver_state, losses, residuals, shifts = group_step(
        xp, solver, options, variables, solver_state, indices, weights, setup, params, factors
    )
    variables = constrained(xp, group_constraints, variables, group_params, context)
    return variables, solver_state, xp.sum(losses), xp.sum(residuals), shifts


def _scan_pass(
    solver: Callable[..., Any],
    options: StepOptions,
    group_constraints: tuple[Any, ...],
    variables: Variables,
    solver_state: Any,
    indices: Any,
    weights: Any,
    setup: Setup,
    params: dict[str, Any],
    group_params: tuple[Any, ...],
    context: ConstraintContext,
) -> tuple[Variables, Any, Any, Any, Any]:
    """The jax pass: :func:`_constrained_step` over the rows of ``indices``/``weights`` in ``lax.scan``."""
    import jax
    import jax.numpy as jnp

    real = weights.dtype
    groups: tuple[Any, ...] = (indices, weights)
    if not _moves_positions(group_constraints, variables, group_params, context):
        # the positions stay put during the pass: every group's sub-pixel ramps can be computed at once
        patch_shape, object_shape = variables.probe.shape[-2:], variables.object.shape[-2:]
        _, subpixel = split_positions(jnp, variables.positions[indices], patch_shape, object_shape)
        groups = (*groups, ramp_factors(jnp, subpixel, patch_shape))

    def step(carry: tuple[Any, ...], group: tuple[Any, ...]) -> tuple[tuple[Any, ...], None]:
        variables, solver_state, loss, residual, shifts = carry
        group_idx, group_w = group[:2]
        variables, solver_state, group_loss, group_residual, group_shifts = _constrained_step(
            jnp,
            solver,
            options,
            group_constraints,
            variables,
            solver_state,
            group_idx,
            group_w,
            setup,
            params,
            group_params,
            context,
            group[2] if len(group) > 2 else None,
        )
        if group_shifts is not None:
            shifts = shifts.at[group_idx].add(group_shifts.astype(real))
        loss, residual = loss + group_loss.astype(real), residual + group_residual.astype(real)
        return (variables, solver_state, loss, residual, shifts), None

    zero = jnp.zeros((), dtype=real)
    carry = (variables, solver_state, zero, zero, jnp.zeros(variables.positions.shape, dtype=real))
    carry, _ = jax.lax.scan(step, carry, groups)
    return carry


def _moves_positions(
    group_constraints: tuple[Any, ...], variables: Variables, group_params: tuple[Any, ...], context: ConstraintContext
) -> bool:
    """Whether a group constraint may move the positions (decided while tracing: one that leaves them
    alone returns the very same array; the unused trial costs nothing once compiled)."""
    import jax.numpy as jnp

    return constrained(jnp, group_constraints, variables, group_params, context).positions is not variables.positions


@cache
def _jitted_pass() -> Callable[..., Any]:
    # one compiled program per (solver, options, constraint functions, shapes), shared by every run
    import jax

    return jax.jit(_scan_pass, static_argnums=(0, 1, 2))


def conventional_iteration(
    xp: Any,
    solver: Callable[..., Any],
    options: StepOptions,
    variables: Variables,
    solver_state: Any,
    indices: Any,
    weights: Any,
    setup: Setup,
    params: dict[str, Any],
    group_constraints: tuple[Any, ...],
    group_params: tuple[Any, ...],
    context: ConstraintContext,
) -> tuple[Variables, Any, Any, Any, Any]:
    """One iteration's pass over the groups ``indices``/``weights`` ``(G, B)`` (from ``pad_groups``).

    Each group: :func:`group_step`, then ``group_constraints`` with ``group_params``. Returns the
    variables, the solver state, the noise model's loss and the amplitude residual summed over every
    position (backend scalars, not read back), and the shift estimates ``(P, 2)`` [px] summed per
    position (zeros when ``options`` does not update the positions). The solver's
    ``finish_iteration`` is left to the caller.
    """
    real = variables.positions.dtype
    indices = xp.asarray(indices)
    weights = xp.asarray(weights, dtype=real)
    group_constraints, group_params = tuple(group_constraints), tuple(group_params)
    if is_jax(xp):
        return _jitted_pass()(
            solver,
            options,
            group_constraints,
            variables,
            solver_state,
            indices,
            weights,
            setup,
            params,
            group_params,
            context,
        )
    loss = residual = xp.zeros((), dtype=real)
    shifts = xp.zeros(variables.positions.shape, dtype=real)
    for group_idx, group_w in zip(indices, weights, strict=True):
        variables, solver_state, group_loss, group_residual, group_shifts = _constrained_step(
            xp,
            solver,
            options,
            group_constraints,
            variables,
            solver_state,
            group_idx,
            group_w,
            setup,
            params,
            group_params,
            context,
        )
        loss, residual = loss + group_loss, residual + group_residual
        if group_shifts is not None:
            shifts = scatter_add(xp, shifts, group_idx, group_shifts.astype(real))
    return variables, solver_state, loss, residual, shifts
