"""The hook trust policy: a plan names code, it never runs code the user did not allow."""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from phaser import hooks
from phaser.cli import main
from phaser.plan import PlanError, validate_plan

EXAMPLE = yaml.safe_load((Path(__file__).resolve().parents[2] / "plans/examples/gradient_1slice.yaml").read_text())


def with_post_load(ref: str, **params: Any) -> dict[str, Any]:
    plan = copy.deepcopy(EXAMPLE)
    plan["post_load"] = [{"type": ref, **params}]
    return plan


@pytest.fixture
def marker_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Path]:
    """A module that writes a marker file when imported."""
    marker = tmp_path / "imported.marker"
    name = f"marker_hooks_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('imported')\n"
        "def hook(raw, rng, props):\n    return raw\n"
        "def wrong(raw):\n    return raw\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv(hooks.ALLOW_ENV, raising=False)
    yield name, marker
    sys.modules.pop(name, None)


def test_validation_does_not_import_a_module_not_allowed(marker_module: tuple[str, Path]) -> None:
    name, marker = marker_module
    with pytest.raises(PlanError) as info:
        validate_plan(with_post_load(f"{name}:hook"), check_files=False)
    assert not marker.exists()
    assert name not in sys.modules
    message = dict(info.value.problems)["post_load[0]"]
    assert "not allowed" in message and f"--allow-hooks {name}" in message


def test_cli_validate_refuses_and_allows_with_the_flag(marker_module: tuple[str, Path], tmp_path: Path) -> None:
    name, marker = marker_module
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump(with_post_load(f"{name}:hook")))
    assert main(["validate", "--no-files", str(plan)]) == 2
    assert not marker.exists()
    assert main(["validate", "--no-files", "--allow-hooks", name, "--", str(plan)]) == 0
    assert marker.exists()


def test_allowed_by_argument_and_by_environment(
    marker_module: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    name, marker = marker_module
    plan = validate_plan(with_post_load(f"{name}:hook"), check_files=False, allow_hooks=[name])
    assert plan.post_load[0].name == f"{name}:hook" and marker.exists()
    monkeypatch.setenv(hooks.ALLOW_ENV, f"other, {name}")
    validate_plan(with_post_load(f"{name}:hook"), check_files=False)


def test_allowing_a_package_allows_its_submodules_only() -> None:
    assert hooks.refusal("tests.plan.custom_hooks:untyped") is not None
    with hooks.allowed_hooks(["tests"]):
        assert hooks.refusal("tests.plan.custom_hooks:untyped") is None
        assert hooks.refusal("testsuite.x:f") is not None
    assert hooks.refusal("tests.plan.custom_hooks:untyped") is not None


@pytest.mark.parametrize(
    "ref", ["os:system", "subprocess:getoutput", "builtins:eval", "shutil:rmtree", "importlib:import_module"]
)
def test_standard_library_is_never_a_hook(ref: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(hooks.ALLOW_ENV, ref.partition(":")[0])
    for kind_plan in (with_post_load(ref), {**copy.deepcopy(EXAMPLE), "raw_data": {"type": ref, "path": "x"}}):
        with pytest.raises(PlanError, match="standard-library module"):
            validate_plan(kind_plan, check_files=False, allow_hooks=[ref.partition(":")[0]])


def test_wrong_signature_is_refused_with_the_expected_one(marker_module: tuple[str, Path]) -> None:
    name, _ = marker_module
    with pytest.raises(PlanError) as info:
        validate_plan(with_post_load(f"{name}:wrong"), check_files=False, allow_hooks=[name])
    assert "function(raw, rng, props)" in dict(info.value.problems)["post_load[0]"]


def test_entry_point_hooks_are_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hooks, "_declared_refs", lambda: {"tests.plan.custom_hooks:scale_down"})
    plan = validate_plan(with_post_load("tests.plan.custom_hooks:scale_down", factor=0.5), check_files=False)
    assert plan.post_load[0].props.factor == 0.5
    with pytest.raises(PlanError, match="not allowed"):
        validate_plan(with_post_load("tests.plan.custom_hooks:untyped"), check_files=False)


def test_built_in_hooks_need_no_opt_in(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(hooks.ALLOW_ENV, raising=False)
    plan = validate_plan(with_post_load("phaser.io.post_load:scale_patterns", scale=2.0), check_files=False)
    assert plan.post_load[0].name == "phaser.io.post_load:scale_patterns"
