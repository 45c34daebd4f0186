"""The conventional engine: ePIE or LSQML group updates, per-iteration position refinement.

A group step runs the multislice model for the group's positions, scores it with the noise model
(the engine's own loss) and with the common error of :mod:`phaser.engines.errors`, corrects the far-field
waves with the noise model's wave update and hands the real-space exit-wave correction to the
solver hook. A solver hook is called as

    solver(xp, variables, solver_state, forward, chi, weights, options, params)
        -> (variables, solver_state, chi_first)

with ``params`` the numbers of its props at this iteration (schedules evaluated); it may carry
``solver.init_state(xp, variables, props)`` and
``solver.finish_iteration(xp, variables, solver_state, options, params)``. A position-solver hook
is called once per iteration as ``position_solver(xp, shift_px, previous_move_px, i, niter, props)``
and returns the moves ``(P, 2)`` [px]. On jax the whole pass over the groups is one compiled program
(``lax.scan``, :mod:`phaser.engines.conventional.iteration`); numbers enter as traced scalars, so
only the update flags and the group count can cause a recompile.

Group constraints run after every group step, iteration constraints after each pass. The engine is
an init/step pair run by :mod:`phaser.engines.loop`. Not used here:
``calc_error``/``calc_error_fraction`` (the error comes free with every pass), ``check_every_group``,
``send_every_group``, ``buffer_n_groups``, ``jit_unroll_slices``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from phaser.backend import to_numpy
from phaser.constraints import ConstraintContext, constraint_params
from phaser.engines.context import EngineContext
from phaser.engines.conventional.arrays import abs2
from phaser.engines.conventional.forward import Setup, StepOptions, Variables
from phaser.engines.conventional.iteration import constrained, conventional_iteration
from phaser.engines.conventional.noise_updates import wave_update
from phaser.engines.conventional.positions import rms_move
from phaser.engines.errors import total_counts
from phaser.engines.grouping import make_groups, pad_groups
from phaser.engines.loop import EngineImplementation, IterationResult
from phaser.physics.grids import fft_frequencies
from phaser.physics.propagation import gap_propagators
from phaser.plan.schema import ConventionalEnginePlan
from phaser.schedules import flag_at, flag_ever, schedule_at
from phaser.state import ReconsState

logger = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class ConventionalEngineState:
    """What the iterations of one ePIE/LSQML run carry: fixed setup plus the evolving variables."""

    plan: ConventionalEnginePlan
    xp: Any
    real: Any  # the backend's real dtype
    setup: Setup
    solver: Callable[..., Any]
    finish_iteration: Callable[..., Any] | None
    position_hook: Any
    flags: dict[str, Any]
    model_tilt: bool
    context: ConstraintContext
    group_constraints: tuple[Callable[..., Any], ...]
    iter_constraints: tuple[Callable[..., Any], ...]
    sampling: np.ndarray  # (2,) [A/px]
    counts: float  # measured counts of all patterns: the common error's denominator
    rng: np.random.Generator
    variables: Variables
    solver_state: Any
    previous_move: Any  # (P, 2) the last iteration's position moves [px]
    initial_positions_px: Any  # (P, 2) the positions whose mean refinement keeps [px]
    positions_A: np.ndarray  # host copy of the positions, for grouping and the state


def init_conventional_engine(
    plan: ConventionalEnginePlan, state: ReconsState, patterns: np.ndarray, ctx: EngineContext
) -> ConventionalEngineState:
    """Everything the iterations of ePIE or LSQML need; ``patterns`` are ``(P, N, N)``, centred."""
    backend = ctx.backend
    xp, real = backend.xp, backend.real_dtype
    wave_update(plan.noise_model.name)  # fails early for a noise model without a wave update
    flags = plan.update_flags()
    position_hook = plan.position_solver
    if position_hook is None and plan.niter > 0 and flag_ever(flags["positions"], plan.niter):
        raise ValueError(f"engines[{ctx.engine_index}].update_positions is on but no position_solver is given")
    solver = plan.solver.function()
    sampling = np.asarray(state.sampling_A, dtype=np.float64)
    variables = Variables(
        object=backend.asarray(to_numpy(state.object_slices), backend.complex_dtype),
        probe=backend.asarray(to_numpy(state.probe_modes), backend.complex_dtype),
        positions=xp.asarray(np.asarray(to_numpy(state.positions_A)) / sampling, dtype=real),
    )
    init_state = getattr(solver, "init_state", None)
    return ConventionalEngineState(
        plan=plan,
        xp=xp,
        real=real,
        setup=_setup(plan, state, patterns, backend),
        solver=solver,
        finish_iteration=getattr(solver, "finish_iteration", None),
        position_hook=position_hook,
        flags=flags,
        model_tilt=bool(state.n_slices > 1 and np.any(to_numpy(state.tilt_mrad) != 0)),
        context=ConstraintContext.from_state(state),
        group_constraints=tuple(hook.function() for hook in plan.group_constraints),
        iter_constraints=tuple(hook.function() for hook in plan.iter_constraints),
        sampling=sampling,
        counts=total_counts(patterns),
        rng=ctx.rng,
        variables=variables,
        solver_state=init_state(xp, variables, plan.solver.props) if init_state else None,
        previous_move=xp.zeros((patterns.shape[0], 2), dtype=real),
        initial_positions_px=xp.asarray(np.asarray(state.initial_positions_A) / sampling, dtype=real),
        positions_A=np.asarray(to_numpy(state.positions_A), dtype=np.float64),
    )


def _group_pass(
    engine: ConventionalEngineState, options: StepOptions, indices: np.ndarray, weights: np.ndarray, i: int
) -> tuple[Variables, Any, Any, Any, Any]:
    """Every group step of iteration ``i`` (one compiled call on jax), then the solver's end of the
    iteration: variables, solver state, summed loss and residual, shifts."""
    xp, real, plan = engine.xp, engine.real, engine.plan
    params = _numbers(xp, plan.solver.props, i, plan.niter, real)
    group_params = constraint_params(xp, plan.group_constraints, i, plan.niter, real)
    variables, solver_state, loss, residual, shifts = conventional_iteration(
        xp,
        engine.solver,
        options,
        engine.variables,
        engine.solver_state,
        indices,
        weights,
        engine.setup,
        params,
        engine.group_constraints,
        group_params,
        engine.context,
    )
    if engine.finish_iteration is not None:
        variables, solver_state = engine.finish_iteration(xp, variables, solver_state, options, params)
    return variables, solver_state, loss, residual, shifts


def step_conventional_engine(
    engine: ConventionalEngineState, i: int
) -> tuple[ConventionalEngineState, IterationResult]:
    """Iteration ``i``: the group updates, then the position move and the iteration constraints."""
    xp, real, plan = engine.xp, engine.real, engine.plan
    options = StepOptions(
        noise_model=plan.noise_model.name,
        update_object=flag_at(engine.flags["object"], i),
        update_probe=flag_at(engine.flags["probe"], i),
        update_positions=engine.position_hook is not None and flag_at(engine.flags["positions"], i),
        model_tilt=engine.model_tilt,
    )
    shuffle = True if plan.shuffle_groups is None else flag_at(plan.shuffle_groups, i)
    n_positions = engine.positions_A.shape[0]
    indices, weights = pad_groups(
        make_groups(engine.positions_A, plan.grouping or n_positions, plan.compact, shuffle, engine.rng)
    )
    variables, solver_state, loss, residual, shifts = _group_pass(engine, options, indices, weights, i)
    result = IterationResult(error=float(residual) / engine.counts, loss=float(loss) / n_positions)
    size = float(xp.sum(abs2(xp, variables.object)) + xp.sum(abs2(xp, variables.probe)))
    if not np.isfinite(size):
        result = IterationResult(error=float("nan"), loss=result.loss)  # the loop reports the divergence
    positions_A, move = engine.positions_A, engine.previous_move
    if options.update_positions:
        move = engine.position_hook(xp, shifts, engine.previous_move, i, plan.niter)
        positions = variables.positions + move.astype(real)
        # the mean shift from the initial positions is not the data's to decide (a common shift of
        # positions and object leaves the patterns as they are): remove it, as the gradient engine does
        drift = xp.mean(positions - engine.initial_positions_px, axis=0)
        variables = variables._replace(positions=positions - drift)
        logger.debug("iteration %d: positions moved by %.3g px rms", i, rms_move(xp, move))
    if engine.iter_constraints:
        # after the position move, so that projections of the positions see this iteration's
        iter_params = constraint_params(xp, plan.iter_constraints, i, plan.niter, real)
        variables = constrained(xp, engine.iter_constraints, variables, iter_params, engine.context)
    if options.update_positions or engine.iter_constraints:
        positions_A = np.asarray(to_numpy(variables.positions), dtype=np.float64) * engine.sampling
    new_engine = replace(
        engine, variables=variables, solver_state=solver_state, positions_A=positions_A, previous_move=move
    )
    return new_engine, result


def write_back_conventional_engine(engine: ConventionalEngineState, state: ReconsState) -> ReconsState:
    """Copy the engine's variables into ``state`` (``initial_positions_A`` is left as it is)."""
    state.object_slices = engine.variables.object
    state.probe_modes = engine.variables.probe
    state.positions_A = engine.positions_A.copy()
    return state


CONVENTIONAL_ENGINE = EngineImplementation(
    init=init_conventional_engine,
    step=step_conventional_engine,
    write_back=write_back_conventional_engine,
    divergence_hint="lower beta_object/beta_probe or raise the noise model's eps",
)
"""ePIE and LSQML for :mod:`phaser.engines.loop` (registered as ``type: conventional``)."""
