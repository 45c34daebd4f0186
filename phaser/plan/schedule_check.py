"""``expr`` schedules checked at validation: evaluated at a few iterations of their engine.

An expression's values are known only once ``niter`` is: at validation each one is evaluated at
iterations 1, 2, the middle, ``niter - 1`` and ``niter`` (at most five evaluations, whatever
``niter`` is) and must give a finite number there, one ``>= 0`` for fields that take no negative
values. An expression may still misbehave between those points; the engine stops on a
non-finite error then.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from phaser.hooks import Hook
from phaser.schedules import ExprSchedule, PiecewiseSchedule, schedule_at
from phaser.schedules import _not_negative as not_negative  # the marker of fields >= 0


def checked_iterations(niter: int) -> list[int]:
    """The iterations (1-based) an ``expr`` is evaluated at: first, second, middle, last two."""
    return sorted({i for i in (1, 2, (niter + 1) // 2, niter - 1, niter) if 1 <= i <= niter})


def expr_problems(engine: Any) -> list[tuple[str, str]]:
    """``(field path below the engine, message)`` for every ``expr`` schedule that fails a check."""
    niter = engine.niter
    problems = []
    for path, hook in _hooks(engine):
        for name, field in type(hook.props).model_fields.items():
            value = getattr(hook.props, name, None)
            if not _has_expr(value):
                continue
            non_negative = any(getattr(m, "func", None) is not_negative for m in field.metadata)
            problem = _first_problem(value, niter, non_negative)
            if problem is not None:
                problems.append((f"{path}.{name}", problem))
    return problems


def _first_problem(schedule: Any, niter: int, non_negative: bool) -> str | None:
    for i in checked_iterations(niter):
        try:
            value = schedule_at(schedule, i, niter)
        except (ValueError, ZeroDivisionError, OverflowError, TypeError) as exc:
            return f"{_describe(schedule)} cannot be evaluated at iteration {i} of {niter}: {exc or type(exc).__name__}"
        if not math.isfinite(value):
            return f"{_describe(schedule)} is {value} at iteration {i} of {niter}; expected a finite number"
        if non_negative and value < 0:
            return f"expected values >= 0, but {_describe(schedule)} is {value:.6g} at iteration {i} of {niter}"
    return None


def _describe(schedule: Any) -> str:
    return f"expr {schedule.expr!r}" if isinstance(schedule, ExprSchedule) else "the schedule"


def _has_expr(value: Any) -> bool:
    if isinstance(value, ExprSchedule):
        return True
    if isinstance(value, PiecewiseSchedule):
        return any(_has_expr(v) for v in (value.init, *value.steps.values()))
    return False


def _hooks(engine: Any) -> Iterator[tuple[str, Hook]]:
    """Every hook of an engine plan with its field path (``solvers.object``, ``regularizers[0]``)."""
    for name in type(engine).model_fields:
        value = getattr(engine, name)
        if isinstance(value, Hook):
            yield name, value
        elif isinstance(value, dict):
            yield from ((f"{name}.{key}", v) for key, v in value.items() if isinstance(v, Hook))
        elif isinstance(value, (list, tuple)):
            yield from ((f"{name}[{k}]", v) for k, v in enumerate(value) if isinstance(v, Hook))
