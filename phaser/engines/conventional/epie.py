"""ePIE, and its multislice form 3PIE, as a group update of the conventional engine.

Maiden & Rodenburg, Ultramicroscopy 109 (2009) 1256 (ePIE); Maiden, Humphry & Rodenburg,
J. Opt. Soc. Am. A 29 (2012) 1606 (3PIE). With ``chi_s`` the correction of the wave leaving slice
``s`` and ``psi_s`` the wave entering it, going back from the last slice:

- object: ``O_s += beta_O * sum_j sum_m conj(psi_s) chi_s / max|psi_s|^2`` (the maximum over the
  pixels of the mode-summed intensity of position ``j``; the sum over the group's positions is
  scatter-added into the object);
- the wave entering slice ``s`` is corrected by ``conj(O_s) chi_s / max|O_s|^2``, and propagated back
  through the gap before it (the conjugate propagator) it becomes ``chi_{s-1}``;
- probe: ``P += beta_P * mean_j unshift(conj(O_1) chi_1 / max|O_1|^2)``.

Every update of a group is computed from the variables as they were before it. Complex arrays are
multiplied by real reciprocals rather than divided by reals (a complex division costs more).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from phaser.engines.conventional.arrays import TINY, abs2, add_patches
from phaser.engines.conventional.forward import (
    GroupForward,
    StepOptions,
    Variables,
    gap_propagator,
    propagate,
    unshift,
)


def epie_update(
    xp: ModuleType,
    variables: Variables,
    solver_state: Any,
    forward: GroupForward,
    chi: Any,
    weights: Any,
    options: StepOptions,
    params: dict[str, Any],
) -> tuple[Variables, Any, Any]:
    """One ePIE/3PIE group update.

    ``chi`` ``(B, M, N, N)`` is the real-space correction of the exit waves (zero for padding);
    ``params`` holds ``beta_object`` (applied as ``beta_object / n_slices``) and ``beta_probe``.
    Returns the new variables, the (unused) solver state and the correction of the wave leaving the
    first slice (for position refinement).
    """
    obj = variables.object
    n_slices, object_shape = obj.shape[0], obj.shape[-2:]
    object_steps: list[Any] = [None] * n_slices
    chi_first = chi
    for s in reversed(range(n_slices)):
        wave_in = forward.waves_in[s]
        patch = forward.patches[:, s, None]
        if options.update_object:
            peak = xp.max(xp.sum(abs2(xp, wave_in), axis=1), axis=(-2, -1), keepdims=True)
            step = xp.sum(xp.conj(wave_in) * chi, axis=1) * (1.0 / xp.maximum(peak, TINY))
            object_steps[s] = add_patches(xp, object_shape, forward.top_left, step)
        if s == 0:
            chi_first = chi
        peak_object = xp.max(abs2(xp, patch), axis=(-2, -1), keepdims=True)
        chi = xp.conj(patch) * chi * (1.0 / xp.maximum(peak_object, TINY))  # now: correction of psi_s
        if s > 0:
            chi = propagate(xp, chi, xp.conj(gap_propagator(forward.propagators, s - 1)))

    if options.update_object:
        # beta_object / n_slices, as in the original package, so a plan's beta means the same there
        # and here (each slice receives the full correction of the wave it transmits)
        obj = obj + (params["beta_object"] / n_slices) * xp.stack(object_steps).astype(obj.dtype)
    probe = variables.probe
    if options.update_probe:
        ramps = forward.ramps if forward.ramp_factors is None else forward.ramp_factors
        probe_step = unshift(xp, chi, ramps) * (1.0 / xp.maximum(xp.sum(weights), 1.0))
        probe = probe + (params["beta_probe"] * probe_step).astype(probe.dtype)
    return variables._replace(object=obj, probe=probe), solver_state, chi_first
