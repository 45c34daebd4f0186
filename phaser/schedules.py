"""Flags and schedules: plan values that change with the engine iteration.

A flag is ``true``/``false`` or ``{after, every, before}``: on at engine iteration ``i`` (counted
from 1) when ``i > after``, ``(i - after) % every == 0`` and ``i < before``. A schedule is a
number or ``{type: constant | piecewise | expr | cosine | exponential, ...}``; ``cosine`` and
``exponential`` are optax's schedules, evaluated at step ``i - 1``. Both are evaluated on the host
once per iteration, and the engines pass the values as traced arguments, so a new value never
forces a recompile.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from typing import Annotated, Any, Literal

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


MAX_EXPR_DEPTH = 600
"""Deepest nesting of operations evaluated: deeper ones are refused before Python's own recursion limit."""


def _eval_node(node: ast.AST, names: dict[str, float], depth: int = 0) -> float:
    if depth > MAX_EXPR_DEPTH:
        raise ValueError(f"nested deeper than {MAX_EXPR_DEPTH} levels")
    depth += 1
    if isinstance(node, ast.Expression):
        return _eval_node(node.body, names, depth)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        return float(node.value)
    if isinstance(node, ast.Name) and node.id in names:
        return float(names[node.id])
    if isinstance(node, ast.Name) and node.id in _CONSTANTS:
        return _CONSTANTS[node.id]
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        return _BINARY[type(node.op)](_eval_node(node.left, names, depth), _eval_node(node.right, names, depth))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval_node(node.operand, names, depth))
    if isinstance(node, ast.IfExp):
        test = _eval_node(node.test, names, depth)
        return _eval_node(node.body if test else node.orelse, names, depth)
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
            return float(
                ops[type(node.ops[0])](
                    _eval_node(node.left, names, depth), _eval_node(node.comparators[0], names, depth)
                )
            )
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _FUNCTIONS
        and not node.keywords
    ):
        return float(_FUNCTIONS[node.func.id](*(_eval_node(a, names, depth) for a in node.args)))
    raise ValueError(f"unsupported element {ast.dump(node)[:60]!r}")


MAX_EXPR_LENGTH = 1000
"""Longest expression accepted [characters]: longer ones exhaust the parser's stack, not a ValueError."""


def evaluate_expression(expr: str, i: int, niter: int) -> float:
    """Evaluate an arithmetic expression of ``i`` and ``niter`` (no Python code is executed)."""
    if len(expr) > MAX_EXPR_LENGTH:
        raise ValueError(f"longer than {MAX_EXPR_LENGTH} characters")
    try:
        return _eval_node(ast.parse(expr, mode="eval"), {"i": i, "niter": niter})
    except RecursionError:
        raise ValueError("nested too deeply") from None


def _evaluate(schedule: Callable[[int], Any], count: int) -> float:
    """An optax schedule's value at step ``count``, computed in double precision (on the CPU if there is one).

    The value is a Python float as the other schedules' are, whatever the run's precision or device.
    """
    import jax

    enable_x64 = jax.enable_x64 if hasattr(jax, "enable_x64") else jax.experimental.enable_x64  # older jax
    try:
        host = jax.devices("cpu")[0]
    except RuntimeError:  # JAX_PLATFORMS without cpu
        host = None
    with enable_x64(True), jax.default_device(host):
        return float(schedule(count))


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
            shown = expr if len(expr) <= 80 else expr[:77] + "..."
            names = ", ".join((*EXPR_VARIABLES, *_CONSTANTS, *_FUNCTIONS))
            raise ValueError(f"cannot evaluate {shown!r} with {names}: {exc}") from exc
        return expr

    def at(self, i: int, niter: int) -> float:
        return evaluate_expression(self.expr, i, niter)


class CosineSchedule(_Model):
    """Cosine decay from ``init`` (iteration 1) to ``final`` (iteration ``steps + 1`` and after).

    ``final + (init - final) (1 + cos(pi min(i - 1, steps) / steps)) / 2``; ``steps`` defaults to
    the engine's ``niter``, whose last iteration is then one step short of ``final``.
    """

    type: Literal["cosine"] = "cosine"
    init: float
    final: float = 0.0
    steps: int | None = Field(None, ge=1)

    def at(self, i: int, niter: int) -> float:
        import optax  # here, not at the top: importing the plan schema need not load jax

        # optax counts steps from 0 and decays to alpha * init: decay the difference to 0 instead,
        # which also allows init = 0 (a rise) and init < final
        decay = optax.cosine_decay_schedule(self.init - self.final, self.steps or max(niter, 1))
        return self.final + _evaluate(decay, max(i - 1, 0))


class ExponentialSchedule(_Model):
    """``init * rate ** (i - 1)``, never below ``floor``."""

    type: Literal["exponential"] = "exponential"
    init: float
    rate: float = Field(gt=0)
    floor: float = 0.0

    def at(self, i: int, niter: int) -> float:
        import optax  # here, not at the top: importing the plan schema need not load jax

        # the floor is applied here: optax's end_value is an upper bound when rate > 1
        decay = optax.exponential_decay(self.init, transition_steps=1, decay_rate=self.rate)
        return max(_evaluate(decay, max(i - 1, 0)), self.floor)


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
