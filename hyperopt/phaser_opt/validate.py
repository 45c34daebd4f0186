"""``phaser-opt validate``: every problem of a study before any trial runs.

Checks the study file and the template's annotations (by loading them), that the sampler and
pruner can be built with their options, that the storage URL can be parsed, that each enqueued
point names parameters of the space with admissible values, and that the concrete plans at the
lowest, highest and a random point of the space are valid plans.
"""

from __future__ import annotations

from typing import Any

from phaser.hooks import refusal
from phaser.plan import PlanError, validate_plan
from phaser_opt.samplers import build_pruner, build_sampler
from phaser_opt.space import AnnotationError, ChoiceParam, SearchSpace
from phaser_opt.spec import StudyError
from phaser_opt.storage import StorageError, check_url
from phaser_opt.study import LoadedStudy


def enqueue_problems(space: SearchSpace, enqueued: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """Each enqueued point's unknown names and out-of-range values, with its path."""
    problems = []
    for index, point in enumerate(enqueued):
        for name, value in point.items():
            path = f"enqueue[{index}].{name}"
            param = space.params.get(name)
            if param is None:
                problems.append((path, f"not a parameter of the template (they are: {', '.join(space.params)})"))
            elif isinstance(param, ChoiceParam):
                if value not in param.labels:
                    problems.append((path, f"{value!r} is not one of {list(param.labels)}"))
            elif isinstance(value, bool) or not isinstance(value, (int, float)):
                problems.append((path, f"expected a number, got {value!r}"))
            elif not param.low <= value <= param.high:
                problems.append((path, f"{value} is outside [{param.low}, {param.high}]"))
    return problems


def corner_problems(study: LoadedStudy, seed: int = 0) -> tuple[list[tuple[str, str]], int]:
    """Problems of the concrete plans at the low, high and a random point; returns them and the
    number of plans checked."""
    from phaser_opt.objective import StudyObjective

    check_files = study.spec.data is None or study.spec.data.simulate is None or study.data_path.exists()
    objective = StudyObjective(study, truth=None)
    problems, checked = [], 0
    for which in ("low", "high", "random"):
        params, _ = study.space.corner(which, seed)
        try:
            from optuna.trial import FixedTrial

            plan = objective.concrete_plan(FixedTrial(params))
            validate_plan(plan, f"{which} point", base=study.plan_base, check_files=check_files)
        except PlanError as exc:
            problems += [(f"template ({which} point {params}): {p}", m) for p, m in exc.problems]
        except AnnotationError as exc:
            problems += exc.problems
        checked += 1
        if study.space.is_empty:
            break
    return problems, checked


def validate_study(study: LoadedStudy) -> list[str]:
    """Every problem of a loaded study; raises :class:`StudyError` listing them, else returns
    lines describing what was checked."""
    spec, problems = study.spec, []
    for label, build in (
        ("sampler", lambda: build_sampler(spec.sampler, study.space)),
        ("pruner", lambda: build_pruner(spec.pruner)),
    ):
        try:
            build()
        except ValueError as exc:
            problems.append((label, str(exc).split(": ", 1)[-1]))
    try:
        check_url(study.storage_url)
    except StorageError as exc:
        problems.append(("storage", str(exc)))
    problems += enqueue_problems(study.space, spec.enqueue)
    for index, objective in enumerate(spec.objectives):
        refused = refusal(objective.metric) if ":" in objective.metric else None
        if refused:
            problems.append((f"objectives[{index}].metric", refused))
    plan_problems, checked = corner_problems(study)
    problems += plan_problems
    if problems:
        raise StudyError(str(study.path), problems)
    names = ", ".join(study.space.params) or "none (a plain plan)"
    return [
        f"study {spec.name!r}: {len(study.space)} parameter(s): {names}",
        f"objectives: {', '.join(f'{o.label} ({d})' for o, d in zip(spec.objectives, spec.directions, strict=True))}",
        f"sampler {spec.sampler.type}, pruner {spec.pruner.type}, {len(spec.enqueue)} enqueued point(s)",
        f"{checked} concrete plan(s) valid (lowest, highest and a random point of the space)",
        f"storage {study.storage_url}",
    ]
