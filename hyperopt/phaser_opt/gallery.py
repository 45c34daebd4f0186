"""The study gallery: the best trials' object phases side by side on one colour scale (plotly)."""

from __future__ import annotations

import math

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState


def top_trials(study: optuna.Study, n: int) -> list[FrozenTrial]:
    """The ``n`` best complete trials by the first objective (the Pareto front first for several)."""
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    if not complete:
        return []
    sign = 1.0 if study.directions[0] == optuna.study.StudyDirection.MINIMIZE else -1.0
    if len(study.directions) > 1:
        front = {t.number for t in study.best_trials}
        return sorted(complete, key=lambda t: (t.number not in front, sign * t.values[0]))[:n]
    return sorted(complete, key=lambda t: sign * t.value)[:n]


def shared_limits(images: list[np.ndarray], percentile: float = 0.5) -> tuple[float, float]:
    """One colour range for all images: robust percentiles of their pixels pooled, each image's
    mean removed first (a reconstruction's phase offset is arbitrary)."""
    pooled = np.concatenate([(img - np.mean(img)).ravel() for img in images])
    low, high = np.percentile(pooled, [percentile, 100 - percentile])
    return float(low), float(high)


def gallery_figure(study: optuna.Study, phases: list[tuple[FrozenTrial, np.ndarray]], columns: int = 4):
    """A plotly figure: one heatmap per trial (phase [rad], mean removed) with its value(s)."""
    from plotly.subplots import make_subplots

    names = study.metric_names or [f"value {i}" for i in range(len(study.directions))]
    titles = []
    for trial, _ in phases:
        values = ", ".join(f"{n} {v:.4g}" for n, v in zip(names, trial.values, strict=False))
        titles.append(f"#{trial.number}: {values}")
    columns = min(columns, len(phases))
    rows = math.ceil(len(phases) / columns)
    figure = make_subplots(
        rows=rows, cols=columns, subplot_titles=titles, horizontal_spacing=0.03, vertical_spacing=0.08
    )
    low, high = shared_limits([p for _, p in phases])
    for k, (_, phase) in enumerate(phases):
        heatmap = dict(
            # mrad precision is plenty for a picture, and the figure is stored in chunks of ~2 kB:
            # rounding cuts its size (and the storage writes per refresh) about four times
            z=np.round((phase - np.mean(phase))[::-1], 3).tolist(),
            zmin=low,
            zmax=high,
            colorscale="Magma",
            showscale=k == 0,
            colorbar=dict(title="phase [rad]"),
        )
        row, col = k // columns + 1, k % columns + 1
        figure.add_heatmap(**heatmap, row=row, col=col)
        # square pixels: each panel's x axis keeps the scale of its own y axis
        figure.update_xaxes(scaleanchor=f"y{k + 1 if k else ''}", row=row, col=col)
    figure.update_xaxes(showticklabels=False, constrain="domain")
    figure.update_yaxes(showticklabels=False, constrain="domain")
    figure.update_layout(
        title=f"Gallery: the {len(phases)} best trials' summed object phase (one colour scale)",
        height=300 * rows + 80,
        width=300 * columns + 120,
    )
    for annotation in figure.layout.annotations:
        annotation.font.size = 11
    return figure
