"""Flags and schedules: their values at each engine iteration, their edge cases and their validation.

Expected values are written out by hand (iterations count from 1); none is computed with the
formula under test.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import TypeAdapter, ValidationError

from phaser.plan import PlanError, validate_plan
from phaser.schedules import (
    CosineSchedule,
    ExponentialSchedule,
    ExprSchedule,
    Flag,
    NonNegativeSchedule,
    PositiveSchedule,
    Schedule,
    SimpleFlag,
    evaluate_expression,
    flag_at,
    flag_ever,
    schedule_at,
)

FLAG = TypeAdapter(Flag)
SCHEDULE = TypeAdapter(Schedule)
NON_NEGATIVE = TypeAdapter(NonNegativeSchedule)
POSITIVE = TypeAdapter(PositiveSchedule)
EXAMPLES = Path(__file__).resolve().parents[1] / "plans" / "examples"
GRADIENT_PLAN = yaml.safe_load((EXAMPLES / "gradient_1slice.yaml").read_text())


def on_iterations(flag: Flag, niter: int = 12) -> list[int]:
    """The iterations 1..niter at which ``flag`` is on."""
    return [i for i in range(1, niter + 1) if flag_at(flag, i)]


def values(schedule: Any, niter: int, upto: int | None = None) -> list[float]:
    """``schedule`` at iterations 1..upto (default niter) of an ``niter``-iteration engine."""
    return [schedule_at(schedule, i, niter) for i in range(1, (upto or niter) + 1)]


# --- flags ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flag", "expected"),
    [
        (True, list(range(1, 13))),
        (False, []),
        ({}, list(range(1, 13))),
        ({"after": 3}, [4, 5, 6, 7, 8, 9, 10, 11, 12]),
        ({"every": 3}, [3, 6, 9, 12]),
        # `every` counts from `after`: the first on iteration is after + every
        ({"after": 2, "every": 3}, [5, 8, 11]),
        ({"after": 1, "every": 2}, [3, 5, 7, 9, 11]),
        ({"after": 4, "every": 4}, [8, 12]),
        ({"before": 5}, [1, 2, 3, 4]),
        ({"before": 1}, []),
        ({"after": 2, "every": 2, "before": 9}, [4, 6, 8]),
        ({"after": 2, "every": 2, "before": 8}, [4, 6]),
        ({"after": 5, "before": 6}, []),
        ({"after": 12}, []),
        ({"every": 13}, []),
    ],
    ids=str,
)
def test_flag_is_on_at_the_documented_iterations(flag: Any, expected: list[int]) -> None:
    assert on_iterations(FLAG.validate_python(flag)) == expected


def test_flag_defaults_are_on_every_iteration_from_the_first() -> None:
    flag = SimpleFlag()
    assert (flag.after, flag.every, flag.before) == (0, 1, None)
    assert flag_at(flag, 1) and flag_at(flag, 1000)


@pytest.mark.parametrize("niter", range(0, 9))
def test_flag_ever_says_whether_any_iteration_is_on(niter: int) -> None:
    for after in range(5):
        for every in range(1, 5):
            for before in (None, *range(1, 10)):
                flag = SimpleFlag(after=after, every=every, before=before)
                assert flag_ever(flag, niter) == bool(on_iterations(flag, niter)), (flag, niter)
    assert flag_ever(True, niter) == (niter >= 1)
    assert not flag_ever(False, niter)


def test_flag_ever_examples() -> None:
    assert not flag_ever(SimpleFlag(after=5), 5)
    assert flag_ever(SimpleFlag(after=5), 6)
    assert not flag_ever(SimpleFlag(after=2, every=3), 4)  # first on at 5
    assert flag_ever(SimpleFlag(after=2, every=3), 5)
    assert not flag_ever(SimpleFlag(after=2, every=3, before=5), 100)
    assert flag_ever(SimpleFlag(after=2, every=3, before=6), 100)
    assert flag_ever(SimpleFlag(after=10**9), 10**9 + 1)  # O(1), no loop over the iterations


@pytest.mark.parametrize(
    ("flag", "words"),
    [
        ({"every": 0}, "greater than or equal to 1"),
        ({"after": -1}, "greater than or equal to 0"),
        ({"before": 0}, "greater than or equal to 1"),
        ({"after": 1.5}, "valid integer"),
        ({"every": 2, "start": 1}, "Extra inputs are not permitted"),
    ],
    ids=str,
)
def test_bad_flags_are_refused(flag: dict, words: str) -> None:
    with pytest.raises(ValidationError, match=words):
        FLAG.validate_python(flag)


def test_flags_are_frozen() -> None:
    flag = SimpleFlag(after=1)
    with pytest.raises(ValidationError):
        flag.after = 3  # type: ignore[misc]


# --- numbers and constants -----------------------------------------------------------------------


def test_a_number_is_its_value_at_every_iteration() -> None:
    assert values(0.25, 5) == [0.25] * 5
    assert schedule_at(3, 1, 1) == 3.0 and isinstance(schedule_at(3, 1, 1), float)
    assert values(SCHEDULE.validate_python({"type": "constant", "value": -2.5}), 4) == [-2.5] * 4


# --- piecewise -----------------------------------------------------------------------------------


def test_piecewise_switches_at_the_first_iteration_of_each_step() -> None:
    schedule = SCHEDULE.validate_python({"type": "piecewise", "init": 1.0, "steps": {6: 0.01, 3: 0.1}})
    assert values(schedule, 8) == [1.0, 1.0, 0.1, 0.1, 0.1, 0.01, 0.01, 0.01]


def test_piecewise_step_at_the_first_iteration_replaces_init() -> None:
    schedule = SCHEDULE.validate_python({"type": "piecewise", "init": 1.0, "steps": {1: 0.5}})
    assert values(schedule, 3) == [0.5, 0.5, 0.5]


def test_piecewise_step_after_the_engine_is_never_reached() -> None:
    schedule = SCHEDULE.validate_python({"type": "piecewise", "init": 1.0, "steps": {10: 0.5}})
    assert values(schedule, 9) == [1.0] * 9


def test_piecewise_nests_schedules_evaluated_at_the_engine_iteration() -> None:
    """A nested schedule sees the engine's iteration, not the iterations since its step began."""
    schedule = SCHEDULE.validate_python(
        {
            "type": "piecewise",
            "init": {"type": "expr", "expr": "10 * i"},
            "steps": {4: {"type": "exponential", "init": 1.0, "rate": 0.5}, 6: 7.0},
        }
    )
    assert values(schedule, 7) == [10.0, 20.0, 30.0, 0.125, 0.0625, 7.0, 7.0]


