"""The conventional engine: ePIE or LSQML group updates, per-iteration position refinement.

A group step runs the multislice model for the group's positions, scores it with the noise model
(the reported error, the same per-pattern loss as the gradient engine), corrects the far-field
waves with the noise model's wave update and hands the real-space exit-wave correction to the
solver hook. A solver hook is called as

    solver(xp, variables, solver_state, forward, chi, weights, options, params)
        -> (variables, solver_state, chi_first)

with ``params`` the numbers of its props at this iteration (schedules evaluated); it may carry
``solver.init_state(xp, variables, props)`` and
``solver.finish_iteration(xp, variables, solver_state, options, params)``. A position-solver hook
is called once per iteration as ``position_solver(xp, shift_px, previous_move_px, i, niter, props)``
and returns the moves ``(P, 2)`` [px]. On jax every group step is jit-compiled; numbers enter as
traced scalars, so only the update flags can cause a recompile.

Group constraints run after every group step, iteration constraints after each pass. Not used here:
``calc_error``/``calc_error_fraction`` (the error comes free with every pass), ``check_every_group``,
``send_every_group``, ``buffer_n_groups``, ``jit_unroll_slices``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import cache, partial
from typing import Any

import numpy as np

from phaser.backend import to_numpy
from phaser.constraints import ConstraintContext, apply_constraints, constraint_params
from phaser.engines.context import EngineContext
from phaser.engines.conventional.arrays import abs2, is_jax, scatter_add
from phaser.engines.conventional.forward import Setup, StepOptions, Variables, forward_group
from phaser.engines.conventional.noise_updates import wave_update
from phaser.engines.conventional.positions import rms_move, shift_estimate
from phaser.engines.grouping import make_groups, pad_groups
from phaser.noise import NOISE_LOSSES
from phaser.physics.grids import fft_frequencies
from phaser.physics.propagation import gap_propagators
from phaser.plan.schema import ConventionalEnginePlan
from phaser.schedules import flag_at, flag_ever, schedule_at
from phaser.state import ReconsState

logger = logging.getLogger(__name__)


def _group_step(
    xp: Any,
    solver: Callable[..., Any],
    options: StepOptions,
    variables: Variables,
    solver_state: Any,
    indices: Any,
    weights: Any,
    setup: Setup,
    params: dict[str, Any],
) -> tuple[Variables, Any, Any, Any]:
    """Forward, score, correct, update: returns variables, solver state, losses ``(B,)``, shifts."""
    forward = forward_group(xp, variables, indices, setup, options)
    measured = setup.patterns[indices]
    model = xp.sum(abs2(xp, forward.far), axis=1)
    losses = NOISE_LOSSES[options.noise_model](xp, model, measured, setup.noise_params) * weights
    corrected = wave_update(options.noise_model)(xp, forward.far, measured, setup.noise_params)
    chi = xp.fft.ifft2(corrected - forward.far, norm="ortho") * weights[:, None, None, None]
    variables, solver_state, chi_first = solver(xp, variables, solver_state, forward, chi, weights, options, params)
    shifts = shift_estimate(xp, forward, chi_first, weights) if options.update_positions else None
    return variables, solver_state, losses, shifts


@cache
def _jitted_group_step() -> Callable[..., Any]:
    # one compiled program per (solver, options, shapes), shared by every engine run of the process
    import jax

    return jax.jit(_group_step, static_argnums=(0, 1, 2))


def _step_function(xp: Any) -> Callable[..., Any]:
    return partial(_jitted_group_step() if is_jax(xp) else _group_step, xp)


def _numbers(xp: Any, props: Any, i: int, niter: int, dtype: Any) -> dict[str, Any]:
    """The numeric (and schedule) fields of ``props`` at iteration ``i``, as backend scalars."""
    out = {}
    for name in props.model_dump():
        value = getattr(props, name)
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, (int, float)) or hasattr(value, "at"):
            out[name] = xp.asarray(schedule_at(value, i, niter), dtype=dtype)
    return out


def _setup(plan: ConventionalEnginePlan, state: ReconsState, patterns: np.ndarray, backend: Any) -> Setup:
    xp, real, cplx = backend.xp, backend.real_dtype, backend.complex_dtype
    shape = state.probe_shape
    thicknesses = np.asarray(state.slice_thicknesses_A, dtype=np.float64)
    props = gap_propagators(np, shape, state.sampling_A, state.wavelength_A, thicknesses, plan.bwlim_frac, np.float64)
    ky, kx = fft_frequencies(np, shape, state.sampling_A, np.float64)
    return Setup(
        patterns=xp.asarray(np.fft.ifftshift(patterns, axes=(-2, -1)), dtype=real),
        propagators=xp.asarray(props, dtype=cplx),
        thicknesses=xp.asarray(thicknesses, dtype=real),
        ky=xp.asarray(ky[:, 0], dtype=real),
        kx=xp.asarray(kx[0, :], dtype=real),
        tilt_mrad=xp.asarray(to_numpy(state.tilt_mrad), dtype=real),
        noise_params=_numbers(xp, plan.noise_model.props, 1, 1, real),
    )


def run_conventional_engine(
    plan: ConventionalEnginePlan, state: ReconsState, patterns: np.ndarray, ctx: EngineContext
) -> ReconsState:
    """Run ``plan.niter`` iterations of ePIE or LSQML on ``state``; returns the updated state.

    ``patterns`` are ``(P, N, N)`` measured intensities, centred. The error of each iteration is the
    noise model's loss per pattern, averaged over all positions, evaluated during the pass.
    """
    backend = ctx.backend
    xp, real = backend.xp, backend.real_dtype
    noise_name = plan.noise_model.name
    wave_update(noise_name)  # fails early for a noise model without a wave update
    flags = plan.update_flags()
    position_hook = plan.position_solver
    if position_hook is None and plan.niter > 0 and flag_ever(flags["positions"], plan.niter):
        raise ValueError(f"engines[{ctx.engine_index}].update_positions is on but no position_solver is given")
    solver = plan.solver.function()
    sampling = np.asarray(state.sampling_A, dtype=np.float64)
    setup = _setup(plan, state, patterns, backend)
    variables = Variables(
        object=backend.asarray(to_numpy(state.object_slices), backend.complex_dtype),
        probe=backend.asarray(to_numpy(state.probe_modes), backend.complex_dtype),
        positions=xp.asarray(np.asarray(to_numpy(state.positions_A)) / sampling, dtype=real),
    )
    init_state = getattr(solver, "init_state", None)
    finish_iteration = getattr(solver, "finish_iteration", None)
    solver_state = init_state(xp, variables, plan.solver.props) if init_state else None
    model_tilt = bool(state.n_slices > 1 and np.any(to_numpy(state.tilt_mrad) != 0))
    step = _step_function(xp)
    n_positions = patterns.shape[0]
    group_size = plan.grouping or n_positions
    previous_move = xp.zeros((n_positions, 2), dtype=real)
    positions_A = np.asarray(to_numpy(state.positions_A), dtype=np.float64)
    observers = ctx.observers
    context = ConstraintContext.from_state(state)
    group_constraints = tuple(hook.function() for hook in plan.group_constraints)
    iter_constraints = tuple(hook.function() for hook in plan.iter_constraints)

    try:
        for i in range(ctx.first_iteration, plan.niter + 1):
            options = StepOptions(
                noise_model=noise_name,
                update_object=flag_at(flags["object"], i),
                update_probe=flag_at(flags["probe"], i),
                update_positions=position_hook is not None and flag_at(flags["positions"], i),
                model_tilt=model_tilt,
            )
            params = _numbers(xp, plan.solver.props, i, plan.niter, real)
            group_params = constraint_params(xp, plan.group_constraints, i, plan.niter, real)
            iter_params = constraint_params(xp, plan.iter_constraints, i, plan.niter, real)
            shuffle = True if plan.shuffle_groups is None else flag_at(plan.shuffle_groups, i)
            indices, weights = pad_groups(make_groups(positions_A, group_size, plan.compact, shuffle, ctx.rng))
            new_variables, new_state = variables, solver_state
            total = xp.asarray(0.0, dtype=real)
            shifts = xp.zeros((n_positions, 2), dtype=real)
            for group, member in zip(indices, weights, strict=True):
                group_idx, group_w = xp.asarray(group), xp.asarray(member, dtype=real)
                new_variables, new_state, losses, group_shifts = step(
                    solver, options, new_variables, new_state, group_idx, group_w, setup, params
                )
                total = total + xp.sum(losses)
                new_variables = _constrained(xp, group_constraints, new_variables, group_params, context)
                if options.update_positions:
                    shifts = scatter_add(xp, shifts, group_idx, group_shifts)
            if finish_iteration is not None:
                new_variables, new_state = finish_iteration(xp, new_variables, new_state, options, params)
            error = float(total) / n_positions
            size = float(xp.sum(abs2(xp, new_variables.object)) + xp.sum(abs2(xp, new_variables.probe)))
            if not (np.isfinite(error) and np.isfinite(size)):
                # keep the last finite iterate in the state; the diverged one is of no use
                raise FloatingPointError(
                    f"engines[{ctx.engine_index}]: the error became {error} at iteration {i} (object/probe "
                    f"{'finite' if np.isfinite(size) else 'not finite'}); lower beta_object/beta_probe "
                    "or raise the noise model's eps"
                )
            new_positions_A, move = positions_A, previous_move
            if options.update_positions:
                move = position_hook(xp, shifts, previous_move, i, plan.niter)
                new_variables = new_variables._replace(positions=new_variables.positions + move.astype(real))
                logger.debug("iteration %d: positions moved by %.3g px rms", i, rms_move(xp, move))
            if iter_constraints:
                # after the position move, so that projections of the positions see this iteration's
                new_variables = _constrained(xp, iter_constraints, new_variables, iter_params, context)
            if options.update_positions or iter_constraints:
                new_positions_A = np.asarray(to_numpy(new_variables.positions), dtype=np.float64) * sampling
            variables, solver_state, positions_A, previous_move = new_variables, new_state, new_positions_A, move
            state.iteration += 1
            state.record_error(error)
            sync = partial(_write_back, state, variables, positions_A)
            if observers.iteration_done(state, sync, i, plan.niter):
                logger.info("engine %d stopped early at iteration %d", ctx.engine_index, i)
                break
    finally:
        # also on Ctrl-C or an error: the state keeps the last completed iteration
        _write_back(state, variables, positions_A)
    return state


def _constrained(
    xp: Any, functions: tuple[Any, ...], variables: Variables, params: tuple[Any, ...], context: ConstraintContext
) -> Variables:
    """``variables`` after the constraints (the engine's tuple converted to and from their dict)."""
    if not functions:
        return variables
    constrained = apply_constraints(xp, functions, variables._asdict(), params, context)
    return Variables(**{name: constrained[name] for name in Variables._fields})


def _write_back(state: ReconsState, variables: Variables, positions_A: np.ndarray) -> ReconsState:
    """Copy the engine's variables into ``state``; ``positions_A`` is the host copy of the positions [A].

    ``initial_positions_A`` is left as it is.
    """
    state.object_slices = variables.object
    state.probe_modes = variables.probe
    state.positions_A = positions_A.copy()
    return state
