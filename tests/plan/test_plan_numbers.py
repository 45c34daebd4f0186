"""Range and type rules on plan numbers, fields that would do nothing, and messages that help."""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from phaser.plan import PlanError, validate_plan

EXAMPLES = Path(__file__).resolve().parents[2] / "plans" / "examples"
GRADIENT = yaml.safe_load((EXAMPLES / "gradient_1slice.yaml").read_text())
CONVENTIONAL = yaml.safe_load((EXAMPLES / "lsqml.yaml").read_text())


def problems(plan: dict[str, Any], path: str, value: Any) -> dict[str, str]:
    """The problems of ``plan`` with the value at dotted ``path`` replaced by ``value``."""
    data = copy.deepcopy(plan)
    node: Any = data
    parts = path.replace("[", ".").replace("]", "").split(".")
    for part in parts[:-1]:
        node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
    node[parts[-1]] = value
    with pytest.raises(PlanError) as info:
        validate_plan(data, check_files=False)
    return dict(info.value.problems)


NUMBER_CASES = [
    # (plan, field, bad value, words the message must hold)
    (GRADIENT, "engines[0].niter", True, "expected an integer, got true"),
    (GRADIENT, "engines[0].niter", -1, "greater than or equal to 0"),
    (GRADIENT, "engines[0].niter", 2.5, "integer"),
    (GRADIENT, "engines[0].grouping", 0, "greater than or equal to 1"),
    (GRADIENT, "engines[0].probe_modes", False, "expected an integer, got false"),
    (GRADIENT, "engines[0].sim_shape", [0, 32], "greater than 0"),
    (GRADIENT, "engines[0].sim_shape", [True, 32], "expected an integer, got true"),
    (GRADIENT, "engines[0].base_mode_power", float("nan"), "finite"),
    (GRADIENT, "engines[0].solvers.object.learning_rate", -0.1, "greater than or equal to 0"),
    (GRADIENT, "engines[0].solvers.object.learning_rate", float("inf"), "finite"),
    (GRADIENT, "engines[0].solvers.object.learning_rate", "nan", "finite"),
    (GRADIENT, "engines[0].solvers.object.learning_rate", True, "expected a number or a schedule mapping"),
    (GRADIENT, "engines[0].solvers.object.learning_rate", "fast", "expected a number or a schedule mapping"),
    (GRADIENT, "engines[0].solvers.object.learning_rate", {"type": "constant", "value": -1}, ">= 0"),
    (GRADIENT, "engines[0].solvers.object.learning_rate", {"type": "cosine", "init": -1.0}, ">= 0"),
    (GRADIENT, "engines[0].solvers.object.b1", -0.5, "expected a finite number >= 0"),
    (GRADIENT, "engines[0].update_probe.after", True, "expected an integer, got true"),
    (GRADIENT, "engines[0].update_probe.every", 0, "greater than or equal to 1"),
    (GRADIENT, "engines[0].noise_model.eps", float("-inf"), "finite"),
    (GRADIENT, "init.probe.defocus", float("nan"), "finite"),
    (GRADIENT, "init.probe.conv_angle", 0, "greater than 0"),
    (GRADIENT, "init.scan.shape", [0, 16], "greater than 0"),
    (GRADIENT, "init.scan.shape", [-4, 16], "greater than 0"),
    (GRADIENT, "init.scan.step_size", 0, "greater than 0"),
    (GRADIENT, "init.scan.step_size", -0.5, "greater than 0"),
    (GRADIENT, "init.scan.rotation", float("inf"), "finite"),
    (GRADIENT, "raw_data.kv", -200, "greater than 0"),
    (GRADIENT, "raw_data.scan_shape", [True, 4], "expected an integer, got true"),
    (GRADIENT, "seed", -1, "greater than or equal to 0"),
    (GRADIENT, "wavelength", 0, "greater than 0"),
    (CONVENTIONAL, "engines[0].solver.beta_object", -1.0, "greater than or equal to 0"),
    (CONVENTIONAL, "engines[0].solver.beta_probe", float("nan"), "finite"),
    (CONVENTIONAL, "engines[0].solver.gamma", -1e-4, "greater than or equal to 0"),
]


@pytest.mark.parametrize(("plan", "field", "value", "words"), NUMBER_CASES)
def test_bad_numbers_are_refused_at_their_field(plan: dict, field: str, value: Any, words: str) -> None:
    found = problems(plan, field, value)
    at_field = [m for p, m in found.items() if p == field or p.startswith((field + ".", field + "["))]
    assert at_field, found
    assert any(words in m for m in at_field), found