def test_piecewise_keys_from_json_are_iterations() -> None:
    schedule = SCHEDULE.validate_python({"type": "piecewise", "init": 0.0, "steps": {"2": 1.0}})
    assert values(schedule, 3) == [0.0, 1.0, 1.0]


# --- expr ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "i", "niter", "expected"),
    [
        ("0.1 * 0.9**i", 2, 10, 0.081),
        ("i / niter", 3, 12, 0.25),
        ("-i + 2", 5, 5, -3.0),
        ("+i", 4, 5, 4.0),
        ("7 % 4 + 7 // 4", 1, 1, 4.0),
        ("pi", 1, 1, math.pi),
        ("e", 1, 1, math.e),
        ("exp(0) + log(e) + log10(100) + sqrt(16)", 1, 1, 8.0),
        ("cos(0) + sin(0) + tan(0) + tanh(0)", 1, 1, 1.0),
        ("min(i, 3) + max(i, 3) + abs(-i)", 5, 9, 13.0),
        ("1 if i < 3 else 2", 2, 9, 1.0),
        ("1 if i < 3 else 2", 3, 9, 2.0),
        ("1 if i <= 3 else 2", 3, 9, 1.0),
        ("(i > 2) + (i >= 2) + (i == 2) + (i != 2)", 2, 9, 2.0),
    ],
)
def test_expressions_evaluate_their_arithmetic(expr: str, i: int, niter: int, expected: float) -> None:
    assert evaluate_expression(expr, i, niter) == pytest.approx(expected, rel=1e-12)
    assert schedule_at(ExprSchedule(expr=expr), i, niter) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    "expr",
    [
        "__import__('os').system('true')",
        "open('schedule-side-effect', 'w')",
        "(1).__class__",
        "i.real",
        "[i][0]",
        "[x for x in (1, 2)][0]",
        "(lambda: 1)()",
        "'1'",
        "x + 1",
        "min(i, 2, key=abs)",
        "globals()",
        "1 < i < 3",
        "i and 1",
        "i := 3",
    ],
)
def test_expressions_refuse_anything_but_arithmetic(expr: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises((ValueError, SyntaxError)):
        evaluate_expression(expr, 1, 1)
    with pytest.raises(ValidationError, match="cannot evaluate"):
        ExprSchedule(expr=expr)
    assert not any(tmp_path.iterdir())  # nothing was executed


@pytest.mark.parametrize(
    ("expr", "words"),
    [
        ("1 / (i - 1)", "division by zero"),  # evaluated at i = 1, niter = 1
        ("10 ** 10 ** 10", "out of range"),  # a float overflow, not a huge integer computed
        ("0.1 *", "invalid syntax"),
        ("foo(1)", "unsupported element"),
    ],
)
def test_expression_errors_name_the_cause(expr: str, words: str) -> None:
    with pytest.raises(ValidationError) as info:
        ExprSchedule(expr=expr)
    message = str(info.value)
    assert f"cannot evaluate {expr!r}" in message and words in message
    assert "i, niter, pi, e" in message  # says what may be used


def test_expression_names_every_function_it_allows() -> None:
    with pytest.raises(ValidationError) as info:
        ExprSchedule(expr="floor(i)")
    for name in ("i", "niter", "pi", "e", "exp", "log", "log10", "sqrt", "cos", "sin", "tan", "tanh", "min", "abs"):
        assert f" {name}," in str(info.value) or f" {name}:" in str(info.value), name


@pytest.mark.parametrize(
    "expr",
    ["-" * 100_000 + "1", "-" * 999 + "1", "+".join(["i"] * 5000), "(" * 400 + "1" + ")" * 400, "i" * 10**6],
    ids=["100k-unary", "999-unary", "5000-terms", "400-parentheses", "1M-name"],
)
def test_huge_or_deep_expressions_are_refused_with_a_message(expr: str) -> None:
    """Refused as invalid plan values, not with the parser's MemoryError or RecursionError."""
    with pytest.raises(ValidationError, match="cannot evaluate") as info:
        ExprSchedule(expr=expr)
    assert len(str(info.value)) < 1000  # the message shows the start of the expression only


def test_long_flat_expressions_are_accepted() -> None:
    expr = "+".join(["i"] * 499)  # 997 characters
    assert schedule_at(ExprSchedule(expr=expr), 2, 3) == 998.0


# --- cosine --------------------------------------------------------------------------------------


def test_cosine_over_the_engine_starts_at_init_and_reaches_final_after_it() -> None:
    schedule = CosineSchedule(init=1.0, final=0.0)
    # 0.5 * (1 + cos(pi * (i - 1) / 4)) at i = 1..4
    assert values(schedule, 4) == pytest.approx([1.0, 0.8535533905932737, 0.5, 0.14644660940672627], rel=1e-12)
    assert schedule_at(schedule, 5, 4) == pytest.approx(0.0, abs=1e-15)


def test_cosine_with_steps_holds_final_after_them() -> None:
    schedule = CosineSchedule(init=0.2, final=0.02, steps=2)
    assert values(schedule, 6) == pytest.approx([0.2, 0.11, 0.02, 0.02, 0.02, 0.02], rel=1e-12)


def test_cosine_can_rise_and_start_from_zero() -> None:
    rising = CosineSchedule(init=0.0, final=1.0, steps=4)
    assert values(rising, 6) == pytest.approx([0.0, 0.14644660940672627, 0.5, 0.8535533905932737, 1.0, 1.0], abs=1e-15)
    negative = CosineSchedule(init=-1.0, final=1.0, steps=2)
    assert values(negative, 3) == pytest.approx([-1.0, 0.0, 1.0], abs=1e-15)


def test_cosine_between_equal_values_is_constant() -> None:
    assert values(CosineSchedule(init=0.3, final=0.3), 5) == pytest.approx([0.3] * 5, rel=1e-12)


def test_cosine_of_a_one_iteration_engine_is_init() -> None:
    assert schedule_at(CosineSchedule(init=0.7, final=0.1), 1, 1) == pytest.approx(0.7, rel=1e-12)


def test_cosine_steps_must_be_positive() -> None:
    with pytest.raises(ValidationError, match="greater than or equal to 1"):
        CosineSchedule(init=1.0, steps=0)


# --- exponential ---------------------------------------------------------------------------------


def test_exponential_multiplies_by_rate_each_iteration_from_init() -> None:
    assert values(ExponentialSchedule(init=0.8, rate=0.5), 4) == pytest.approx([0.8, 0.4, 0.2, 0.1], rel=1e-12)


def test_exponential_stops_at_its_floor() -> None:
    schedule = ExponentialSchedule(init=1.0, rate=0.1, floor=0.005)
    assert values(schedule, 5) == pytest.approx([1.0, 0.1, 0.01, 0.005, 0.005], rel=1e-12)


def test_exponential_floor_is_a_lower_bound_when_it_grows() -> None:
    schedule = ExponentialSchedule(init=1.0, rate=2.0, floor=3.0)
    assert values(schedule, 4) == pytest.approx([3.0, 3.0, 4.0, 8.0], rel=1e-12)


def test_exponential_default_floor_is_zero() -> None:
    assert values(ExponentialSchedule(init=-1.0, rate=0.5), 2) == [0.0, 0.0]
    assert values(ExponentialSchedule(init=2.0, rate=1.0), 3) == pytest.approx([2.0, 2.0, 2.0], rel=1e-12)


def test_exponential_over_many_iterations_stays_finite() -> None:
    assert schedule_at(ExponentialSchedule(init=1.0, rate=0.5), 2001, 2001) == pytest.approx(0.0, abs=1e-300)
    assert schedule_at(ExponentialSchedule(init=1.0, rate=0.5, floor=1e-3), 2001, 2001) == pytest.approx(1e-3)


@pytest.mark.parametrize("rate", [0.0, -0.5])
def test_exponential_rate_must_be_positive(rate: float) -> None:
    with pytest.raises(ValidationError, match="greater than 0"):
        ExponentialSchedule(init=1.0, rate=rate)


# --- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schedule", "words"),
    [
        ({"type": "bogus", "value": 1.0}, "does not match any of the expected tags"),
        ({"type": "constant", "value": 1.0, "extra": 2}, "Extra inputs are not permitted"),
        ({"type": "constant"}, "Field required"),
        ({"type": "piecewise", "init": 1.0, "steps": {0: 2.0}}, "greater than or equal to 1"),
        ({"type": "cosine", "init": float("nan")}, "finite number"),
        ({"type": "exponential", "init": 1.0}, "Field required"),
    ],
    ids=str,
)
def test_bad_schedules_are_refused(schedule: dict, words: str) -> None:
    with pytest.raises(ValidationError, match=words):
        SCHEDULE.validate_python(schedule)


