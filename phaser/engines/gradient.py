"""The gradient-descent engine: autodiff through the multislice model, one optax solver per variable.

One jit-compiled function runs a whole iteration (the groups inside ``lax.scan``). Everything
that is only a number (learning rates, regularizer weights, noise epsilons, update flags) enters it
as a traced argument, so changing one never recompiles; the compiled program depends only on the
shapes and on the structure (noise model, solvers, regularizers, whether tilt is modelled).
On the CPU each group's positions are split over the cores (JAX CPU devices) and each core takes
its share a few positions at a time (:func:`cache_chunk`), so that the multislice waves stay in
cache between the forward and the backward pass; the sums, and so the updates, are the same.
Complex gradients follow the Wirtinger convention: the descent direction of a real loss L in a
complex variable z is ``-2 dL/dz*``, which is ``-conj(jax.grad(L))``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from phaser.constraints import ConstraintContext, apply_constraints, constraint_params
from phaser.engines.context import EngineContext
from phaser.engines.errors import amplitude_residuals, total_counts
from phaser.engines.forward_jax import cut_all_slices, intensity_from_patches, split_positions, tilted_propagators
from phaser.engines.grouping import make_groups, pad_groups
from phaser.engines.loop import EngineImplementation, IterationResult
from phaser.jax_devices import shard_devices
from phaser.physics.grids import fft_frequencies
from phaser.physics.propagation import gap_propagators
from phaser.plan.schema import GradientEnginePlan
from phaser.schedules import flag_at, flag_ever, schedule_at
from phaser.solvers import OptaxSolverProps, gradient_scales, hyperparameters_at, make_optimizer
from phaser.state import ReconsState

VARIABLES = ("object", "probe", "positions", "tilt")


@dataclass(frozen=True)
class _Structure:
    """Everything that shapes the compiled iteration (hashable; numbers excluded)."""

    noise_loss: Callable[..., Any]
    solvers: tuple[tuple[str, optax.GradientTransformation], ...]
    regularizers: tuple[Callable[..., Any], ...]
    model_tilt: bool
    n_devices: int = 1
    chunk: int = 0  # positions per chunk of a device's share (0: the share at once)
    group_constraints: tuple[Callable[..., Any], ...] = ()
    iter_constraints: tuple[Callable[..., Any], ...] = ()


CACHE_BYTES = 1 << 20
"""What one chunk's waves may take on the CPU: a core's L2 cache (1 MiB on the machines measured)."""


def cache_chunk(n_slices: int, probe_shape: tuple[int, ...]) -> int:
    """Positions per chunk of a group on the CPU: their ``S`` complex64 waves of every mode fit in
    :data:`CACHE_BYTES`, and at most 8.

    Measured on 2 cores with 64x64 patterns: 4 at 8 slices and 8 at 1 slice were fastest, 1.1-1.25x
    over whole groups; smaller chunks lose more to the cost of each operation than they gain.
    """
    per_position = n_slices * int(np.prod(probe_shape)) * np.dtype(np.complex64).itemsize
    return int(np.clip(CACHE_BYTES // per_position, 1, 8))


def _chunk_count(share: int, chunk: int) -> int:
    """Chunks of at most ``chunk`` positions that a device's ``share`` of a group is cut into."""
    return -(-share // chunk) if chunk else 1


def _padded_width(width: int, structure: _Structure) -> int:
    """The group width, padded so that every device gets a share that splits into equal chunks."""
    share = -(-width // structure.n_devices)
    n_chunks = _chunk_count(share, structure.chunk)
    return structure.n_devices * n_chunks * -(-share // n_chunks)


def _numeric_params(props: Any) -> dict[str, Any]:
    """The plan numbers of a hook's props (schedules evaluated elsewhere), as float32 scalars."""
    out = {}
    for key, value in props.model_dump().items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = jnp.asarray(value, jnp.float32)
    return out


def _data_loss(
    structure: _Structure, variables: dict[str, Any], batch: tuple[Any, ...], aux: dict[str, Any]
) -> tuple[Any, Any]:
    """The noise model's loss summed over ``batch``'s positions, and (loss, amplitude residual) as aux."""
    obj, probe = variables["object"], variables["probe"]
    top_left, frac = split_positions(variables["positions"][batch[0]], probe.shape[-2:], obj.shape[-2:])
    patches = cut_all_slices(obj, top_left, probe.shape[-2:])
    return _patch_loss(structure, probe, patches, frac, variables["tilt"][batch[0]], batch, aux)


def _patch_loss(
    structure: _Structure, probe: Any, patches: list[Any], frac: Any, tilt: Any, batch: tuple[Any, ...], aux: dict
) -> tuple[Any, Any]:
    """:func:`_data_loss` from the positions' object patches (one ``(B, N, N)`` per slice) and sub-pixel rests."""
    idx, weights = batch
    if structure.model_tilt:
        props = tilted_propagators(aux["propagators"], aux["thicknesses"], aux["ky"], aux["kx"], tilt)
    else:
        props = aux["propagators"]
    model = intensity_from_patches(probe, patches, frac, props)
    measured = aux["patterns"][idx]
    per_pattern = structure.noise_loss(jnp, model, measured, aux["noise_params"])
    data = jnp.sum(weights * per_pattern)
    residual = jnp.sum(weights * amplitude_residuals(jnp, jax.lax.stop_gradient(model), measured))
    return data, (data, residual)


def _regularizer_loss(structure: _Structure, variables: dict[str, Any], weights: Any, aux: dict[str, Any]) -> Any:
    """The regularizers' cost, weighted by the share of all positions that ``weights`` hold."""
    share = jnp.sum(weights) / aux["n_positions"]
    cost = sum(
        (fn(jnp, variables, p) for fn, p in zip(structure.regularizers, aux["reg_params"], strict=True)),
        jnp.asarray(0.0),
    )
    return share * cost


def _group_loss(
    structure: _Structure, variables: dict[str, Any], batch: tuple[Any, ...], aux: dict[str, Any]
) -> tuple[Any, Any]:
    """Data loss plus the regularizers' share: what one group's gradients descend."""
    data, terms = _data_loss(structure, variables, batch, aux)
    return data + _regularizer_loss(structure, variables, batch[1], aux), terms


def _chunked_gradients(structure: _Structure, variables, idx, weights, aux, n_chunks: int):
    """:func:`_group_loss`'s (loss, residual) and gradients, the positions taken ``n_chunks`` at a time.

    The sums are the same; a chunk's multislice waves stay in the core's cache between the forward
    and the backward pass, where a whole group's spill to memory (measured at 8 slices of 64x64:
    FFTs 1.4x slower inside the gradient than alone). Each chunk returns the gradients of its own
    patches, positions and tilts, which reach the object and the position arrays in one scatter
    per group rather than one full-size sum per chunk.
    """
    obj, probe = variables["object"], variables["probe"]
    patch_shape = probe.shape[-2:]
    top_left, frac = split_positions(variables["positions"][idx], patch_shape, obj.shape[-2:])
    value_and_grad = jax.value_and_grad(partial(_patch_loss, structure), argnums=(0, 1, 2, 3), has_aux=True)

    def add_chunk(total, chunk):
        idx_c, weights_c, top_left_c, frac_c = chunk
        patches = cut_all_slices(obj, top_left_c, patch_shape)
        tilt = variables["tilt"][idx_c]
        (_, terms), (g_probe, g_patches, g_frac, g_tilt) = value_and_grad(
            probe, patches, frac_c, tilt, (idx_c, weights_c), aux
        )
        total = jax.tree_util.tree_map(jnp.add, total, (terms, g_probe))
        return total, (g_patches, g_frac, g_tilt)

    def split(array):
        return array.reshape(n_chunks, -1, *array.shape[1:])

    zero = (jnp.zeros((), aux["patterns"].dtype),) * 2, jnp.zeros_like(probe)
    (terms, g_probe), (g_patches, g_frac, g_tilt) = jax.lax.scan(
        add_chunk, zero, (split(idx), split(weights), split(top_left), split(frac))
    )

    def merge(array):
        return array.reshape(-1, *array.shape[2:])

    (g_object,) = jax.vjp(lambda o: cut_all_slices(o, top_left, patch_shape), obj)[1]([merge(g) for g in g_patches])
    grads = {
        "object": g_object,
        "probe": g_probe,
        "positions": jnp.zeros_like(variables["positions"]).at[idx].add(merge(g_frac)),
        "tilt": jnp.zeros_like(variables["tilt"]).at[idx].add(merge(g_tilt)),
    }
    if structure.regularizers:
        reg_grads = jax.grad(partial(_regularizer_loss, structure))(variables, weights, aux)
        grads = jax.tree_util.tree_map(jnp.add, grads, reg_grads)
    return terms, grads


def _apply_solvers(structure: _Structure, variables, opt_states, grads, masks, members):
    """One solver step per variable from the group's summed gradients (``members``: 1 for the group's positions).

    The solvers see the gradients scaled as in the original package (:func:`gradient_scales`: per
    position of the group, and per probe electron for the object and positions), so that a
    plan's learning rates and ``eps`` mean what they mean there.
    """
    variables, opt_states = dict(variables), dict(opt_states)
    scales = gradient_scales(variables["probe"], jnp.sum(members))
    for name, solver in structure.solvers:
        grad = grads[name] / scales[name].astype(grads[name].real.dtype)
        if jnp.iscomplexobj(grad):
            grad = jnp.conj(grad)
        updates, new_state = solver.update(grad, opt_states[name], variables[name])
        if name in ("positions", "tilt"):
            updates = updates * members[:, None]  # only the group's own positions move
        on = masks[name]
        variables[name] = variables[name] + (on * updates).astype(variables[name].dtype)
        opt_states[name] = jax.tree_util.tree_map(
            lambda new, old, on=on: jnp.where(on > 0, new, old), new_state, opt_states[name]
        )
    return variables, opt_states


def _positions_mesh(structure: _Structure) -> Mesh:
    """The devices a group's positions are split over, as one mesh axis ``positions``."""
    return Mesh(np.asarray(shard_devices()[: structure.n_devices]), ("positions",))


def _group_gradients(structure: _Structure, variables, batch, aux):
    """Data loss, amplitude residual and gradients of one group, its positions split over ``structure.n_devices``.

    Every device holds the variables and computes the loss of its share of the group; the losses
    and gradients are summed across devices (all are sums over positions, and the regularizer
    term is weighted by each share's positions, so the sum is the whole group's).
    """

    def local(variables, idx, weights, aux):
        n_chunks = _chunk_count(idx.shape[0], structure.chunk)
        if n_chunks > 1:
            return _chunked_gradients(structure, variables, idx, weights, aux, n_chunks)
        (_, terms), grads = jax.value_and_grad(partial(_group_loss, structure), has_aux=True)(
            variables, (idx, weights), aux
        )
        return terms, grads

    if structure.n_devices == 1:
        return local(variables, *batch, aux)
    mesh = _positions_mesh(structure)

    def summed(variables, idx, weights, aux):
        return jax.lax.psum(local(variables, idx, weights, aux), "positions")

    sharded = jax.shard_map(
        summed, mesh=mesh, in_specs=(P(), P("positions"), P("positions"), P()), out_specs=(P(), P()), check_vma=False
    )
    return sharded(variables, *batch, aux)


@partial(jax.jit, static_argnums=0)
def _iteration(structure: _Structure, variables, opt_states, masks, groups, aux):
    """One pass over every group: the new variables and solver states, the summed data loss and
    the summed amplitude residuals (the numerator of the common error)."""
    n_positions = variables["positions"].shape[0]

    def step(carry, batch):
        variables, opt_states = carry
        terms, grads = _group_gradients(structure, variables, batch, aux)
        members = jnp.zeros((n_positions,), jnp.float32).at[batch[0]].max(batch[1])
        variables, opt_states = _apply_solvers(structure, variables, opt_states, grads, masks, members)
        variables = apply_constraints(
            jnp, structure.group_constraints, variables, aux["group_constraint_params"], aux["constraint_context"]
        )
        return (variables, opt_states), terms

    (variables, opt_states), (losses, residuals) = jax.lax.scan(step, (variables, opt_states), groups)
    # the mean shift of the positions is not constrained by the data: remove it
    drift = jnp.mean(variables["positions"] - aux["initial_positions"], axis=0)
    variables = {**variables, "positions": variables["positions"] - masks["positions"] * drift}
    variables = apply_constraints(
        jnp, structure.iter_constraints, variables, aux["iter_constraint_params"], aux["constraint_context"]
    )
    return variables, opt_states, jnp.sum(losses), jnp.sum(residuals)


def _set_hyperparameters(state: Any, values: dict[str, float]) -> Any:
    hyper = dict(state.hyperparams)
    hyper.update({k: jnp.asarray(v, jnp.float32) for k, v in values.items()})
    return state._replace(hyperparams=hyper)


@dataclass(frozen=True)
class GradientEngineState:
    """What the iterations of one gradient engine run carry: fixed setup plus the evolving variables."""

    plan: GradientEnginePlan
    structure: _Structure
    aux: dict[str, Any]  # arrays and numbers fixed for the run
    solver_hooks: dict[str, Any]
    flags: dict[str, Any]
    sampling: np.ndarray  # (2,) [A/px]
    counts: float  # measured counts of all patterns: the common error's denominator
    n_patterns: int
    rng: np.random.Generator
    variables: dict[str, Any]
    opt_states: dict[str, Any]
    positions_A: np.ndarray  # host copy of the positions, for grouping


def init_gradient_engine(
    plan: GradientEnginePlan, state: ReconsState, patterns: np.ndarray, ctx: EngineContext
) -> GradientEngineState:
    """Everything the iterations need: variables in object pixels, solvers, propagators, patterns.

    ``patterns`` are ``(P, N, N)`` measured intensities, centred.
    """
    backend = ctx.backend
    real, cplx = backend.real_dtype, backend.complex_dtype
    probe_shape = state.probe_shape
    n_slices = state.n_slices
    thicknesses = np.asarray(state.slice_thicknesses_A, dtype=np.float64)
    base_props = gap_propagators(
        np, probe_shape, state.sampling_A, state.wavelength_A, thicknesses, plan.bwlim_frac, np.float64
    )
    ky, kx = fft_frequencies(np, probe_shape, state.sampling_A, np.float64)
    sampling = np.asarray(state.sampling_A)

    variables = {
        "object": jnp.asarray(state.object_slices, cplx),
        "probe": jnp.asarray(state.probe_modes, cplx),
        "positions": jnp.asarray(np.asarray(state.positions_A) / sampling, real),
        "tilt": jnp.asarray(state.tilt_mrad, real),
    }
    flags = plan.update_flags()
    solver_hooks = {name: plan.solver_for(name) for name in VARIABLES}
    active = tuple(name for name in VARIABLES if solver_hooks[name] is not None)
    structure = _Structure(
        noise_loss=plan.noise_model.function(),
        solvers=tuple((name, make_optimizer(solver_hooks[name].name, solver_hooks[name].props)) for name in active),
        regularizers=tuple(hook.function() for hook in plan.regularizers),
        model_tilt=bool(
            n_slices > 1 and (flag_ever(flags["tilt"], plan.niter) or np.any(np.asarray(state.tilt_mrad) != 0))
        ),
        n_devices=len(shard_devices()),
        chunk=cache_chunk(n_slices, state.probe_modes.shape) if shard_devices()[0].platform == "cpu" else 0,
        group_constraints=tuple(hook.function() for hook in plan.group_constraints),
        iter_constraints=tuple(hook.function() for hook in plan.iter_constraints),
    )
    aux = {
        "patterns": jnp.asarray(np.fft.ifftshift(patterns, axes=(-2, -1)), real),
        "propagators": jnp.asarray(base_props, cplx),
        "thicknesses": jnp.asarray(thicknesses, real),
        "ky": jnp.asarray(ky[:, 0], real),
        "kx": jnp.asarray(kx[0, :], real),
        "noise_params": _numeric_params(plan.noise_model.props),
        "initial_positions": jnp.asarray(np.asarray(state.initial_positions_A) / sampling, real),
        "n_positions": jnp.asarray(patterns.shape[0], real),
        "constraint_context": ConstraintContext.from_state(state),
    }
    return GradientEngineState(
        plan=plan,
        structure=structure,
        aux=_on_every_device(structure, aux),
        solver_hooks=solver_hooks,
        flags=flags,
        sampling=sampling,
        counts=total_counts(patterns),
        n_patterns=int(patterns.shape[0]),
        rng=ctx.rng,
        variables=_on_every_device(structure, variables),
        opt_states=_on_every_device(
            structure, {name: solver.init(variables[name]) for name, solver in structure.solvers}
        ),
        positions_A=np.asarray(state.positions_A),
    )


def _on_every_device(structure: _Structure, tree: Any) -> Any:
    """``tree``'s arrays replicated on the devices a group is split over, where the iterations'
    results live: arrays placed otherwise would make the second iteration compile again (measured:
    1.4 s at 1 slice on 2 CPU devices)."""
    if structure.n_devices == 1:
        return tree
    return jax.device_put(tree, NamedSharding(_positions_mesh(structure), P()))


def _iteration_aux(engine: GradientEngineState, i: int) -> dict[str, Any]:
    """The run's fixed arrays plus the numbers of iteration ``i`` (schedules evaluated)."""
    plan, real = engine.plan, engine.aux["patterns"].dtype
    return {
        **engine.aux,
        "group_constraint_params": constraint_params(jnp, plan.group_constraints, i, plan.niter, real),
        "iter_constraint_params": constraint_params(jnp, plan.iter_constraints, i, plan.niter, real),
        "reg_params": tuple(
            {**_numeric_params(h.props), "weight": jnp.asarray(schedule_at(h.props.weight, i, plan.niter), real)}
            for h in plan.regularizers
        ),
    }


def step_gradient_engine(engine: GradientEngineState, i: int) -> tuple[GradientEngineState, IterationResult]:
    """Iteration ``i``: one pass over the groups in a single compiled call; ``engine`` is unchanged."""
    plan, structure = engine.plan, engine.structure
    real = engine.aux["patterns"].dtype
    masks = {name: jnp.asarray(1.0 if flag_at(engine.flags[name], i) else 0.0, real) for name in VARIABLES}
    opt_states = dict(engine.opt_states)
    for name, _ in structure.solvers:
        props = engine.solver_hooks[name].props
        values = hyperparameters_at(props, i, plan.niter) if isinstance(props, OptaxSolverProps) else {}
        opt_states[name] = _set_hyperparameters(opt_states[name], values)
    do_shuffle = True if plan.shuffle_groups is None else flag_at(plan.shuffle_groups, i)
    group_size = plan.grouping or engine.n_patterns
    groups = make_groups(engine.positions_A, group_size, plan.compact, do_shuffle, engine.rng)
    groups = pad_groups(groups, _padded_width(max(len(g) for g in groups), structure))
    variables, opt_states, loss, residual = _iteration(
        structure,
        engine.variables,
        opt_states,
        masks,
        (jnp.asarray(groups[0]), jnp.asarray(groups[1])),
        _iteration_aux(engine, i),
    )
    positions_A = engine.positions_A
    if flag_at(engine.flags["positions"], i):
        positions_A = np.asarray(variables["positions"]) * engine.sampling
    result = IterationResult(error=float(residual) / engine.counts, loss=float(loss) / engine.n_patterns)
    return replace(engine, variables=variables, opt_states=opt_states, positions_A=positions_A), result


def write_back_gradient_engine(engine: GradientEngineState, state: ReconsState) -> ReconsState:
    """Copy the engine's variables into ``state`` (positions back to A)."""
    variables = engine.variables
    state.object_slices = variables["object"]
    state.probe_modes = variables["probe"]
    state.positions_A = np.asarray(variables["positions"], np.float64) * engine.sampling
    state.tilt_mrad = np.asarray(variables["tilt"])
    return state


GRADIENT_ENGINE = EngineImplementation(
    init=init_gradient_engine,
    step=step_gradient_engine,
    write_back=write_back_gradient_engine,
    divergence_hint="lower the learning rates or raise the noise model's eps",
)
"""The gradient engine for :mod:`phaser.engines.loop` (registered as ``type: gradient``)."""
