"""Plan validation: every problem reported at once, each with its field path."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from phaser.plan import PlanError, dump_plan, load_plans, validate_plan

SHARED_PLANS = Path(__file__).resolve().parents[2].parent / "shared" / "phaserem-plans"


def good_plan(data_path: Path) -> dict:
    return {
        "name": "ok",
        "backend": "jax",
        "raw_data": {"type": "manual", "path": str(data_path), "diff_step": 2.0, "kv": 200.0},
        "init": {
            "probe": {"type": "focused", "conv_angle": 20.0, "defocus": 100.0},
            "scan": {"type": "raster", "shape": [4, 4], "step_size": 0.5},
        },
        "engines": [
            {
                "type": "gradient",
                "niter": 3,
                "noise_model": {"type": "poisson", "eps": 0.1},
                "solvers": {
                    "object": {"type": "adam", "learning_rate": 0.01},
                    "probe": {"type": "sgd", "learning_rate": {"type": "expr", "expr": "0.1 * 0.9**i"}},
                },
            }
        ],
    }


@pytest.fixture
def data_file(tmp_path: Path) -> Path:
    path = tmp_path / "data.npy"
    np.save(path, np.ones((4, 4, 16, 16), np.float32))
    return path


def problems_of(data: dict, tmp_path: Path) -> dict[str, str]:
    with pytest.raises(PlanError) as info:
        validate_plan(data, base=tmp_path)
    return dict(info.value.problems)


def test_good_plan_validates_and_fills_defaults(data_file: Path, tmp_path: Path) -> None:
    plan = validate_plan(good_plan(data_file), base=tmp_path)
    engine = plan.engines[0]
    assert engine.grouping == 64 and engine.bwlim_frac == pytest.approx(2 / 3)
    assert plan.raw_data.name == "manual" and plan.raw_data.props.diff_step == 2.0
    assert engine.solver_for("probe").name == "sgd"
    assert engine.solver_for("positions") is None


def test_broken_plan_reports_every_problem_with_its_path(data_file: Path, tmp_path: Path) -> None:
    data = good_plan(data_file)
    data["raw_data"]["path"] = str(tmp_path / "missing.npy")
    data["dtype"] = "float16"
    data["colour"] = "blue"
    engine = data["engines"][0]
    engine["niter"] = -1
    engine["noise_model"] = {"type": "poison"}
    engine["solvers"]["object"]["nesterv"] = True
    engine["regularizers"] = [{"type": "obj_tv"}]
    engine["update_tilt"] = {"after": "soon"}
    found = problems_of(data, tmp_path)
    assert found["raw_data.path"].startswith("file not found")
    assert "float16" in found["dtype"]
    assert "unknown key" in found["colour"]
    assert "greater than or equal to 0" in found["engines[0].niter"]
    assert found["engines[0].noise_model.type"].startswith("'poison' is not one of amplitude, anscombe, poisson")
    assert "nesterv" in found["engines[0].solvers.object"]
    assert "required" in found["engines[0].regularizers[0].weight"]
    assert "engines[0].update_tilt.after" in found


def test_unknown_engine_type_names_the_known_ones(data_file: Path, tmp_path: Path) -> None:
    data = good_plan(data_file)
    data["engines"][0]["type"] = "magic"
    found = problems_of(data, tmp_path)
    assert "'magic' is not one of" in found["engines[0].type"] and "gradient" in found["engines[0].type"]


def test_update_without_solver_is_rejected(data_file: Path, tmp_path: Path) -> None:
    data = good_plan(data_file)
    data["engines"][0]["update_positions"] = {"after": 2}
    found = problems_of(data, tmp_path)
    assert any("update_positions is on" in m for m in found.values())


def test_gradient_engine_on_numpy_is_rejected(data_file: Path, tmp_path: Path) -> None:
    data = good_plan(data_file)
    data["backend"] = "numpy"
    found = problems_of(data, tmp_path)
    assert any("jax backend" in m for m in found.values())


def test_solver_keys_are_variable_sets(data_file: Path, tmp_path: Path) -> None:
    data = good_plan(data_file)
    data["engines"][0]["solvers"] = {
        "object,probe": {"type": "adam", "learning_rate": 0.01},
        "probe": {"type": "adam", "learning_rate": 0.01},
    }
    assert any("more than one solver" in m for m in problems_of(data, tmp_path).values())
    data["engines"][0]["solvers"] = {"objects": {"type": "adam", "learning_rate": 0.01}}
    assert any("'objects' is not one of" in m for m in problems_of(data, tmp_path).values())


def test_unsafe_expression_is_rejected(data_file: Path, tmp_path: Path) -> None:
    data = good_plan(data_file)
    data["engines"][0]["solvers"]["probe"]["learning_rate"] = {"type": "expr", "expr": "__import__('os')"}
    assert any("cannot evaluate" in m for m in problems_of(data, tmp_path).values())


def test_resolved_plan_round_trips_through_yaml(data_file: Path, tmp_path: Path) -> None:
    plan = validate_plan(good_plan(data_file), base=tmp_path)
    text = dump_plan(plan)
    again = validate_plan(yaml.safe_load(text), base=tmp_path)
    assert again == plan
    assert dump_plan(again) == text


def test_multi_document_yaml_and_json(data_file: Path, tmp_path: Path) -> None:
    first, second = good_plan(data_file), good_plan(data_file)
    second["name"] = "second"
    (tmp_path / "two.yaml").write_text(yaml.safe_dump(first) + "---\n" + yaml.safe_dump(second))
    assert [p.name for p in load_plans(tmp_path / "two.yaml")] == ["ok", "second"]
    (tmp_path / "one.json").write_text(json.dumps(first))
    assert load_plans(tmp_path / "one.json")[0].name == "ok"
    second["engines"] = []
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(first) + "---\n" + yaml.safe_dump(second))
    with pytest.raises(PlanError) as info:
        load_plans(tmp_path / "bad.yaml")
    assert info.value.problems[0][0].startswith("document 2: engines")


def test_malformed_yaml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: [unclosed\n")
    with pytest.raises(PlanError, match="(?s)broken.yaml.*not valid YAML"):
        load_plans(path)


def test_custom_hooks_by_reference(data_file: Path, tmp_path: Path) -> None:
    data = good_plan(data_file)
    data["post_load"] = [
        {"type": "tests.plan.custom_hooks:scale_down", "factor": 0.25},
        {"type": "tests.plan.custom_hooks:untyped", "anything": 1},
    ]
    plan = validate_plan(data, base=tmp_path, allow_hooks=["tests.plan"])
    assert plan.post_load[0].props.factor == 0.25
    data["post_load"] = [{"type": "tests.plan.custom_hooks:scale_down", "factor": -1}]
    with pytest.raises(PlanError, match=r"post_load\[0\]\.factor"):
        validate_plan(data, base=tmp_path, allow_hooks=["tests.plan"])
    data["post_load"] = [{"type": "tests.plan.nowhere:func"}]
    with pytest.raises(PlanError, match="cannot import"):
        validate_plan(data, base=tmp_path, allow_hooks=["tests.plan"])


def test_relative_paths_are_relative_to_the_plan_file(data_file: Path, tmp_path: Path) -> None:
    data = good_plan(data_file)
    data["raw_data"]["path"] = data_file.name
    (tmp_path / "sub").mkdir()
    shutil.copy(data_file, tmp_path / "sub" / data_file.name)
    (tmp_path / "sub" / "plan.yaml").write_text(yaml.safe_dump(data))
    plan = load_plans(tmp_path / "sub" / "plan.yaml")[0]
    assert plan.raw_data.props.path == tmp_path / "sub" / data_file.name


@pytest.mark.skipif(not SHARED_PLANS.exists(), reason="../shared/phaserem-plans is not beside the checkout")
@pytest.mark.parametrize("name", ["epie_1slice_numpy", "grad_1slice_jax", "grad_4slice_jax", "lsqml_4slice_jax"])
def test_original_package_plans_parse(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The plans written for the original package validate unchanged, with their meaning kept."""
    monkeypatch.setenv("DATA", str(tmp_path))
    data = yaml.safe_load((SHARED_PLANS / f"{name}.yaml").read_text())
    plan = validate_plan(data, base=tmp_path, check_files=False)
    engine = plan.engines[0]
    assert engine.niter == data["engines"][0]["niter"] and engine.grouping == data["engines"][0]["grouping"]
    if engine.type == "gradient":
        assert engine.solver_for("object").props.static() == {"nesterov": True}
    else:
        assert engine.solver.name == data["engines"][0]["solver"]["type"]
