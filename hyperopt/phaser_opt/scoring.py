"""Scores of a finished trial: every study metric, computed from the final state with phaser.metrics.

Against a truth, the reconstruction's projected phase (sum of slice phases) is aligned once
(sub-pixel shift, constant offset, phase ramp, inside the illuminated region) and every truth
metric reads the same aligned pair: ``mse`` [rad^2], ``ssim``, ``frc`` (resolution [A] at 1/7 or
half-bit, or the area under the curve) and ``potential_error`` (RMSE of the projected potential
[V*A]: the phase RMSE over the interaction constant). Without a truth: ``heldout_loss`` (the
noise-model loss per pattern at positions the reconstruction never saw) and ``two_half_frc``
(the half-bit resolution [A] of two reconstructions of disjoint halves).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from phaser.metrics import (
    AlignedPair,
    align_to_truth,
    frc,
    frc_resolution,
    held_out_loss,
    mask_bounding_box,
    object_phase,
    pair_scores,
    probe_radius_px,
    two_half_frc,
)
from phaser.metrics.frc import FRCResult
from phaser.physics.constants import interaction_constant
from phaser.state import ReconsState
from phaser_opt.truth import Truth


class MetricError(ValueError):
    """A metric that cannot be computed for this trial (the message says which and why)."""


@dataclass
class TruthComparison:
    """The reconstruction aligned to the truth, and the scores and FRC curve of the pair."""

    pair: AlignedPair
    scores: dict[str, Any]
    curve: FRCResult | None
    sampling_A: tuple[float, float]


@dataclass
class TrialRun:
    """What a finished trial leaves for scoring."""

    state: ReconsState
    plan: Any
    wall_time_s: float
    peak_memory_mb: float
    patterns: np.ndarray | None = None  # all measured patterns (P, N, N), for held-out scores
    heldout: np.ndarray | None = None  # position indices the reconstruction never saw
    rerun: Callable[[np.ndarray], ReconsState] | None = None  # the plan again, holding out indices
    cache: dict[str, Any] = field(default_factory=dict)


def compare_with_truth(state: ReconsState, truth: Truth) -> TruthComparison:
    """Align ``state``'s projected phase to ``truth`` and score the pair."""
    sampling = tuple(float(s) for s in state.sampling_A)
    truth_phase, truth_sampling = truth.phase(state.kv, sampling)  # type: ignore[arg-type]
    recon_phase = object_phase(np.asarray(state.object_slices), "sum")
    truth_sum = np.sum(np.angle(truth_phase) if np.iscomplexobj(truth_phase) else truth_phase, axis=0)
    pair = align_to_truth(
        recon_phase,
        truth_sum,
        state.positions_px(np),
        probe_radius_px(np.asarray(state.probe_modes)),
        sampling_A=sampling,  # type: ignore[arg-type]
        truth_sampling_A=truth_sampling,
        truth_offset_px=truth.offset_px(np.asarray(state.positions_A), sampling),  # type: ignore[arg-type]
    )
    scores = pair_scores(pair, sampling)  # type: ignore[arg-type]
    region = mask_bounding_box(pair.mask)
    image, reference = pair.image_aligned[region], pair.reference[region]
    curve = frc(image, reference, sampling_A=sampling, detrend=True) if min(image.shape) >= 8 else None
    return TruthComparison(pair, scores, curve, sampling)  # type: ignore[arg-type]


def _frc_value(comparison: TruthComparison, options: dict[str, Any]) -> float:
    mode = options.get("mode", "resolution")
    if comparison.curve is None:
        raise MetricError("frc: the compared region is under 8 px on a side")
    if mode == "auc":
        # mean correlation up to Nyquist: the area under the curve over the frequency range
        values = comparison.curve.curve[1:]  # ring 0 (the mean) says nothing of resolution
        return float(np.nanmean(np.clip(values, -1.0, 1.0)))
    if mode != "resolution":
        raise MetricError(f"frc: options.mode {mode!r} is not one of resolution, auc")
    return float(frc_resolution(comparison.curve, options.get("threshold", "1/7")).resolution)


