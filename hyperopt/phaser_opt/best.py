"""The best trial's concrete plan, ready for ``phaser run``; for several objectives a Pareto point."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState

from phaser_opt.objective import PLAN_YAML


def knee_trial(study: optuna.Study) -> FrozenTrial:
    """The Pareto-front trial closest to the ideal point after scaling each objective to [0, 1]
    over the front (all objectives turned into "lower is better")."""
    front = study.best_trials
    if not front:
        raise ValueError(f"study {study.study_name!r} has no complete trial")
    signs = np.array([1.0 if d == optuna.study.StudyDirection.MINIMIZE else -1.0 for d in study.directions])
    values = np.array([t.values for t in front]) * signs
    span = np.ptp(values, axis=0)
    scaled = (values - values.min(axis=0)) / np.where(span > 0, span, 1.0)
    return front[int(np.argmin(np.linalg.norm(scaled, axis=1)))]


def chosen_trial(study: optuna.Study, number: int | None = None) -> FrozenTrial:
    """Trial ``number`` (it must be complete), else the best one (the knee of the Pareto front)."""
    if number is not None:
        matches = [t for t in study.get_trials(deepcopy=False) if t.number == number]
        if not matches:
            raise ValueError(f"--trial {number}: study {study.study_name!r} has no such trial")
        if matches[0].state != TrialState.COMPLETE:
            raise ValueError(f"--trial {number}: the trial is {matches[0].state.name.lower()}, not complete")
        return matches[0]
    if len(study.directions) > 1:
        return knee_trial(study)
    try:
        return study.best_trial
    except ValueError:
        raise ValueError(f"study {study.study_name!r} has no complete trial yet") from None


def best_plan_text(study: optuna.Study, trial: FrozenTrial, storage_url: str, rule: str) -> str:
    """The trial's concrete plan as YAML with a header naming study, trial, values and parameters."""
    plan = trial.user_attrs.get(PLAN_YAML)
    if not plan:
        raise ValueError(f"trial {trial.number} stored no plan")
    names = study.metric_names or [f"value{i}" for i in range(len(trial.values))]
    header = [
        f"# Best plan of study {study.study_name!r} ({storage_url}), trial {trial.number} ({rule}),",
        f"# exported {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC.",
        "# " + ", ".join(f"{n} = {v:.6g}" for n, v in zip(names, trial.values, strict=False)),
        "# parameters: " + yaml.safe_dump(trial.params, default_flow_style=True, width=10_000).strip(),
        "# Run it with: phaser run <this file>",
    ]
    return "\n".join(header) + "\n" + plan
