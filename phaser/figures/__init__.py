"""Figures for people: reconstructions, probes, error and FRC curves, with units, colour and scale bars.

Every function returns a :class:`matplotlib.figure.Figure` on an Agg canvas (no pyplot state), at
least 500 px on its short side at the default 100 dpi. Write it with :func:`save_figure` or turn
it into PNG bytes with :func:`figure_png_bytes`. Used by ``phaser run`` (``phaser.io.images``) and
by the hyperparameter-study service, which uploads the same figures.
"""

from phaser.figures._curves import error_curve_figure, frc_figure
from phaser.figures._layout import (
    COLORBAR_LABEL,
    SCALE_BAR_GID,
    add_scale_bar,
    colorbar_axes,
    nice_length,
    scale_bar_labels,
)
from phaser.figures._object import difference_figure, image_figure, object_phase_figure, slice_montage_figure
from phaser.figures._probe import probe_modes_figure, probe_power_fractions
from phaser.figures._save import figure_png_bytes, save_figure
from phaser.figures._scan import scan_figure, tilt_figure
from phaser.figures._state import STATE_FIGURE_KINDS, crop_to_scan, state_figures

__all__ = [
    "COLORBAR_LABEL",
    "SCALE_BAR_GID",
    "STATE_FIGURE_KINDS",
    "add_scale_bar",
    "colorbar_axes",
    "crop_to_scan",
    "difference_figure",
    "error_curve_figure",
    "figure_png_bytes",
    "frc_figure",
    "image_figure",
    "nice_length",
    "object_phase_figure",
    "probe_modes_figure",
    "probe_power_fractions",
    "save_figure",
    "scale_bar_labels",
    "scan_figure",
    "slice_montage_figure",
    "state_figures",
    "tilt_figure",
]
