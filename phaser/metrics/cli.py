"""The ``phaser score`` subcommand: score a reconstruction state file against a simulated truth."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from phaser.io.state_file import load_state
from phaser.metrics.truth import frame_offset_px, phase_error_vs_truth

# Scores each --metric selects; "all" selects every one.
METRIC_KEYS = {
    "rmse": ("rmse_rad",),
    "ssim": ("ssim",),
    "frc": ("frc_resolution_A", "frc_half_bit_resolution_A", "frc_at_nyquist"),
    "potential": ("rmse_potential_VA",),
}
# Unit and direction of each reported number ("" when it is a fitted nuisance, not a score).
DESCRIPTIONS = {
    "rmse_rad": ("rad", "lower"),
    "ssim": ("", "higher"),
    "frc_resolution_A": ("A", "lower"),
    "frc_half_bit_resolution_A": ("A", "lower"),
    "frc_at_nyquist": ("", ""),
    "rmse_potential_VA": ("V*A", "lower"),
    "shift_px": ("px", ""),
    "offset_rad": ("rad", ""),
    "ramp_rad_per_px": ("rad/px", ""),
    "scale": ("", ""),
    "mask_pixels": ("px", ""),
    "probe_radius_px": ("px", ""),
}
ALIGNMENT_KEYS = (
    "shift_px",
    "offset_rad",
    "ramp_rad_per_px",
    "scale",
    "mask_pixels",
    "probe_radius_px",
)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``score`` to an argparse ``subparsers`` object; its handler is ``args.handler``."""
    parser = subparsers.add_parser(
        "score",
        help="score a reconstruction against the truth of a simulated dataset",
        description="Compare the projected phase of a reconstruction (state file) with the truth "
        "of a simulated dataset (phaser simulate) inside the illuminated region, after removing "
        "a sub-pixel shift, a constant phase offset and a phase ramp.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("recon", type=Path, help="reconstruction state file (.h5)")
    parser.add_argument("--truth", type=Path, required=True, help="simulated dataset (.h5) with its truth")
    parser.add_argument("--metric", choices=[*METRIC_KEYS, "all"], default="all", help="which score(s) to report")
    parser.add_argument("--json", action="store_true", help="print the scores as JSON")
    parser.add_argument(
        "--probe-radius",
        type=float,
        default=None,
        help="radius [px] around each position of the compared region "
        "(default: the radius holding half of the probe's intensity)",
    )
    parser.add_argument("--no-ramp", action="store_true", help="do not fit a phase ramp")
    parser.add_argument("--scale", action="store_true", help="also fit a phase scale factor")
    parser.set_defaults(handler=run_score)
    return parser


def score_files(
    recon_path: str | Path,
    truth_path: str | Path,
    probe_radius: float | None = None,
    ramp: bool = True,
    scale: bool = False,
) -> dict[str, Any]:
    """Every score of :func:`phase_error_vs_truth` for a state file against a simulated truth.

    The projected phase of truth and reconstruction is the sum of their slices' phases, which does
    not wrap for a thick specimen as the phase of the slices' product would (a simulated truth has
    thin slices, each well inside (-pi, pi]); the truth is placed by the mean offset between the two
    position sets (when the state has as many positions as the truth; otherwise the registration
    alone finds the shift). A specimen dataset's truth is its ``truth/potential_VA`` times the
    interaction constant: band-limited at the grid's Nyquist frequency, unlike ``truth/object``,
    the simulation's potential, which is rolled off from half of it.
    """
    from phaser.simulate.files import read_truth
    from phaser.simulate.from_specimen import read_potential

    state = load_state(recon_path)
    if not Path(truth_path).exists():
        raise ValueError(f"{truth_path}: file not found")
    try:
        truth = read_truth(truth_path)
    except (KeyError, OSError) as exc:
        raise ValueError(f"{truth_path}: no simulated truth in this file ({exc})") from None
    offset = (0.0, 0.0)
    if len(truth["positions_A"]) == state.n_positions:
        offset = frame_offset_px(state.positions_A, truth["positions_A"], state.sampling_A)
    truth_phase = truth["object"]
    if "potential_VA" in truth:
        potential, attrs = read_potential(truth_path)
        truth_phase = attrs["interaction_constant"] * potential.astype(np.float64)
    return phase_error_vs_truth(
        state,
        truth_phase,
        sampling_A=state.sampling_A,
        truth_sampling_A=truth["sampling_A"],
        truth_offset_px=offset,
        combine="sum",
        probe_radius_px=probe_radius,
        ramp=ramp,
        scale=scale,
    )


def select_scores(scores: dict[str, Any], metric: str) -> dict[str, Any]:
    """The scores of ``metric`` (or all), the fitted alignment, and the per-slice rmse and ssim
    among the selected scores."""
    if metric == "all":
        names = [name for keys in METRIC_KEYS.values() for name in keys]
    else:
        names = list(METRIC_KEYS[metric])
    selected = {k: scores[k] for k in names if k in scores}
    selected.update({k: scores[k] for k in ALIGNMENT_KEYS})
    per_slice_names = [k for k in ("rmse_rad", "ssim") if k in names]
    if "per_slice" in scores and per_slice_names:
        selected["per_slice"] = [{k: s[k] for k in [*per_slice_names, "offset_rad"]} for s in scores["per_slice"]]
    return selected


def _format(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(_format(v) for v in value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.5g}"
    return str(value)


def format_table(scores: dict[str, Any]) -> str:
    """A plain-text table: one line per number with its unit and whether lower or higher is
    better (blank for the fitted alignment)."""
    lines = [f"{'metric':<28}{'value':>22}  {'unit':<7}better"]
    for name, value in scores.items():
        if name == "per_slice":
            continue
        unit, better = DESCRIPTIONS.get(name, ("", ""))
        lines.append(f"{name:<28}{_format(value):>22}  {unit:<7}{better}")
    for index, slice_scores in enumerate(scores.get("per_slice", [])):
        text = ", ".join(f"{k} {_format(v)}" for k, v in slice_scores.items())
        lines.append(f"slice {index}: {text}")
    return "\n".join(lines)


def _json_safe(value: Any) -> Any:
    """nan and inf become null, which strict JSON readers accept."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def run_score(args: argparse.Namespace) -> int:
    """Score ``args.recon`` against ``args.truth`` and print a table or JSON; returns 0."""
    scores = score_files(args.recon, args.truth, args.probe_radius, not args.no_ramp, args.scale)
    selected = select_scores(scores, args.metric)
    if args.json:
        print(json.dumps({"recon": str(args.recon), "truth": str(args.truth), **selected}, indent=2))
    else:
        print(f"{args.recon} vs truth {args.truth}")
        print(format_table(selected))
    return 0
