"""Bringing the shared state to an engine's settings before it runs.

Probe modes are added (orthogonal, the first keeping ``base_mode_power`` of the intensity) or
removed (keeping the strongest, total intensity preserved). When the engine asks for other slices
than the state has, the object is re-sliced: its summed log-transmission is spread over the new
slices in proportion to their thickness (the projected potential is kept exactly).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from phaser.backend import to_numpy
from phaser.plan.schema import slice_thicknesses
from phaser.state import ReconsState


def orthogonal_modes(base: np.ndarray, n_modes: int, base_mode_power: float) -> np.ndarray:
    """``n_modes`` orthonormalised modes from ``base`` times low-order polynomials (y, x, y^2, xy, ...).

    The first keeps ``base_mode_power`` of the total intensity; the others share the rest equally.
    """
    total = float(np.sum(np.abs(base) ** 2))
    n = base.shape[-1]
    yy, xx = np.meshgrid(np.arange(base.shape[-2]) - base.shape[-2] / 2, np.arange(n) - n / 2, indexing="ij")
    intensity = np.abs(base) ** 2
    yy = yy - np.sum(yy * intensity) / total
    xx = xx - np.sum(xx * intensity) / total
    orders = [(0, 0)] + [(d - k, k) for d in range(1, 8) for k in range(d + 1)]
    columns = np.stack([(yy**py * xx**px * base).ravel() for py, px in orders[:n_modes]], axis=1)
    q, r = np.linalg.qr(columns)
    q = q * np.sign(np.real(np.diag(r)))[None, :]  # keep the base mode's own phase
    powers = np.full(n_modes, (1 - base_mode_power) / max(n_modes - 1, 1)) * total
    powers[0] = base_mode_power * total if n_modes > 1 else total
    return (q.T * np.sqrt(powers)[:, None]).reshape(n_modes, *base.shape)


def _resize_modes(probe: np.ndarray, n_modes: int, base_mode_power: float) -> np.ndarray:
    current = probe.shape[0]
    if n_modes == current:
        return probe
    total = float(np.sum(np.abs(probe) ** 2))
    if n_modes < current:
        order = np.argsort(-np.sum(np.abs(probe) ** 2, axis=(-2, -1)))
        kept = probe[np.sort(order[:n_modes])]
        return kept * np.sqrt(total / np.sum(np.abs(kept) ** 2))
    new = orthogonal_modes(probe[0], n_modes - current + 1, base_mode_power)
    extra = new[1:] * np.sqrt(total * (1 - base_mode_power)) / np.sqrt(np.sum(np.abs(new[1:]) ** 2))
    kept = probe * np.sqrt(total * base_mode_power / total)
    return np.concatenate([kept, extra])


def reslice(obj: np.ndarray, old: list[float], new: list[float]) -> np.ndarray:
    """Spread the object's summed log-transmission over slices of thicknesses ``new``."""
    if len(old) == len(new) and np.allclose(old, new):
        return obj
    log_total = np.sum(np.log(np.where(obj == 0, 1e-12, obj)), axis=0)
    weights = np.asarray(new, dtype=np.float64)
    weights = weights / weights.sum() if weights.sum() > 0 else np.full(len(new), 1 / len(new))
    return np.exp(weights[:, None, None] * log_total[None])


def prepare_for_engine(
    state: ReconsState, engine: Any, plan: Any, pattern_shape: tuple[int, int], rng: np.random.Generator
) -> ReconsState:
    """``state`` with the engine's probe modes and slices; checks the detector size agrees."""
    if engine.sim_shape is not None and tuple(engine.sim_shape) != tuple(pattern_shape):
        raise ValueError(
            f"engines[{state.engine_index}].sim_shape: {tuple(engine.sim_shape)} differs from the "
            f"patterns' {tuple(pattern_shape)}; resampling the detector is not supported yet"
        )
    if tuple(state.probe_shape) != tuple(pattern_shape):
        raise ValueError(f"the probe is {state.probe_shape} but the patterns are {tuple(pattern_shape)}")
    probe = to_numpy(state.probe_modes)
    new_probe = _resize_modes(probe, engine.probe_modes, engine.base_mode_power)
    slices = engine.slices if engine.slices is not None else plan.slices
    thicknesses = slice_thicknesses(slices)
    old = [float(t) for t in state.slice_thicknesses_A]
    obj = to_numpy(state.object_slices)
    new_obj = reslice(obj, old, thicknesses)
    if new_probe is probe and new_obj is obj:
        return state
    return state.copy_with(
        probe_modes=new_probe, object_slices=new_obj, slice_thicknesses_A=np.asarray(thicknesses, dtype=np.float64)
    )
