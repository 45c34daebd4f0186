"""Line plots: the error per iteration and Fourier ring correlation curves."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from phaser.figures._layout import new_figure


def _line_figure(dpi: int) -> Figure:
    """An empty 8 x 5.2 inch figure for one plot."""
    return new_figure(1, 1, dpi, panel_in=5.2, extra_in=2.8)


def error_curve_figure(
    error_history: Sequence[float],
    engine_boundaries: Sequence[int] = (),
    dpi: int = 100,
    ylabel: str = "amplitude R-factor",
) -> Figure:
    """The error after each iteration (x = iteration, from 1), on a log scale when all are positive.

    ``engine_boundaries`` are the iterations after which a new engine started (e.g. ``[10]`` when
    the second engine begins with iteration 11); each is drawn as a dashed vertical line.
    """
    errors = np.asarray(error_history, dtype=float).ravel()
    iterations = np.arange(1, len(errors) + 1)
    fig = _line_figure(dpi)
    ax = fig.add_subplot()
    ax.plot(iterations, errors, marker="o" if len(errors) <= 40 else None, markersize=3, color="tab:blue")
    finite = errors[np.isfinite(errors)]
    if finite.size and np.all(finite > 0):
        ax.set_yscale("log")
    for k, boundary in enumerate(engine_boundaries):
        ax.axvline(boundary + 0.5, color="gray", linestyle="--", linewidth=1)
        ax.annotate(
            f"engine {k + 2}",
            (boundary + 0.5, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(3, -12),
            textcoords="offset points",
            color="gray",
        )
    ax.set_xlabel("iteration")
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)
    last = f": last {finite[-1]:.4g}" if finite.size else ""
    ax.set_title(f"error per iteration{last}")
    return fig


def _resolution_ticks(max_frequency_inv_A: float) -> list[float]:
    """Round resolutions [A] down to ``1 / max_frequency``, at most about eight of them."""
    candidates = [20, 10, 5, 3, 2, 1.5, 1, 0.8, 0.6, 0.5, 0.4, 0.3, 0.25, 0.2, 0.15, 0.1]
    finest = 1.0 / max_frequency_inv_A if max_frequency_inv_A > 0 else 1.0
    ticks = [r for r in candidates if r >= finest * 0.999]
    return [r for r in ticks if 1.0 / r >= 0.08 * max_frequency_inv_A][-8:]


def frc_figure(
    frequencies_inv_A: np.ndarray,
    frc_values: np.ndarray,
    thresholds: dict[str, np.ndarray] | None = None,
    resolutions_A: dict[str, float] | None = None,
    dpi: int = 100,
) -> Figure:
    """An FRC curve against spatial frequency [1/A], with its thresholds and where it crosses them.

    ``thresholds`` maps a name ("1/7", "half-bit") to a threshold per ring (or one number);
    ``resolutions_A`` maps the same names to the resolution [A] at the crossing, drawn as a dotted
    vertical line at ``1 / resolution`` and given in the legend. The top axis reads in A.
    """
    freqs = np.asarray(frequencies_inv_A, dtype=float).ravel()
    curve = np.asarray(frc_values, dtype=float).ravel()
    fig = _line_figure(dpi)
    ax = fig.add_subplot()
    ax.plot(freqs, curve, color="black", linewidth=1.8, label="FRC")
    colors = ["tab:red", "tab:blue", "tab:green", "tab:purple"]
    for k, (name, values) in enumerate((thresholds or {}).items()):
        threshold = np.broadcast_to(np.asarray(values, dtype=float), freqs.shape)
        ax.plot(freqs, threshold, color=colors[k % len(colors)], linestyle="--", linewidth=1, label=f"{name} threshold")
    for k, (name, resolution) in enumerate((resolutions_A or {}).items()):
        if resolution and np.isfinite(resolution) and resolution > 0:
            color = (
                colors[list(thresholds or {}).index(name) % len(colors)] if name in (thresholds or {}) else colors[k]
            )
            ax.axvline(1.0 / resolution, color=color, linestyle=":", linewidth=1.5, label=f"{name}: {resolution:.3g} Å")
    ax.axhline(0.0, color="gray", linewidth=0.5)
    ax.set_xlim(0, freqs.max() if freqs.size and freqs.max() > 0 else 1.0)
    ax.set_ylim(min(-0.1, float(np.nanmin(curve)) if curve.size else 0.0), 1.05)
    ax.set_xlabel("spatial frequency [1/Å]")
    ax.set_ylabel("Fourier ring correlation")
    top = ax.twiny()  # the same frequencies, labelled as resolutions 1/f [A]
    top.set_xlim(ax.get_xlim())
    ticks = _resolution_ticks(ax.get_xlim()[1])
    top.set_xticks([1.0 / r for r in ticks], [f"{r:g}" for r in ticks])
    top.set_xlabel("resolution [Å]")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper right")
    ax.set_title("Fourier ring correlation", pad=28)
    return fig