@pytest.mark.parametrize(
    "schedule",
    [
        -0.1,
        {"type": "constant", "value": -1.0},
        {"type": "cosine", "init": 1.0, "final": -1.0},
        {"type": "exponential", "init": -1.0, "rate": 0.5},
        {"type": "piecewise", "init": 1.0, "steps": {3: -2.0}},
        {"type": "piecewise", "init": {"type": "cosine", "init": -1.0}, "steps": {3: 2.0}},
    ],
    ids=str,
)
def test_non_negative_schedules_refuse_negative_values(schedule: Any) -> None:
    with pytest.raises(ValidationError, match="greater than or equal to 0|expected values >= 0"):
        NON_NEGATIVE.validate_python(schedule)


def test_non_negative_message_names_the_value() -> None:
    with pytest.raises(ValidationError, match=r"expected values >= 0, but the schedule holds -2.0"):
        NON_NEGATIVE.validate_python({"type": "piecewise", "init": 1.0, "steps": {3: -2.0}})


def test_positive_schedules_refuse_zero_but_may_decay_to_it() -> None:
    with pytest.raises(ValidationError, match="greater than 0"):
        POSITIVE.validate_python(0.0)
    decay = POSITIVE.validate_python({"type": "cosine", "init": 0.1})
    assert schedule_at(decay, 1, 5) == pytest.approx(0.1, rel=1e-12)
    assert POSITIVE.validate_python(0.5) == 0.5


