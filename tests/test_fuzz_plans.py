"""Fuzzing the example plans: any mutation is either valid or refused cleanly, naming a field or file.

Mutations of the data (keys renamed or dropped, values replaced by other types, odd numbers) and of
the YAML text (characters inserted, lines duplicated or cut, anchors and aliases). Bounded: 200
examples in all, each under a deadline, so a hang or a traceback fails the test.
"""

from __future__ import annotations

import copy
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from phaser.plan import PlanError, load_plans, validate_plan

EXAMPLES = Path(__file__).resolve().parent.parent / "plans" / "examples"
PLANS = {path.name: path.read_text() for path in sorted(EXAMPLES.glob("*.yaml"))}
FUZZ = settings(
    max_examples=100,
    deadline=timedelta(seconds=3),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    derandomize=True,
)

values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(["os:system", "subprocess:getoutput", "no.such.module:f", "fast", "1e-3", ".inf", "poison"]),
    st.lists(st.integers(-3, 3), max_size=4),
    st.dictionaries(st.sampled_from(["type", "after", "every", "value", "init"]), st.integers(-2, 5), max_size=3),
)


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += _paths(value, (*prefix, i))
    return out


def _parent(data: Any, path: tuple) -> Any:
    for part in path[:-1]:
        data = data[part]
    return data


@st.composite
def mutated_plans(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    name = draw(st.sampled_from(sorted(PLANS)))
    documents = [d for d in yaml.safe_load_all(PLANS[name]) if d is not None]
    data = copy.deepcopy(documents[0])
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(data)))
        parent, key = _parent(data, path), path[-1]
        action = draw(st.sampled_from(["replace", "delete", "rename", "add"]))
        if action == "replace" or isinstance(parent, list):
            parent[key] = draw(values)
        elif action == "delete":
            del parent[key]
        elif action == "rename":
            parent[f"{key}{draw(st.sampled_from(['s', '_', 'x']))}"] = parent.pop(key)
        else:
            parent[draw(st.text(min_size=1, max_size=8))] = draw(values)
        if not _paths(data):
            break
    return name, data


@FUZZ
@given(mutated_plans())
def test_mutated_plan_data_is_valid_or_refused_naming_fields(case: tuple[str, dict[str, Any]]) -> None:
    name, data = case
    try:
        validate_plan(data, name, base=EXAMPLES, check_files=False)
    except PlanError as exc:
        assert exc.problems, exc
        for path, message in exc.problems:
            assert path and message, exc.problems


@st.composite
def mutated_texts(draw: st.DrawFn) -> str:
    lines = PLANS[draw(st.sampled_from(sorted(PLANS)))].splitlines()
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(lines) - 1))
        action = draw(st.sampled_from(["insert", "duplicate", "delete", "cut", "anchor", "indent"]))
        if action == "insert":
            at = draw(st.integers(0, len(lines[i])))
            lines[i] = (
                lines[i][:at]
                + draw(st.sampled_from(["{", "}", "[", "]", ":", "- ", "&a ", "*a", "'", "\t", "!!python/object "]))
                + lines[i][at:]
            )
        elif action == "duplicate":
            lines.insert(i, lines[i])
        elif action == "delete":
            del lines[i]
        elif action == "cut":
            lines = lines[: i + 1]
        elif action == "anchor":
            lines.append("bomb: &b [" + ", ".join(["*b"] if draw(st.booleans()) else ["1"] * 3) + "]")
        else:
            lines[i] = " " * draw(st.integers(1, 4)) + lines[i]
        if not lines:
            lines = ["{}"]
    return "\n".join(lines) + "\n"


@FUZZ
@given(mutated_texts())
def test_mutated_plan_text_is_valid_or_refused_naming_a_field_or_the_file(tmp_path_factory, text: str) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "plan.yaml"
    path.write_text(text)
    try:
        load_plans(path, check_files=False)
    except PlanError as exc:
        assert str(path) in str(exc) and exc.problems
        for field, message in exc.problems:
            assert message and (field or "line" in message or "plan" in message or "levels" in message), exc
