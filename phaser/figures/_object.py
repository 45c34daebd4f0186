"""Figures of object images: one image, a montage of slices, and a reconstruction against its truth."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from phaser.figures._layout import (
    DIFFERENCE_CMAP,
    PHASE_CMAP,
    add_colorbar,
    as_sampling,
    finite_limits,
    grid_shape,
    new_figure,
    show_image,
)


def _real_phase(phase_rad: np.ndarray) -> np.ndarray:
    """Phases [rad] from real phases, or the angle of complex transmissions."""
    array = np.asarray(phase_rad)
    return np.angle(array) if np.iscomplexobj(array) else array.astype(float)


def image_figure(
    image: np.ndarray,
    sampling_A: float | Sequence[float],
    title: str,
    colorbar_label: str,
    cmap: str = PHASE_CMAP,
    vmin: float | None = None,
    vmax: float | None = None,
    dpi: int = 100,
) -> Figure:
    """One real-space image with pixel size ``sampling_A`` [A], a colour bar ``colorbar_label`` and a scale bar in A."""
    image = np.asarray(image, dtype=float)
    fig = new_figure(1, 1, dpi, panel_in=4.6)
    ax = fig.add_subplot()
    im = show_image(ax, image, as_sampling(sampling_A), cmap=cmap, vmin=vmin, vmax=vmax)
    fig.suptitle(title)
    add_colorbar(fig, im, ax, colorbar_label)
    return fig


def object_phase_figure(
    phase_rad: np.ndarray,
    sampling_A: float | Sequence[float],
    title: str = "object phase (summed over slices)",
    vmin: float | None = None,
    vmax: float | None = None,
    dpi: int = 100,
) -> Figure:
    """The object phase ``(Ny, Nx)`` [rad] (or the angle of a complex transmission); pixel size ``sampling_A`` [A]."""
    return image_figure(_real_phase(phase_rad), sampling_A, title, "phase [rad]", PHASE_CMAP, vmin, vmax, dpi)


def _slice_titles(n_slices: int, slice_thicknesses_A: Sequence[float] | None) -> list[str]:
    """ "slice 1 (z 0–10 Å)" per slice: the depth range [A] of each slice below the entrance surface."""
    if slice_thicknesses_A is None or len(slice_thicknesses_A) != n_slices:
        return [f"slice {s + 1}" for s in range(n_slices)]
    edges = np.concatenate([[0.0], np.cumsum(np.asarray(slice_thicknesses_A, dtype=float))])
    return [f"slice {s + 1} (z {edges[s]:.3g}–{edges[s + 1]:.3g} Å)" for s in range(n_slices)]


def slice_montage_figure(
    slice_phases_rad: np.ndarray,
    sampling_A: float | Sequence[float],
    slice_thicknesses_A: Sequence[float] | None = None,
    dpi: int = 100,
    *,
    colorbar_label: str = "phase [rad]",
    cmap: str = PHASE_CMAP,
    title: str = "object phase per slice",
) -> Figure:
    """Every slice ``(S, Ny, Nx)`` on one colour scale with one colour bar; each panel titled by its depth [A].

    Complex slices are shown by their phase [rad]; pass amplitudes with another ``colorbar_label``
    and ``cmap`` to show a transmission.
    """
    slices = _real_phase(slice_phases_rad)
    slices = slices.reshape((-1, *slices.shape[-2:]))
    rows, cols = grid_shape(len(slices))
    fig = new_figure(rows, cols, dpi, panel_in=3.0 if len(slices) > 1 else 4.6)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    vmin, vmax = finite_limits(*slices)
    sampling = as_sampling(sampling_A)
    images = [
        show_image(ax, image, sampling, cmap=cmap, vmin=vmin, vmax=vmax, title=label)
        for ax, image, label in zip(axes, slices, _slice_titles(len(slices), slice_thicknesses_A), strict=False)
    ]
    for ax in axes[len(slices) :]:
        ax.set_axis_off()
    fig.suptitle(title)
    add_colorbar(fig, images[0], list(axes), colorbar_label)
    return fig


def difference_figure(
    reconstruction: np.ndarray,
    truth: np.ndarray,
    sampling_A: float | Sequence[float],
    mask: np.ndarray | None = None,
    unit: str = "rad",
    dpi: int = 100,
) -> Figure:
    """Truth, reconstruction (one colour scale) and their difference (diverging, symmetric about 0).

    Both images ``(Ny, Nx)`` are in ``unit`` on the same grid with pixel size ``sampling_A`` [A];
    align the reconstruction to the truth first (e.g. :func:`phaser.metrics.align.align_to`).
    ``mask`` (boolean, same shape) marks the region that is scored: its outline is drawn, the
    colour limits and the RMSE in the title [``unit``] come from inside it.
    """
    recon = _real_phase(reconstruction)
    truth = _real_phase(truth)
    if recon.shape != truth.shape:
        raise ValueError(f"reconstruction {recon.shape} and truth {truth.shape} differ in shape")
    inside = np.ones(truth.shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    diff = recon - truth
    rmse = float(np.sqrt(np.nanmean(diff[inside] ** 2))) if inside.any() else float("nan")
    vmin, vmax = finite_limits(truth, recon, mask=inside)
    bound = float(np.nanmax(np.abs(diff[inside]))) if inside.any() else 0.0
    bound = bound if np.isfinite(bound) and bound > 0 else 1.0
    sampling = as_sampling(sampling_A)

    fig = new_figure(1, 3, dpi, panel_in=4.2, extra_in=1.8)
    axes = fig.subplots(1, 3)
    show_image(axes[0], truth, sampling, cmap=PHASE_CMAP, vmin=vmin, vmax=vmax, title="truth")
    shown = show_image(axes[1], recon, sampling, cmap=PHASE_CMAP, vmin=vmin, vmax=vmax, title="reconstruction")
    diff_im = show_image(
        axes[2], diff, sampling, cmap=DIFFERENCE_CMAP, vmin=-bound, vmax=bound, title="reconstruction − truth"
    )
    if mask is not None:
        for ax, color in zip(axes, ("cyan", "cyan", "black"), strict=True):
            ax.contour(inside.astype(float), levels=[0.5], colors=color, linewidths=1.0, linestyles="--")
    quantity = "phase" if unit == "rad" else "value"
    add_colorbar(fig, shown, list(axes[:2]), f"{quantity} [{unit}]")
    add_colorbar(fig, diff_im, axes[2], f"difference [{unit}]")
    fig.suptitle(
        f"reconstruction against truth: RMSE {rmse:.3g} {unit}" + (" (inside mask)" if mask is not None else "")
    )
    return fig