def _plan_problems(path: list[Any], value: Any) -> dict[str, str]:
    plan = copy.deepcopy(GRADIENT_PLAN)
    node = plan
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(PlanError) as info:
        validate_plan(plan, check_files=False)
    return dict(info.value.problems)


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ({"type": "expr", "expr": "__import__('os')"}, "cannot evaluate"),
        ({"type": "expr", "expr": "0.1 - 0.01 * i"}, "expected values >= 0"),  # negative from i = 11
        ({"type": "exponential", "init": 0.1, "rate": 0}, "greater than 0"),
        ({"type": "piecewise", "init": 0.1, "steps": {3: -0.1}}, "expected values >= 0"),
        ({"type": "linear", "init": 0.1}, "linear"),
    ],
    ids=str,
)
def test_plan_reports_bad_schedules_at_their_field(value: Any, words: str) -> None:
    engine = GRADIENT_PLAN["engines"][0]
    assert engine["niter"] > 11, "the expr case needs iterations past 10"
    solver = next(iter(engine["solvers"]))
    found = _plan_problems(["engines", 0, "solvers", solver, "learning_rate"], value)
    field = f"engines[0].solvers.{solver}.learning_rate"
    assert any(path.startswith(field) and words in message for path, message in found.items()), found


def test_plan_reports_bad_flags_at_their_field() -> None:
    found = _plan_problems(["engines", 0, "update_probe"], {"after": 2, "every": 0})
    assert any("update_probe" in path and "greater than or equal to 1" in m for path, m in found.items()), found


