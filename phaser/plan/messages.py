"""Plan problems as ``(field path, message)`` pairs a newcomer can act on.

Each message says what was expected and what was written (cut to a few dozen characters), and
suggests the closest known name for a misspelt key, hook or engine type.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ValidationError

from phaser import hooks
from phaser.plan.read import shorten

_BRANCH = re.compile(r"^(<.*>|[a-z-]+\[.*\]|constrained-[a-z]+|float|int|bool|str|none|[A-Z][A-Za-z0-9]*)$")
_EXPECTED = {
    "float_type": "a number",
    "float_parsing": "a number",
    "finite_number": "a finite number",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "a string",
    "none_required": "null",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "list_type": "a list",
    "tuple_type": "a list",
    "union_tag_not_found": "a mapping with a `type`",
}
_FIELD_PATH = re.compile(r"[A-Za-z_]\w*(\[\d+\]|\.[A-Za-z_]\w*)*")
_TYPE_ERRORS = set(_EXPECTED) | {"literal_error"}
_BRANCH_NAMES = {
    "SimpleFlag": "a flag mapping {after, every, before}",
    "SliceList": "a slices mapping ({thicknesses}, {n, slice_thickness} or {n, total_thickness})",
    "SliceStep": "a slices mapping ({thicknesses}, {n, slice_thickness} or {n, total_thickness})",
    "SliceTotal": "a slices mapping ({thicknesses}, {n, slice_thickness} or {n, total_thickness})",
}


class PlanError(ValueError):
    """A plan that cannot run; ``problems`` lists ``(field path, message)`` pairs."""

    subject = "plan"  # what a problem without a field path is about

    def __init__(self, source: str, problems: list[tuple[str, str]]):
        self.source = source
        self.problems = problems
        lines = [f"{source}: {len(problems)} problem{'s' if len(problems) != 1 else ''}:"]
        lines += [f"  {path or f'({self.subject})'}: {message}" for path, message in problems]
        super().__init__("\n".join(lines))


def did_you_mean(word: Any, known: Iterable[str]) -> str:
    """``"; did you mean 'niter'?"`` when ``word`` is close to one of ``known``, else ``""``."""
    if not isinstance(word, str):
        return ""
    close = difflib.get_close_matches(word, list(known), n=2, cutoff=0.6)
    return f"; did you mean {' or '.join(map(repr, close))}?" if close else ""


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


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation can hold (through unions, lists, dicts and Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    if typing.get_origin(annotation) is not None or isinstance(annotation, types.UnionType):
        for arg in typing.get_args(annotation):
            found += _models_in(arg)
    return found


def _field_names(model: type[BaseModel]) -> list[str]:
    names = []
    for name, field in model.model_fields.items():
        names.append(field.alias or name)
        choices = getattr(field.validation_alias, "choices", None)
        names += [c for c in choices or () if isinstance(c, str)]
    return names


def known_keys(root: type[BaseModel], loc: Iterable[Any]) -> list[str]:
    """Field names allowed in the mapping at pydantic location ``loc`` below ``root``."""
    models = [root]
    for part in loc:
        if isinstance(part, int):
            continue
        fields = [m.model_fields[part] for m in models if part in m.model_fields]
        if fields:
            models = [m for f in fields for m in _models_in(f.annotation)]
            continue
        # a union branch: a hook tag ``<name>`` or an engine type picks the models that declare it
        tag = str(part).strip("<>")
        picked = [m for m in models if getattr(m.model_fields.get("type"), "default", None) == tag]
        models = picked or models
    return sorted({name for m in models for name in _field_names(m)})


def _expected_for(detail: dict[str, Any]) -> str:
    branch = detail["loc"][-1] if detail["loc"] else ""
    if isinstance(branch, str) and branch.startswith("tagged-union[") and "Schedule" in branch:
        return "a schedule mapping {type: constant|piecewise|expr|cosine|exponential, ...}"
    if branch in _BRANCH_NAMES:
        return _BRANCH_NAMES[branch]
    if detail["type"] == "literal_error":
        return f"one of {detail.get('ctx', {}).get('expected', '')}"
    return _EXPECTED.get(detail["type"], "something else")


def validation_problems(
    error: ValidationError, data: Any, root: type[BaseModel] | None = None
) -> list[tuple[str, str]]:
    """Each problem of a pydantic ``error`` as ``(field path, message)``, union noise dropped.

    Type mismatches of every branch of a union at one place become one message listing what
    each branch expected: ``expected a number or a schedule mapping {...}, got 'fast'``. Given the
    ``root`` model, unknown keys get a "did you mean" and a validator's ``key: problem`` goes to ``key``.
    """
    details = error.errors(include_url=False)
    paths = [format_location(d["loc"], data) for d in details]
    problems: list[tuple[str, str]] = []
    type_errors: dict[str, list[dict[str, Any]]] = {}
    for detail, path in zip(details, paths, strict=True):
        if detail["type"] in _TYPE_ERRORS:
            near = [d for d, p in zip(details, paths, strict=True) if p == path or p.startswith(path + ".")]
            # another branch reported a more specific problem at the same place: this one is noise
            if any(d["type"] not in _TYPE_ERRORS for d in near):
                continue
            if path not in type_errors:
                problems.append((path, ""))  # placeholder, keeps the order
            type_errors.setdefault(path, []).append(detail)
            continue
        entry = (path, _message(detail, root))
        # a model validator's "key: problem" belongs to that key
        key, sep, rest = entry[1].partition(": ")
        head = re.split(r"[.\[]", key, maxsplit=1)[0]
        is_path = _FIELD_PATH.fullmatch(key) and (
            head != key or (isinstance(detail["input"], dict) and key in detail["input"])
        )
        if root is not None and sep and is_path:
            entry = (f"{path}.{key}" if path else key, rest)
        if detail["type"].startswith("unknown_hook") or detail["type"] == "union_tag_invalid":
            entry = (f"{path}.type", entry[1])
        if entry not in problems:
            problems.append(entry)
    out = []
    for path, message in problems:
        if not message and path in type_errors:
            found = type_errors[path]
            expected = list(dict.fromkeys(_expected_for(d) for d in found))
            message = f"expected {' or '.join(expected)}, got {shorten(found[0]['input'])}"
        out.append((path, message))
    return out


def _message(detail: dict[str, Any], root: type[BaseModel] | None) -> str:
    kind, ctx = detail["type"], detail.get("ctx") or {}
    if kind.startswith("unknown_hook["):
        value = detail["input"]
        written = value.get("type") if isinstance(value, dict) else value
        names = hooks.known_names(kind.removeprefix("unknown_hook[").removesuffix("]"))
        return f"{shorten(written)} {detail['msg']}{did_you_mean(written, names)}"
    if kind == "union_tag_invalid":
        tags = [t.strip(" '") for t in str(ctx.get("expected_tags", "")).split(",")]
        return f"{shorten(ctx.get('tag'))} is not one of {ctx.get('expected_tags')}{did_you_mean(ctx.get('tag'), tags)}"
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        key = detail["loc"][-1] if detail["loc"] else ""
        known = known_keys(root, detail["loc"][:-1]) if root is not None else []
        return f"unknown key (value {shorten(detail['input'])}){did_you_mean(key, known)}"
    message = detail["msg"].removeprefix("Value error, ")
    if kind in ("value_error", "assertion_error", "hook_import", "hook_refused"):
        return message
    return f"{message} (got {shorten(detail['input'])})"
