"""Text summaries of a study: the status table and the closing summary of a run."""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from phaser_opt.gallery import top_trials
from phaser_opt.objective import FAIL_REASON, PRUNE_REASON


def _values_text(trial: FrozenTrial) -> str:
    return ", ".join(f"{v:.5g}" for v in trial.values) if trial.values else "-"


def _seconds(trial: FrozenTrial) -> str:
    return f"{trial.duration.total_seconds():.1f}" if trial.duration else "-"


def _note(trial: FrozenTrial) -> str:
    if trial.state == TrialState.PRUNED:
        return trial.user_attrs.get(PRUNE_REASON, "")
    if trial.state == TrialState.FAIL:
        return trial.user_attrs.get(FAIL_REASON, "")
    return "enqueued" if trial.user_attrs.get("enqueued") else ""


def status_table(study: optuna.Study) -> str:
    """One line per trial: number, state, value(s), seconds, and why it was pruned or failed."""
    names = ", ".join(study.metric_names or ["value"])
    lines = [f"study {study.study_name!r}", f"{'trial':>5}  {'state':<9}{names:<28}{'seconds':>8}  note"]
    for trial in study.get_trials(deepcopy=False):
        lines.append(
            f"{trial.number:>5}  {trial.state.name.lower():<9}{_values_text(trial):<28}{_seconds(trial):>8}  "
            f"{_note(trial)[:100]}"
        )
    states = [t.state.name.lower() for t in study.get_trials(deepcopy=False)]
    lines.append(", ".join(f"{states.count(s)} {s}" for s in sorted(set(states))) or "no trials yet")
    return "\n".join(lines)


def closing_summary(study: optuna.Study, loaded: Any, top: int = 5) -> str:
    """The top trials, the best parameters and the next commands to run."""
    best = top_trials(study, top)
    if not best:
        return "No trial completed: see `phaser-opt status` for why each one stopped."
    names = study.metric_names or ["value"]
    lines = [f"Top {len(best)} trial(s) ({', '.join(names)}):"]
    for trial in best:
        lines.append(f"  #{trial.number:<4} {_values_text(trial):<24} {_seconds(trial)} s  {trial.params}")
    first = best[0]
    lines.append(f"Best parameters (trial {first.number}):")
    lines += [f"  {name} = {value}" for name, value in first.params.items()] or ["  (none: a plain plan)"]
    enqueued = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("enqueued") and t.values]
    for trial in enqueued:
        lines.append(f"Enqueued baseline: trial {trial.number}, {_values_text(trial)}")
    study_file = loaded.path
    lines += [
        "Next:",
        f"  phaser-opt best {study_file} -o best.yaml && phaser run best.yaml",
        f"  phaser-opt dashboard {study_file}        # trials with their images, in a browser",
        f"  phaser-opt report {study_file} -o report.html",
    ]
    return "\n".join(lines)