# --- precision -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "schedule",
    [
        CosineSchedule(init=0.05, final=0.005),
        CosineSchedule(init=0.3, final=0.7, steps=7),
        ExponentialSchedule(init=0.05, rate=0.93, floor=0.004),
        ExponentialSchedule(init=1e-3, rate=1.07),
    ],
    ids=str,
)
def test_schedules_follow_their_documented_formula_in_double_precision(schedule: Any) -> None:
    """The docstring formulas, evaluated in Python floats over a 30-iteration engine."""
    niter = 30
    for i in range(1, niter + 2):
        if isinstance(schedule, CosineSchedule):
            steps = schedule.steps or niter
            ratio = 0.5 * (1 + math.cos(math.pi * min(i - 1, steps) / steps))
            expected = schedule.final + (schedule.init - schedule.final) * ratio
        else:
            expected = max(schedule.init * schedule.rate ** (i - 1), schedule.floor)
        value = schedule_at(schedule, i, niter)
        assert type(value) is float
        assert value == pytest.approx(expected, rel=1e-13), i


def test_evaluating_a_schedule_leaves_the_process_precision_alone() -> None:
    import jax
    import jax.numpy as jnp

    before = jax.config.read("jax_enable_x64")
    schedule_at(CosineSchedule(init=1.0), 2, 5)
    schedule_at(ExponentialSchedule(init=1.0, rate=0.5), 2, 5)
    assert jax.config.read("jax_enable_x64") == before
    assert jnp.asarray(1.0).dtype == (jnp.float64 if before else jnp.float32)
