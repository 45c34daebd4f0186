"""Flags and schedules: plan values that change with the engine iteration.

A flag is ``true``/``false`` or ``{after, every, before}``: on at engine iteration ``i`` (counted
from 1) when ``i > after``, ``(i - after) % every == 0`` and ``i < before``. A schedule is a
number or ``{type: constant | piecewise | expr | cosine | exponential, ...}``. Both are evaluated
on the host once per iteration, and the engines pass the values as traced arguments, so a new
value never forces a recompile.
"""

from __future__ import annotations

import ast
import math
import operator
from typing import Annotated, Literal

from pydantic import AfterValidator, ConfigDict, Field, field_validator

from phaser.hooks import StrictNumbers


class _Model(StrictNumbers):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class SimpleFlag(_Model):
    """On from iteration ``after + every`` every ``every`` iterations, off from ``before``."""

    after: int = Field(0, ge=0)
    every: int = Field(1, ge=1)
    before: int | None = Field(None, ge=1)

    def at(self, i: int) -> bool:
        """Whether the flag is on at engine iteration ``i`` (1-based)."""
        return i > self.after and (i - self.after) % self.every == 0 and (self.before is None or i < self.before)


Flag = bool | SimpleFlag


def flag_at(flag: Flag, i: int) -> bool:
    """Value of ``flag`` at engine iteration ``i`` (1-based)."""
    return flag if isinstance(flag, bool) else flag.at(i)


def flag_ever(flag: Flag, niter: int) -> bool:
    """Whether ``flag`` is on at any iteration of an ``niter``-iteration engine (O(1) in ``niter``)."""
    if isinstance(flag, bool):
        return flag and niter >= 1
    first = flag.after + flag.every  # the first iteration the flag is on
    return first <= niter and (flag.before is None or first < flag.before)


_BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
    ast.Mod: operator.mod,
    ast.FloorDiv: operator.floordiv,
}
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos}
_FUNCTIONS = {name: getattr(math, name) for name in ("exp", "log", "log10", "sqrt", "cos", "sin", "tan", "tanh")}
_FUNCTIONS.update({"min": min, "max": max, "abs": abs})
_CONSTANTS = {"pi": math.pi, "e": math.e}
EXPR_VARIABLES = ("i", "niter")


def _eval_node(node: ast.AST, names: dict[str, float]) -> float:
    if isinstance(node, ast.Expression):
        return _eval_node(node.body, names)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        return float(node.value)
    if isinstance(node, ast.Name) and node.id in names:
        return float(names[node.id])
    if isinstance(node, ast.Name) and node.id in _CONSTANTS:
        return _CONSTANTS[node.id]
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        return _BINARY[type(node.op)](_eval_node(node.left, names), _eval_node(node.right, names))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval_node(node.operand, names))
    if isinstance(node, ast.IfExp):
        test = _eval_node(node.test, names)
        return _eval_node(node.body if test else node.orelse, names)
    if isinstance(node, ast.Compare) and len(node.ops) == 1:
        ops = {
            ast.Lt: operator.lt,
            ast.LtE: operator.le,
            ast.Gt: operator.gt,
            ast.GtE: operator.ge,
            ast.Eq: operator.eq,
            ast.NotEq: operator.ne,
        }
        if type(node.ops[0]) in ops:
            return float(ops[type(node.ops[0])](_eval_node(node.left, names), _eval_node(node.comparators[0], names)))
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _FUNCTIONS
        and not node.keywords
    ):
        return float(_FUNCTIONS[node.func.id](*(_eval_node(a, names) for a in node.args)))
    raise ValueError(f"unsupported element {ast.dump(node)[:60]!r}")


def evaluate_expression(expr: str, i: int, niter: int) -> float:
    """Evaluate an arithmetic expression of ``i`` and ``niter`` (no Python code is executed)."""
    return _eval_node(ast.parse(expr, mode="eval"), {"i": i, "niter": niter})


class ConstantSchedule(_Model):
    """A fixed value."""

    type: Literal["constant"] = "constant"
    value: float

    def at(self, i: int, niter: int) -> float:
        return self.value


