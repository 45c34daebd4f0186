"""LSQML (Odstrcil et al., Opt. Express 26 (2018) 3108) as a group update of the conventional engine;
multislice as in Tsai et al., Opt. Express 24 (2016) 29089 (each slice's incoming wave plays the probe).

With ``chi_s`` the correction of the wave leaving slice ``s``, ``psi_s`` the wave entering it, sums
over the group's positions ``j`` and modes ``m``:

- object direction ``dO_s = sum conj(psi_s) chi_s / (sum |psi_s|^2 + delta_O)``, scatter-added over
  the group, ``delta_O = illum_reg_object * max(sum |psi_s|^2)``;
- probe direction (first slice) ``dP = sum_j unshift(conj(O_1) chi_1) / (sum_j |O_1|^2 + delta_P)``,
  ``delta_P = illum_reg_probe * max(sum_j |O_1|^2)``;
- per position ``j`` the step ``(a_O, a_P)`` minimises ``|chi_j - a_O dO psi_j - a_P O_j dP_j|^2``
  (the 2x2 normal equations; one unknown when only one variable is refined) with the diagonal
  damped by ``(1 + gamma)`` (Levenberg-Marquardt);
- the update is the illumination-weighted mean of the per-position steps, regularised and relaxed:
  ``O_s += beta_O dO_s sum_j a_O,j |psi_s,j|^2 / (sum_j |psi_s,j|^2 + step_reg * max_j |psi_s,j|^2)``
  and ``P += beta_P dP sum_j a_P,j |O_1,j|^2 / (sum_j |O_1,j|^2 + step_reg * max_j |O_1,j|^2)``;
- the wave entering slice ``s`` is corrected by ``conj(O_s) chi_s / max|O_s|^2`` and propagated back
  to become ``chi_{s-1}``.

Why the regularised mean: each ``a_j`` is the step that fits position ``j``'s own pattern, noise
included. Where a pixel is seen by many positions of the group their fits average the noise out;
where it is seen by one (small or sparse groups) an unregularised mean takes that one position's fit
at full length, so the object follows each pattern's noise in turn and the error grows with the
iterations (measured on simulated SrTiO3 at 1.3e4 e/pattern: grouping 4 diverged within 60
iterations). ``step_reg`` counts as that many positions, seen at the peak illumination, that ask for
no change: a pixel seen by ``k`` positions of a group moves by about ``k / (k + step_reg)`` of their
mean step, so large groups keep nearly the full step and few positions take a proportionally shorter
one. ``step_reg = 0`` is the plain mean.

``stochastic: true`` applies each group's update at once. ``stochastic: false`` accumulates the
numerators ``dO sum_j a_j |psi_j|^2`` and the illumination sums over the iteration (progressively,
group by group) and applies their ratio once at its end (``step_reg`` then counts once per iteration,
against the largest single-position illumination of any group).
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Any

from phaser.engines.conventional.arrays import TINY, abs2, add_patches, cut_patches
from phaser.engines.conventional.forward import (
    GroupForward,
    StepOptions,
    Variables,
    gap_propagator,
    propagate,
    shift,
    unshift,
)

if TYPE_CHECKING:  # a runtime import would close an import cycle through phaser.plan
    from phaser.engines.conventional_props import LSQMLSolverProps


def _inner(xp: ModuleType, x: Any, y: Any) -> Any:
    """``Re sum conj(x) y`` per position over modes and pixels: ``(B,)``."""
    return xp.sum(xp.real(xp.conj(x) * y), axis=(1, 2, 3))


def optimal_steps(
    xp: ModuleType, chi: Any, object_term: Any | None, probe_term: Any | None, gamma: Any
) -> tuple[Any, Any]:
    """Per-position least-squares steps ``(a_O, a_P)`` ``(B,)`` fitting ``chi`` with the two terms.

    ``object_term = dO psi`` and ``probe_term = O dP`` are ``(B, M, N, N)`` or None (step 0).
    """
    zero = xp.zeros(chi.shape[0], dtype=xp.real(chi).dtype)
    if object_term is None and probe_term is None:
        return zero, zero
    if probe_term is None or object_term is None:
        term = object_term if probe_term is None else probe_term
        step = _inner(xp, term, chi) / (_inner(xp, term, term) * (1.0 + gamma) + TINY)
        return (step, zero) if probe_term is None else (zero, step)
    aa = _inner(xp, object_term, object_term) * (1.0 + gamma) + TINY
    bb = _inner(xp, probe_term, probe_term) * (1.0 + gamma) + TINY
    ab = _inner(xp, object_term, probe_term)
    ac, bc = _inner(xp, object_term, chi), _inner(xp, probe_term, chi)
    det = xp.maximum(aa * bb - ab**2, TINY)
    return (ac * bb - bc * ab) / det, (bc * aa - ac * ab) / det


def regularised_mean(weighted_steps: Any, weights: Any, peak: Any, step_reg: Any) -> Any:
    """Mean step per pixel ``sum_j a_j w_j / (sum_j w_j + step_reg * peak)``.

    ``weighted_steps = sum_j a_j w_j`` and ``weights = sum_j w_j`` are per pixel; ``peak`` is the
    largest single-position weight ``max_j w_j`` (a scalar, or one per slice broadcast against them).
    """
    return weighted_steps / (weights + step_reg * peak + TINY)


def _init_state(xp: ModuleType, variables: Variables, props: LSQMLSolverProps) -> dict[str, Any]:
    """Accumulators of the iteration for ``stochastic: false``; none otherwise."""
    if getattr(props, "stochastic", True):
        return {}
    obj, probe = variables.object, variables.probe
    real = xp.real(obj).dtype
    return {
        "object_num": xp.zeros_like(obj),
        "object_weight": xp.zeros(obj.shape, dtype=real),
        "object_peak": xp.zeros(obj.shape[0], dtype=real),
        "probe_num": xp.zeros_like(probe),
        "probe_weight": xp.zeros(probe.shape[-2:], dtype=real),
        "probe_peak": xp.zeros((), dtype=real),
    }


def _accumulate(xp: ModuleType, state: dict[str, Any], group: dict[str, Any]) -> dict[str, Any]:
    """Sums of the numerators and illuminations over the groups; the largest peak of any group."""
    return {k: xp.maximum(state[k], group[k]) if k.endswith("_peak") else state[k] + group[k] for k in state}


def _apply(
    xp: ModuleType, variables: Variables, numerators: dict[str, Any], params: dict[str, Any], options: StepOptions
) -> Variables:
    obj, probe = variables.object, variables.probe
    step_reg = params.get("step_reg", 0.0)
    if options.update_object:
        peak = numerators["object_peak"][:, None, None]
        step = regularised_mean(numerators["object_num"], numerators["object_weight"], peak, step_reg)
        # each slice's step is optimal for the whole residual on its own; taken together the S slices
        # would overshoot about S-fold (measured: 4 slices at beta 1 oscillated), so they share it
        obj = obj + (params["beta_object"] / obj.shape[0] * step).astype(obj.dtype)
    if options.update_probe:
        peak = numerators["probe_peak"]
        step = regularised_mean(numerators["probe_num"], numerators["probe_weight"], peak, step_reg)
        probe = probe + (params["beta_probe"] * step).astype(probe.dtype)
    return variables._replace(object=obj, probe=probe)


def lsqml_update(
    xp: ModuleType,
    variables: Variables,
    solver_state: dict[str, Any],
    forward: GroupForward,
    chi: Any,
    weights: Any,
    options: StepOptions,
    params: dict[str, Any],
) -> tuple[Variables, dict[str, Any], Any]:
    """One LSQML group update (see the module docstring).

    ``chi`` ``(B, M, N, N)`` is the real-space correction of the exit waves (zero for padding);
    ``params`` holds the props' numbers. Returns the new variables, the solver state and the
    correction of the wave leaving the first slice (for position refinement).
    """
    obj, probe = variables.object, variables.probe
    n_slices, object_shape = obj.shape[0], obj.shape[-2:]
    real = xp.real(obj).dtype
    object_num: list[Any] = [xp.zeros(object_shape, dtype=obj.dtype)] * n_slices
    object_weight: list[Any] = [xp.zeros(object_shape, dtype=real)] * n_slices
    object_peak: list[Any] = [xp.zeros((), dtype=real)] * n_slices
    probe_num = xp.zeros_like(probe)
    probe_weight = xp.zeros(probe.shape[-2:], dtype=real)
    probe_peak = xp.zeros((), dtype=real)
    chi_first = chi
    member = weights[:, None, None]
    for s in reversed(range(n_slices)):
        wave_in = forward.waves_in[s]
        patch = forward.patches[:, s, None]
        object_term = probe_term = None
        if options.update_object:
            illum_j = xp.sum(abs2(xp, wave_in), axis=1) * member  # (B, N, N)
            illum = add_patches(xp, object_shape, forward.top_left, illum_j)
            grad = add_patches(xp, object_shape, forward.top_left, xp.sum(xp.conj(wave_in) * chi, axis=1))
            direction = grad / (illum + params["illum_reg_object"] * xp.max(illum) + TINY)
            direction_j = cut_patches(xp, direction[None], forward.top_left, wave_in.shape[-2:])
            object_term = direction_j * wave_in  # (B, 1, N, N) * (B, M, N, N)
        if s == 0 and options.update_probe:
            transparency_j = abs2(xp, forward.patches[:, 0]) * member  # (B, N, N)
            # contractions over positions: on jax's CPU backend ~10x faster than sums of products
            transparency = xp.einsum("bij->ij", transparency_j)
            ramps = forward.ramps if forward.ramp_factors is None else forward.ramp_factors
            probe_grad = unshift(xp, xp.conj(patch) * chi, ramps)
            probe_direction = probe_grad / (transparency + params["illum_reg_probe"] * xp.max(transparency) + TINY)
            probe_term = patch * shift(xp, probe_direction, forward.ramps)
        step_object, step_probe = optimal_steps(xp, chi, object_term, probe_term, params["gamma"])
        if object_term is not None:
            weighted = add_patches(xp, object_shape, forward.top_left, step_object[:, None, None] * illum_j)
            object_num[s] = (direction * weighted).astype(obj.dtype)
            object_weight[s] = illum
            object_peak[s] = xp.max(illum_j)
        if probe_term is not None:
            weighted_probe = xp.einsum("b,bij->ij", step_probe, transparency_j)
            probe_num = (probe_direction * weighted_probe).astype(probe.dtype)
            probe_weight = transparency
            probe_peak = xp.max(transparency_j)
        if s == 0:
            chi_first = chi
        else:
            peak_object = xp.max(abs2(xp, patch), axis=(-2, -1), keepdims=True)
            chi = xp.conj(patch) * chi / xp.maximum(peak_object, TINY)
            chi = propagate(xp, chi, xp.conj(gap_propagator(forward.propagators, s - 1)))

    numerators = {
        "object_num": xp.stack(object_num),
        "object_weight": xp.stack(object_weight),
        "object_peak": xp.stack(object_peak),
        "probe_num": probe_num,
        "probe_weight": probe_weight,
        "probe_peak": probe_peak,
    }
    if solver_state:  # stochastic: false, apply at the end of the iteration
        return variables, _accumulate(xp, solver_state, numerators), chi_first
    return _apply(xp, variables, numerators, params, options), solver_state, chi_first


def _finish_iteration(
    xp: ModuleType, variables: Variables, solver_state: dict[str, Any], options: StepOptions, params: dict[str, Any]
) -> tuple[Variables, dict[str, Any]]:
    """Apply the accumulated update of a non-stochastic iteration and reset the accumulators."""
    if not solver_state:
        return variables, solver_state
    return _apply(xp, variables, solver_state, params, options), {k: xp.zeros_like(v) for k, v in solver_state.items()}


# the engine looks these up on the hook function (a solver without them keeps no state)
lsqml_update.init_state = _init_state  # type: ignore[attr-defined]
lsqml_update.finish_iteration = _finish_iteration  # type: ignore[attr-defined]