def _truth_metric(name: str, run: TrialRun, truth: Truth | None, options: dict[str, Any]) -> float:
    if truth is None:
        raise MetricError(f"{name}: needs a truth")
    if "truth" not in run.cache:
        run.cache["truth"] = compare_with_truth(run.state, truth)
    comparison: TruthComparison = run.cache["truth"]
    rmse_rad = float(comparison.scores["rmse_rad"])
    if name == "mse":
        return rmse_rad**2
    if name == "ssim":
        return float(comparison.scores["ssim"])
    if name == "frc":
        return _frc_value(comparison, options)
    return rmse_rad / interaction_constant(run.state.kv)  # potential_error [V*A]


def last_noise_model(plan: Any) -> tuple[str, dict[str, Any]]:
    """The last engine's noise model: name and numbers (the loss the run ended on)."""
    hook = plan.engines[-1].noise_model
    return hook.name, hook.props.model_dump()


def _heldout_loss(run: TrialRun, options: dict[str, Any]) -> float:
    """Held-out loss with ``options.noise_model`` and ``options.params`` when given, so every trial
    is scored by one loss even where the template varies the noise model; else the last engine's."""
    if run.heldout is None or run.patterns is None:
        raise MetricError("heldout_loss: the trial ran without held-out positions")
    if "noise_model" in options:
        name, numbers = options["noise_model"], {}
    else:
        name, numbers = last_noise_model(run.plan)
    return held_out_loss(run.state, run.patterns, run.heldout, name, {**numbers, **options.get("params", {})})


def _two_half_frc(run: TrialRun, options: dict[str, Any]) -> float:
    if run.rerun is None:
        raise MetricError("two_half_frc: the trial cannot re-run its plan")
    n = run.state.n_positions
    order = np.random.default_rng(int(options.get("seed", 0))).permutation(n)
    half_a, half_b = np.sort(order[: n // 2]), np.sort(order[n // 2 :])
    state_a, state_b = run.rerun(half_b), run.rerun(half_a)
    curve = two_half_frc(state_a, state_b)
    return float(frc_resolution(curve, options.get("threshold", "half-bit")).resolution)


def metric_value(name: str, run: TrialRun, truth: Truth | None, options: dict[str, Any]) -> float:
    """The value of metric ``name`` (built-in or ``module:function``) for a finished trial."""
    if name in ("mse", "ssim", "frc", "potential_error"):
        return _truth_metric(name, run, truth, options)
    if name == "heldout_loss":
        return _heldout_loss(run, options)
    if name == "two_half_frc":
        return _two_half_frc(run, options)
    if name == "final_error":
        if not run.state.error_history:
            raise MetricError("final_error: the run recorded no error")
        return float(run.state.error_history[-1])
    if name == "wall_time":
        return run.wall_time_s
    if name == "peak_memory":
        return run.peak_memory_mb
    from phaser.hooks import load_function, refusal

    refused = refusal(name)
    if refused:
        raise MetricError(f"{name}: {refused}")
    value = load_function(name)(run.state, {"truth": truth, "plan": run.plan, "options": options})
    return float(value)


def all_truth_scores(run: TrialRun, truth: Truth | None) -> dict[str, float]:
    """Every truth score of the trial (for its attributes), empty without a truth."""
    if truth is None:
        return {}
    out = {}
    for name in ("mse", "ssim", "potential_error"):
        out[name] = _truth_metric(name, run, truth, {})
    comparison: TruthComparison = run.cache["truth"]
    out["frc_resolution_A"] = float(comparison.scores.get("frc_resolution_A", math.nan))
    out["frc_half_bit_resolution_A"] = float(comparison.scores.get("frc_half_bit_resolution_A", math.nan))
    return out