def test_position_step_size_must_be_positive() -> None:
    plan = copy.deepcopy(CONVENTIONAL)
    plan["engines"][0]["position_solver"] = {"type": "steepest_descent", "step_size": 0}
    plan["engines"][0]["update_positions"] = True
    with pytest.raises(PlanError, match=r"position_solver\.step_size: .*greater than 0"):
        validate_plan(plan, check_files=False)


@pytest.mark.parametrize("niter", [10**12, 10**18])
def test_validation_does_not_scale_with_niter(niter: int) -> None:
    plan = copy.deepcopy(GRADIENT)
    plan["engines"][0].update(niter=niter, update_positions={"after": niter - 2})
    started = time.perf_counter()
    with pytest.raises(PlanError, match="update_positions is on"):
        validate_plan(plan, check_files=False)
    plan["engines"][0]["update_positions"] = {"after": niter}  # never on: valid
    validate_plan(plan, check_files=False)
    assert time.perf_counter() - started < 30  # a bound for work proportional to niter, not a speed test


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("save_options.img_dtype", "16bit", "written as figures"),
        ("save_options.unwrap_phase", True, "not implemented"),
        ("buffer_n_groups", 4, "all patterns stay on the device"),
        ("jit_unroll_slices", True, "not supported"),
        ("check_every_group", True, "not supported"),
        ("send_every_group", True, "not supported"),
        ("calc_error_fraction", 0.5, "all positions"),
    ],
)
def test_engine_fields_without_effect_are_refused(field: str, value: Any, words: str) -> None:
    found = problems(GRADIENT, f"engines[0].{field}", value)
    assert words in found[f"engines[0].{field}"] and "remove" in found[f"engines[0].{field}"]


def test_no_effect_values_written_as_defaults_still_validate() -> None:
    plan = copy.deepcopy(GRADIENT)
    plan["engines"][0].update(check_every_group=False, buffer_n_groups=None, send_every_group=False)
    validate_plan(plan, check_files=False)


def test_plan_fields_without_effect_are_refused() -> None:
    assert "JAX_PLATFORMS" in problems(GRADIENT, "device", "cuda:1")["device"]
    assert "not supported" in problems(GRADIENT, "post_init", [{"type": "x"}])["post_init"]


def test_early_termination_only_on_the_first_engine() -> None:
    plan = copy.deepcopy(GRADIENT)
    plan["engines"].append({**copy.deepcopy(plan["engines"][0]), "early_termination": 5})
    with pytest.raises(PlanError, match=r"engines\[1\]\.early_termination: only the first engine"):
        validate_plan(plan, check_files=False)
    plan["engines"][1]["early_termination"] = None
    plan["engines"][0]["early_termination"] = 5
    validate_plan(plan, check_files=False)


@pytest.mark.parametrize(
    ("field", "value", "suggestion"),
    [
        ("engines[0].niters", 5, "did you mean 'niter'?"),
        ("engines[0].updat_probe", True, "did you mean 'update_probe'"),
        ("init.probe.conv_angel", 20.0, "did you mean 'conv_angle'?"),
        ("raw_data.diff_stp", 1.0, "did you mean 'diff_step'?"),
        ("init.scann", {}, "did you mean 'scan'?"),
        ("nmae", "x", "did you mean 'name'?"),
    ],
)
def test_unknown_keys_suggest_the_closest(field: str, value: Any, suggestion: str) -> None:
    found = problems(GRADIENT, field, value)
    assert "unknown key" in found[field] and suggestion in found[field]


@pytest.mark.parametrize(
    ("field", "value", "suggestion"),
    [
        ("engines[0].noise_model.type", "poison", "did you mean 'poisson'?"),
        ("engines[0].type", "gradiant", "did you mean 'gradient'?"),
        ("raw_data.type", "manuel", "did you mean 'manual'?"),
        ("init.probe.type", "focussed", "did you mean 'focused'?"),
        ("engines[0].solvers.object.type", "addam", "did you mean 'adam'"),
    ],
)
def test_unknown_names_suggest_the_closest(field: str, value: Any, suggestion: str) -> None:
    assert suggestion in problems(GRADIENT, field, value)[field]


def test_type_messages_say_what_was_expected() -> None:
    found = problems(GRADIENT, "engines[0].update_probe", "yes please")
    assert found["engines[0].update_probe"] == (
        "expected true or false or a flag mapping {after, every, before}, got 'yes please'"
    )
    found = problems(GRADIENT, "engines[0].solvers.object.learning_rate", "fast")
    assert found["engines[0].solvers.object.learning_rate"].startswith(
        "expected a number or a schedule mapping {type: constant|"
    ) and found["engines[0].solvers.object.learning_rate"].endswith("got 'fast'")
