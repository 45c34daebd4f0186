"""Reading plans from YAML or JSON, and reporting every problem at once with its field path."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from phaser.hooks import Hook
from phaser.plan.schema import ReconsPlan

_BRANCH = re.compile(r"^(<.*>|[a-z-]+\[.*\]|float|int|bool|str|none|[A-Z][A-Za-z0-9]*)$")
_TYPE_ERRORS = {
    "float_type",
    "int_type",
    "bool_type",
    "string_type",
    "none_required",
    "bool_parsing",
    "float_parsing",
    "int_parsing",
    "model_type",
    "dict_type",
    "list_type",
    "literal_error",
}


class PlanError(ValueError):
    """A plan that cannot run; ``problems`` lists ``(field path, message)`` pairs."""

    def __init__(self, source: str, problems: list[tuple[str, str]]):
        self.source = source
        self.problems = problems
        lines = [f"{source}: {len(problems)} problem{'s' if len(problems) != 1 else ''}:"]
        lines += [f"  {path or '(plan)'}: {message}" for path, message in problems]
        super().__init__("\n".join(lines))


def format_location(loc: Iterable[Any], data: Any = None) -> str:
    """``('engines', 1, 'noise_model', 'type')`` -> ``engines[1].noise_model.type``.

    Union branches that pydantic puts in the location (``gradient``, ``float``, ...) are dropped:
    a part is a branch when the input at that point has no such key, or it names a type.
    """
    out, node = "", data
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            node = node[part] if isinstance(node, list) and part < len(node) else None
            continue
        is_key = isinstance(node, dict) and part in node
        if not is_key and (_BRANCH.match(str(part)) or (isinstance(node, dict) and node.get("type") == part)):
            continue
        out += f".{part}" if out else str(part)
        node = node.get(part) if isinstance(node, dict) else None
    return out


def validation_problems(error: ValidationError, data: Any) -> list[tuple[str, str]]:
    """Each problem of a pydantic ``error`` as ``(field path, message)``, union noise dropped."""
    problems: list[tuple[str, str]] = []
    details = error.errors(include_url=False)
    paths = [format_location(d["loc"], data) for d in details]
    for detail, path in zip(details, paths, strict=True):
        # in a union (number or schedule mapping, ...), a type mismatch of one branch is noise when
        # another branch reported a more specific problem at the same place
        if detail["type"] in _TYPE_ERRORS and sum(p == path or p.startswith(path + ".") for p in paths) > 1:
            if any(
                d["type"] not in _TYPE_ERRORS
                for d, p in zip(details, paths, strict=True)
                if p == path or p.startswith(path + ".")
            ):
                continue
        message = detail["msg"].removeprefix("Value error, ")
        if detail["type"] == "unknown_hook":
            written = detail["input"].get("type") if isinstance(detail["input"], dict) else detail["input"]
            path, message = f"{path}.type", f"{written!r} {message}"
        elif detail["type"] == "union_tag_invalid":
            ctx = detail.get("ctx", {})
            path, message = f"{path}.type", f"{ctx.get('tag')!r} is not one of {ctx.get('expected_tags')}"
        elif detail["type"] == "missing":
            message = "required field is missing"
        elif detail["type"] == "extra_forbidden":
            message = f"unknown key (value {detail['input']!r})"
        elif detail["type"] not in ("value_error", "assertion_error"):
            message = f"{message} (got {detail['input']!r})"
        if (path, message) not in problems:
            problems.append((path, message))
    return problems


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
    """Make relative data paths relative to the plan file's folder, not the working directory."""

    def fix(value: Any) -> Any:
        if isinstance(value, str) and value and not os.path.isabs(value) and "$" not in value:
            return str(base / value)
        return value

    out = dict(data)
    if isinstance(out.get("raw_data"), dict) and "path" in out["raw_data"]:
        out["raw_data"] = {**out["raw_data"], "path": fix(out["raw_data"]["path"])}
    if isinstance(out.get("init"), dict) and out["init"].get("state"):
        out["init"] = {**out["init"], "state": fix(out["init"]["state"])}
    return out


def validate_plan(data: Any, source: str = "<plan>", base: Path | None = None, check_files: bool = True) -> ReconsPlan:
    """Validate one plan mapping; raises :class:`PlanError` listing every problem."""
    if not isinstance(data, dict):
        raise PlanError(source, [("", f"expected a mapping of plan fields, got {type(data).__name__}")])
    base = base or Path.cwd()
    data = _resolve_paths(_expand_variables(data), base)
    problems = _missing_files(data) if check_files else []
    try:
        plan = ReconsPlan.model_validate(data)
    except ValidationError as exc:
        raise PlanError(source, problems + validation_problems(exc, data)) from None
    if problems:
        raise PlanError(source, problems)
    return plan


def read_documents(path: Path) -> list[Any]:
    """The plan documents in ``path``: JSON (one plan or a list) or YAML (``---`` separated)."""
    if not path.exists():
        raise PlanError(str(path), [("", "file not found")])
    text = path.read_text()
    try:
        if path.suffix.lower() == ".json":
            loaded = json.loads(text)
            return loaded if isinstance(loaded, list) else [loaded]
        return [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise PlanError(
            str(path), [("", f"not valid {'JSON' if path.suffix.lower() == '.json' else 'YAML'}: {exc}")]
        ) from None


def load_plans(path: str | Path, check_files: bool = True) -> list[ReconsPlan]:
    """Every plan in ``path``, validated; problems of all documents are reported together."""
    path = Path(path)
    documents = read_documents(path)
    if not documents:
        raise PlanError(str(path), [("", "the file holds no plan")])
    plans, problems = [], []
    for i, doc in enumerate(documents):
        source = str(path) if len(documents) == 1 else f"{path} (document {i + 1})"
        try:
            plans.append(validate_plan(doc, source, base=path.parent, check_files=check_files))
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


__all__ = ["PlanError", "load_plans", "validate_plan", "dump_plan", "plan_to_data", "Hook"]
