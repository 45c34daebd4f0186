"""Scan positions and per-position tilts, drawn at their positions in A."""

from __future__ import annotations

import numpy as np
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from phaser.figures._layout import DIFFERENCE_CMAP, add_colorbar, new_figure


def _position_axes(ax: Axes, positions_A: np.ndarray, title: str) -> None:
    """Image orientation (y down), equal aspect, axes in A."""
    ax.set_aspect("equal")
    ax.set_xlabel("x [Å]")
    ax.set_ylabel("y [Å]")
    if not ax.yaxis_inverted():
        ax.invert_yaxis()
    ax.set_title(title)


def scan_figure(positions_A: np.ndarray, initial_positions_A: np.ndarray | None = None, dpi: int = 100) -> Figure:
    """Scan positions ``(P, 2)`` as (y, x) [A], coloured by their shift from ``initial_positions_A`` [A].

    The initial positions are drawn as grey rings, each joined to where it moved.
    """
    current = np.asarray(positions_A, dtype=float).reshape(-1, 2)
    initial = current if initial_positions_A is None else np.asarray(initial_positions_A, dtype=float).reshape(-1, 2)
    shift = np.hypot(*(current - initial).T)
    fig = new_figure(1, 1, dpi, panel_in=4.6)
    ax = fig.add_subplot()
    ax.scatter(initial[:, 1], initial[:, 0], s=28, facecolors="none", edgecolors="0.6", linewidths=0.8, label="initial")
    segments = np.stack([initial[:, ::-1], current[:, ::-1]], axis=1)
    ax.add_collection(LineCollection(segments, colors="0.5", linewidths=0.6))
    points = ax.scatter(
        current[:, 1],
        current[:, 0],
        c=shift,
        s=12,
        cmap="viridis",
        vmin=0.0,
        vmax=max(float(shift.max()), 1e-3),
        label="current",
    )
    ax.legend(loc="upper right", fontsize="small")
    _position_axes(ax, current, f"scan positions: {len(current)}, largest shift {shift.max():.3g} Å")
    add_colorbar(fig, points, ax, "shift from initial [Å]")
    return fig


def tilt_figure(positions_A: np.ndarray, tilt_mrad: np.ndarray, dpi: int = 100) -> Figure:
    """The tilt ``(P, 2)`` (y, x) [mrad] at each scan position [A]: one panel per component, one scale about 0."""
    positions = np.asarray(positions_A, dtype=float).reshape(-1, 2)
    tilt = np.asarray(tilt_mrad, dtype=float).reshape(-1, 2)
    bound = float(np.nanmax(np.abs(tilt))) if tilt.size else 0.0
    bound = bound if np.isfinite(bound) and bound > 0 else 1.0
    fig = new_figure(1, 2, dpi, panel_in=3.8)
    axes = fig.subplots(1, 2)
    for ax, component, name in zip(axes, tilt.T, ("y", "x"), strict=True):
        points = ax.scatter(
            positions[:, 1],
            positions[:, 0],
            c=component,
            s=30,
            marker="s",
            cmap=DIFFERENCE_CMAP,
            vmin=-bound,
            vmax=bound,
        )
        _position_axes(ax, positions, f"tilt {name}: mean {component.mean():.3g} mrad")
    add_colorbar(fig, points, list(axes), "tilt [mrad]")
    fig.suptitle("tilt per scan position")
    return fig
