"""Reading plans from YAML or JSON, and reporting every problem at once with its field path."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from phaser.hooks import Hook, allowed_hooks
from phaser.plan.messages import PlanError, format_location, validation_problems
from phaser.plan.read import (
    MAX_FILE_BYTES,
    ReadError,
    check_data_limits,
    decode_plan_bytes,
    read_json_documents,
    read_yaml_documents,
)
from phaser.plan.schema import ReconsPlan


def _expand_variables(value: Any) -> Any:
    if isinstance(value, str):
        return os.path.expandvars(value)
    if isinstance(value, dict):
        return {k: _expand_variables(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_variables(v) for v in value]
    return value


def _missing_files(data: dict[str, Any]) -> list[tuple[str, str]]:
    """Files the plan names that do not exist (checked on the raw mapping, beside schema errors)."""
    problems = []
    raw, init = data.get("raw_data"), data.get("init")
    checks = [
        ("raw_data.path", raw.get("path") if isinstance(raw, dict) else None),
        ("init.state", init.get("state") if isinstance(init, dict) else None),
    ]
    for field, path in checks:
        if not isinstance(path, str) or not path:
            continue
        resolved = Path(path)
        if "$" in str(path):
            problems.append((field, f"{str(path)!r} holds an undefined environment variable"))
        elif not resolved.exists():
            problems.append((field, f"file not found: {resolved}"))
    return problems


def _resolve_paths(data: dict[str, Any], base: Path) -> dict[str, Any]:
    """Make relative data paths (raw data, starting state, tilt file) relative to the plan file's folder."""

    def fix(value: Any) -> Any:
        # absolute, so the resolved plan written beside the outputs finds the same files
        if isinstance(value, str) and value and "$" not in value:
            return os.path.abspath(base / os.path.expanduser(value))
        return value

    out = dict(data)
    if isinstance(out.get("raw_data"), dict) and "path" in out["raw_data"]:
        out["raw_data"] = {**out["raw_data"], "path": fix(out["raw_data"]["path"])}
    if isinstance(out.get("init"), dict) and out["init"].get("state"):
        out["init"] = {**out["init"], "state": fix(out["init"]["state"])}
    tilt = out["init"].get("tilt") if isinstance(out.get("init"), dict) else None
    if isinstance(tilt, dict) and tilt.get("path"):
        out["init"] = {**out["init"], "tilt": {**tilt, "path": fix(tilt["path"])}}
    return out


def _non_finite_numbers(value: Any, path: str = "") -> list[tuple[str, str]]:
    """Every NaN or infinite number in ``value``: a plan holds finite numbers only."""
    if isinstance(value, float) and not math.isfinite(value):
        return [(path, f"expected a finite number, got {value}")]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _non_finite_numbers(v, f"{path}.{k}" if path else str(k))]
    if isinstance(value, (list, tuple)):
        return [p for i, v in enumerate(value) for p in _non_finite_numbers(v, f"{path}[{i}]")]
    return []


def validate_plan(
    data: Any,
    source: str = "<plan>",
    base: Path | None = None,
    check_files: bool = True,
    allow_hooks: Iterable[str] = (),
) -> ReconsPlan:
    """Validate one plan mapping; raises :class:`PlanError` listing every problem.

    ``allow_hooks`` names the modules whose ``module:function`` hooks may be imported, beside the
    built-in hooks, those installed packages declare (entry points ``phaser.hooks``) and those
    named in ``$PHASER_ALLOW_HOOKS`` (see :mod:`phaser.hooks`).
    """
    if not isinstance(data, dict):
        raise PlanError(source, [("", f"expected a mapping of plan fields, got {type(data).__name__}")])
    try:
        check_data_limits(data)
    except ReadError as exc:
        raise PlanError(source, [("", str(exc))]) from None
    base = base or Path.cwd()
    data = _resolve_paths(_expand_variables(data), base)
    problems = _missing_files(data) if check_files else []
    problems += _non_finite_numbers(data)
    try:
        with allowed_hooks(allow_hooks):
            plan = ReconsPlan.model_validate(data)
    except ValidationError as exc:
        found = validation_problems(exc, data, ReconsPlan)
        raise PlanError(source, problems + [p for p in found if p not in problems]) from None
    problems += [p for p in _non_finite_numbers(plan.model_dump(mode="python")) if p not in problems]
    if problems:
        raise PlanError(source, problems)
    return plan


def read_documents(path: Path) -> list[Any]:
    """The plan documents in ``path``: JSON (one plan or a list) or YAML (``---`` separated).

    Reading is bounded (see :mod:`phaser.plan.read`): duplicate keys, alias bombs, deep nesting,
    huge strings and non-text files are refused with a message naming the file and the place.
    """
    if not path.is_file():
        raise PlanError(str(path), [("", "file not found" if not path.exists() else "not a file")])
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise ReadError(f"{path.stat().st_size} bytes is larger than a plan can be ({MAX_FILE_BYTES} bytes)")
        text = decode_plan_bytes(path.read_bytes())
        if path.suffix.lower() == ".json":
            return read_json_documents(text)
        return read_yaml_documents(text)
    except ReadError as exc:
        raise PlanError(str(path), [("", str(exc))]) from None


def load_plans(path: str | Path, check_files: bool = True, allow_hooks: Iterable[str] = ()) -> list[ReconsPlan]:
    """Every plan in ``path``, validated; problems of all documents are reported together.

    ``allow_hooks``: modules whose custom hooks may be imported (see :func:`validate_plan`).
    """
    path = Path(path)
    documents = read_documents(path)
    if not documents:
        raise PlanError(str(path), [("", "the file holds no plan")])
    plans, problems = [], []
    for i, doc in enumerate(documents):
        source = str(path) if len(documents) == 1 else f"{path} (document {i + 1})"
        try:
            plans.append(validate_plan(doc, source, base=path.parent, check_files=check_files, allow_hooks=allow_hooks))
        except PlanError as exc:
            prefix = "" if len(documents) == 1 else f"document {i + 1}: "
            problems += [(f"{prefix}{p}" if p else prefix.rstrip(": "), m) for p, m in exc.problems]
    if problems:
        raise PlanError(str(path), problems)
    return plans


def plan_to_data(plan: ReconsPlan) -> dict[str, Any]:
    """The fully resolved plan (defaults filled in) as plain JSON-compatible data."""
    return plan.model_dump(mode="json")


def dump_plan(plan: ReconsPlan) -> str:
    """The resolved plan as YAML that :func:`validate_plan` reads back to an equal plan."""
    return yaml.safe_dump(plan_to_data(plan), sort_keys=False)


__all__ = ["PlanError", "load_plans", "validate_plan", "dump_plan", "plan_to_data", "format_location", "Hook"]