class PiecewiseSchedule(_Model):
    """``init`` until the first step; ``steps`` maps a starting iteration to a value (or schedule)."""

    type: Literal["piecewise"] = "piecewise"
    init: Schedule
    steps: dict[Annotated[int, Field(ge=1)], Schedule]

    def at(self, i: int, niter: int) -> float:
        for start in sorted(self.steps, reverse=True):
            if i >= start:
                return schedule_at(self.steps[start], i, niter)
        return schedule_at(self.init, i, niter)


class ExprSchedule(_Model):
    """An arithmetic expression of ``i`` (engine iteration, from 1) and ``niter``, e.g. ``0.1 * 0.9**i``."""

    type: Literal["expr"] = "expr"
    expr: str

    @field_validator("expr")
    @classmethod
    def _parses(cls, expr: str) -> str:
        try:
            evaluate_expression(expr, 1, 1)
        except (SyntaxError, ValueError, ZeroDivisionError, OverflowError) as exc:
            raise ValueError(
                f"cannot evaluate {expr!r} with i, niter, pi, e, exp, log, sqrt, cos, sin, min, max: {exc}"
            ) from exc
        return expr

    def at(self, i: int, niter: int) -> float:
        return evaluate_expression(self.expr, i, niter)


class CosineSchedule(_Model):
    """Cosine decay from ``init`` to ``final`` over ``steps`` iterations (default: the whole engine)."""

    type: Literal["cosine"] = "cosine"
    init: float
    final: float = 0.0
    steps: int | None = Field(None, ge=1)

    def at(self, i: int, niter: int) -> float:
        steps = self.steps or niter
        frac = min(max(i - 1, 0), steps) / steps
        return self.final + 0.5 * (self.init - self.final) * (1 + math.cos(math.pi * frac))


class ExponentialSchedule(_Model):
    """``init * rate ** (i - 1)``, never below ``floor``."""

    type: Literal["exponential"] = "exponential"
    init: float
    rate: float = Field(gt=0)
    floor: float = 0.0

    def at(self, i: int, niter: int) -> float:
        return max(self.init * self.rate ** (i - 1), self.floor)


ScheduleModel = Annotated[
    ConstantSchedule | PiecewiseSchedule | ExprSchedule | CosineSchedule | ExponentialSchedule,
    Field(discriminator="type"),
]
Schedule = float | ScheduleModel
PiecewiseSchedule.model_rebuild()


def _static_values(schedule: Schedule) -> list[float]:
    """Values a schedule is built from (an ``expr`` is known only when evaluated)."""
    if isinstance(schedule, (int, float)):
        return [float(schedule)]
    if isinstance(schedule, ConstantSchedule):
        return [schedule.value]
    if isinstance(schedule, PiecewiseSchedule):
        return [v for s in (schedule.init, *schedule.steps.values()) for v in _static_values(s)]
    if isinstance(schedule, CosineSchedule):
        return [schedule.init, schedule.final]
    if isinstance(schedule, ExponentialSchedule):
        return [schedule.init]
    return []


def _not_negative(schedule: Schedule) -> Schedule:
    negative = [v for v in _static_values(schedule) if v < 0]
    if negative:
        raise ValueError(f"expected values >= 0, but the schedule holds {negative[0]}")
    return schedule


NonNegativeSchedule = Annotated[Annotated[float, Field(ge=0)] | ScheduleModel, AfterValidator(_not_negative)]
"""A number >= 0 or a schedule built from such numbers."""
PositiveSchedule = Annotated[Annotated[float, Field(gt=0)] | ScheduleModel, AfterValidator(_not_negative)]
"""A number > 0, or a schedule built from numbers >= 0 (a decay may end at 0)."""


def schedule_at(schedule: Schedule, i: int, niter: int) -> float:
    """Value of ``schedule`` at engine iteration ``i`` (1-based) of ``niter``."""
    if isinstance(schedule, (int, float)):
        return float(schedule)
    return float(schedule.at(i, niter))
