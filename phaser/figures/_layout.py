"""Shared pieces of every figure: the canvas, image panels, colour bars and scale bars.

Figures are plain :class:`matplotlib.figure.Figure` objects on an Agg canvas, never pyplot's global
figure manager, so building them is thread-safe and leaves no state behind.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colorbar import Colorbar
from matplotlib.figure import Figure
from matplotlib.image import AxesImage

#: The ``label`` of every colour-bar axes (``[ax for ax in fig.axes if ax.get_label() == COLORBAR_LABEL]``).
COLORBAR_LABEL = "colorbar"
#: The ``gid`` of every scale-bar artist; its text is ``artist.txt_label.get_text()``.
SCALE_BAR_GID = "scale_bar"
#: The short side of a figure [inches]: at least 500 px at the default 100 dpi.
MIN_SIDE_IN = 5.2
PANEL_IN = 3.2
PHASE_CMAP = "magma"
AMPLITUDE_CMAP = "gray"
DIFFERENCE_CMAP = "RdBu_r"


def new_figure(n_rows: int, n_cols: int, dpi: int = 100, panel_in: float = PANEL_IN, extra_in: float = 1.0) -> Figure:
    """An empty Agg figure sized for a ``n_rows`` x ``n_cols`` grid of ``panel_in``-inch panels.

    ``extra_in`` [inches] is added to the width for colour bars and to the height for titles; neither
    side is shorter than :data:`MIN_SIDE_IN`.
    """
    width = max(n_cols * panel_in + extra_in, MIN_SIDE_IN)
    height = max(n_rows * panel_in + 0.6 * extra_in, MIN_SIDE_IN)
    fig = Figure(figsize=(width, height), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def nice_length(field_of_view: float, fraction: float = 0.2) -> float:
    """The largest round length (1, 2 or 5 times a power of ten) not above ``fraction * field_of_view``."""
    target = fraction * field_of_view
    if not math.isfinite(target) or target <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(target))
    step = max(m for m in (1.0, 2.0, 5.0) if m * power <= target * (1 + 1e-9))
    return float(f"{step * power:.6g}")  # 0.30000000000000004 -> 0.3


def add_scale_bar(ax: Axes, sampling: float, n_pixels: int, unit: str = "Å") -> None:
    """Draw a scale bar of a round length (about a fifth of the field of view) in the lower left of ``ax``.

    Parameters
    ----------
    ax
        Axes showing an image in pixel coordinates (``imshow`` without ``extent``).
    sampling
        Size of one pixel along x, in ``unit`` (e.g. A for real space, mrad for reciprocal space).
    n_pixels
        Width of the image [px].
    unit
        Unit of ``sampling``, written after the length ("2 Å", "10 mrad").
    """
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    length = nice_length(sampling * n_pixels)
    bar = AnchoredSizeBar(
        ax.transData,
        length / sampling,
        f"{length:g} {unit}",
        loc="lower left",
        pad=0.4,
        borderpad=0.5,
        sep=4,
        color="white",
        frameon=True,
        size_vertical=max(n_pixels / 80, 0.3),
    )
    bar.patch.set_facecolor("black")
    bar.patch.set_alpha(0.55)
    bar.patch.set_edgecolor("none")
    bar.set_gid(SCALE_BAR_GID)
    ax.add_artist(bar)


def scale_bar_labels(ax: Axes) -> list[str]:
    """The texts of the scale bars drawn on ``ax`` by :func:`add_scale_bar`."""
    return [a.txt_label.get_text() for a in ax.artists if a.get_gid() == SCALE_BAR_GID]


def colorbar_axes(fig: Figure) -> list[Axes]:
    """The colour-bar axes of ``fig`` (added by :func:`add_colorbar`)."""
    return [ax for ax in fig.axes if ax.get_label() == COLORBAR_LABEL]


def add_colorbar(fig: Figure, mappable: Any, axes: Axes | Sequence[Axes], label: str) -> Colorbar:
    """A colour bar beside ``axes`` labelled ``label`` (which states the unit, e.g. "phase [rad]")."""
    bar = fig.colorbar(mappable, ax=axes, label=label, shrink=0.9)
    bar.ax.set_label(COLORBAR_LABEL)
    return bar


def show_image(
    ax: Axes,
    image: np.ndarray,
    sampling: tuple[float, float],
    *,
    cmap: str,
    vmin: float | None = None,
    vmax: float | None = None,
    title: str = "",
    unit: str = "Å",
    norm: Any = None,
) -> AxesImage:
    """Show a 2D ``image`` with pixel ``sampling`` (dy, dx) [``unit``] at its physical aspect, with a scale bar."""
    limits = {} if norm is not None else {"vmin": vmin, "vmax": vmax}
    # sharp pixels for small images; large ones are shrunk on screen and need antialiasing
    interpolation = "nearest" if max(image.shape) <= 256 else "antialiased"
    im = ax.imshow(image, cmap=cmap, norm=norm, origin="upper", interpolation=interpolation, **limits)
    ax.set_aspect(sampling[0] / sampling[1])
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)
    add_scale_bar(ax, sampling[1], image.shape[1], unit)
    return im


def finite_limits(*images: np.ndarray, mask: np.ndarray | None = None) -> tuple[float, float]:
    """The common (min, max) of the finite values of ``images`` (inside ``mask`` when given); (0, 1) if none."""
    values = [np.asarray(im)[mask] if mask is not None else np.asarray(im).ravel() for im in images]
    flat = np.concatenate(values) if values else np.zeros(0)
    flat = flat[np.isfinite(flat)]
    if flat.size == 0:
        return 0.0, 1.0
    lo, hi = float(flat.min()), float(flat.max())
    return (lo, hi) if hi > lo else (lo - 0.5, hi + 0.5)


def as_sampling(sampling_A: float | Sequence[float]) -> tuple[float, float]:
    """``(dy, dx)`` from a scalar or a pair [A]."""
    values = np.broadcast_to(np.asarray(sampling_A, dtype=float), (2,))
    return float(values[0]), float(values[1])


def grid_shape(n: int) -> tuple[int, int]:
    """(rows, cols) of a near-square grid for ``n`` panels."""
    cols = max(1, math.ceil(math.sqrt(n)))
    return max(1, math.ceil(n / cols)), cols
