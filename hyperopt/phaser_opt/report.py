"""``phaser-opt report``: one self-contained HTML page summarising a study.

The page holds the study summary, the top trials with their values and parameters, parameter
importances, the optimization history, the gallery of the best trials' object phases, and for
several objectives the Pareto front. Plotly's JavaScript is embedded once, so the page opens
without a network.
"""

from __future__ import annotations

import html
import math
import warnings
from collections import Counter
from typing import Any

import optuna
from optuna.trial import TrialState

from phaser_opt.gallery import top_trials


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_text(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _text(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.5g}"
    return str(value)


def _section(title: str, body: str) -> str:
    return f"<section><h2>{html.escape(title)}</h2>{body}</section>"


def _plot(figure: Any, first: bool) -> str:
    return figure.to_html(full_html=False, include_plotlyjs=bool(first))


def summary_rows(study: optuna.Study) -> list[list[Any]]:
    """Counts of trials per state."""
    counts = Counter(t.state.name.lower() for t in study.get_trials(deepcopy=False))
    return [[state, count] for state, count in sorted(counts.items())]


def top_rows(study: optuna.Study, n: int) -> tuple[list[str], list[list[Any]]]:
    """Headers and rows of the top-``n`` table: number, values, duration, parameters."""
    trials = top_trials(study, n)
    names = study.metric_names or [f"value {i}" for i in range(len(study.directions))]
    params = sorted({p for t in trials for p in t.params})
    headers = ["trial", *names, "seconds", *params]
    rows = []
    for t in trials:
        seconds = t.duration.total_seconds() if t.duration else math.nan
        rows.append([t.number, *t.values, seconds, *(t.params.get(p, "") for p in params)])
    return headers, rows


def build_report(study: optuna.Study, top: int = 10, gallery: Any = None) -> str:
    """The HTML page of ``study``; ``gallery`` is a plotly figure (or None)."""
    from optuna import visualization

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    parts = [_section("Trials", _table(["state", "count"], summary_rows(study)))]
    plots = []
    if complete:
        parts.append(_section(f"Top {min(top, len(complete))} trials", _table(*top_rows(study, top))))
        if len(study.directions) > 1:
            plots.append(("Pareto front", visualization.plot_pareto_front(study)))
        else:
            plots.append(("Optimization history", visualization.plot_optimization_history(study)))
        if len(complete) >= 2 and any(t.params for t in complete):
            try:
                for index, name in enumerate(study.metric_names or ["value"]):
                    # the evaluator ranks parameters by how they reach low targets: flip maximised ones
                    sign = 1.0 if study.directions[index] == optuna.study.StudyDirection.MINIMIZE else -1.0
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", UserWarning)
                        figure = visualization.plot_param_importances(
                            study, target=(lambda t, i=index, s=sign: s * t.values[i]), target_name=name
                        )
                    plots.append((f"Parameter importances ({name})", figure))
            except (ValueError, RuntimeError) as exc:
                parts.append(_section("Parameter importances", f"<p>not available: {html.escape(str(exc))}</p>"))
    else:
        parts.append("<p>No complete trial yet.</p>")
    if gallery is not None:
        plots.append(("Gallery", gallery))
    parts += [_section(title, _plot(figure, index == 0)) for index, (title, figure) in enumerate(plots)]
    title = f"phaser-opt study {html.escape(study.study_name)}"
    style = (
        "body{font-family:sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;text-align:right}th{background:#eee}"
    )
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title><style>{style}</style></head>"
        f"<body><h1>{title}</h1>{''.join(parts)}</body></html>"
    )
