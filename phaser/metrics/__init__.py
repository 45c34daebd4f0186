"""Scores of reconstructions: image metrics, FRC, alignment, truth comparison and held-out loss.

Each score says whether lower or higher is better, its unit, and what alignment it expects:
the pixel metrics (:mod:`~phaser.metrics.images`) and the FRC compare images already on one grid;
:func:`align_to` removes the shift, phase offset and ramp that ptychography leaves undetermined;
:func:`phase_error_vs_truth` does both against a simulated truth; :func:`held_out_loss` and
:func:`two_half_frc` need no truth.
"""

from phaser.metrics.align import (
    AlignedPair,
    align_to,
    background_image,
    fit_phase_background,
    illuminated_mask,
    mask_bounding_box,
    probe_radius_px,
    register_shift,
)
from phaser.metrics.depth import DepthFit, depth_profile_fit, gaussian_profile
from phaser.metrics.frc import (
    FRCResolution,
    FRCResult,
    frc,
    frc_resolution,
    half_bit_threshold,
    threshold_curve,
)
from phaser.metrics.heldout import (
    held_out_loss,
    model_intensities,
    noise_params,
    slice_propagators,
    split_holdout,
    two_half_frc,
)
from phaser.metrics.images import mse, ncc, rmse, ssim
from phaser.metrics.truth import (
    align_to_truth,
    frame_offset_px,
    object_phase,
    pair_scores,
    phase_error_vs_truth,
    potential_to_phase,
    resample_to_grid,
)

__all__ = [
    "AlignedPair",
    "DepthFit",
    "FRCResolution",
    "FRCResult",
    "align_to",
    "align_to_truth",
    "background_image",
    "depth_profile_fit",
    "fit_phase_background",
    "frame_offset_px",
    "frc",
    "frc_resolution",
    "gaussian_profile",
    "half_bit_threshold",
    "held_out_loss",
    "illuminated_mask",
    "mask_bounding_box",
    "model_intensities",
    "mse",
    "ncc",
    "noise_params",
    "object_phase",
    "pair_scores",
    "phase_error_vs_truth",
    "potential_to_phase",
    "probe_radius_px",
    "register_shift",
    "resample_to_grid",
    "rmse",
    "slice_propagators",
    "split_holdout",
    "ssim",
    "threshold_curve",
    "two_half_frc",
]
