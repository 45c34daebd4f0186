"""Reading plan text (YAML or JSON) as plain data, safely: plans arrive from samplers and networks.

Every limit here exists so that reading untrusted text fails fast with a message instead of
hanging or ending in a traceback: file size, string length, nesting depth and the number of values
after alias expansion ("billion laughs"). A key written twice in one mapping is an error, never
silently resolved to the last value. Problems carry the line and column they were found at.
"""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

MAX_FILE_BYTES = 4 * 2**20
"""Largest plan file read (bytes): plans are a few kB; data belongs in data files."""
MAX_STRING_CHARS = 10_000
"""Longest string value or key in a plan (characters)."""
MAX_DEPTH = 50
"""Deepest nesting of mappings and lists in a plan."""
MAX_VALUES = 100_000
"""Most values (scalars, mappings and lists) in one document after alias expansion."""
ECHO_CHARS = 80
"""Longest piece of the input quoted back in a message (characters)."""

_MERGE_TAG = "tag:yaml.org,2002:merge"
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


class ReadError(ValueError):
    """Plan text that cannot be read as data; the message says where (line, column) when known."""


def shorten(value: Any, limit: int = ECHO_CHARS) -> str:
    """``repr(value)``, cut to ``limit`` characters with the full length stated when longer."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[: limit - 3]}... ({len(text)} characters)"


def _where(mark: yaml.Mark | None) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "unknown position"


class PlanYamlLoader(yaml.SafeLoader):
    """A ``yaml.SafeLoader`` that refuses duplicate keys and enforces the size limits of this module.

    Subclass it to add tags; ``yaml.load_all(text, Loader=PlanYamlLoader)`` reads plan documents.
    """

    def construct_document(self, node: yaml.Node) -> Any:
        check_node_limits(node)
        return super().construct_document(node)

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            refuse_duplicate_keys(node)
        return super().construct_mapping(node, deep=deep)


def refuse_duplicate_keys(node: yaml.MappingNode) -> None:
    """Raise :class:`ReadError` when a key is written twice in the mapping ``node`` (merges aside)."""
    first: dict[Any, yaml.Mark] = {}
    for key_node, _ in node.value:
        if key_node.tag == _MERGE_TAG or not isinstance(key_node, yaml.ScalarNode):
            continue
        key = (key_node.tag, key_node.value)
        if key in first:
            raise ReadError(
                f"key {shorten(key_node.value)} written twice in one mapping: at {_where(first[key])} "
                f"and at {_where(key_node.start_mark)} (keep one)"
            )
        first[key] = key_node.start_mark


def check_node_limits(root: yaml.Node) -> None:
    """Refuse a composed YAML document that is too deep, has too long a string, refers to itself
    through an alias, or expands (aliases followed) to more than :data:`MAX_VALUES` values.

    Work is proportional to the number of distinct nodes: expanded sizes are memoized per node.
    """
    sizes: dict[int, int] = {}
    on_path: set[int] = set()

    def visit(node: yaml.Node, depth: int) -> int:
        if depth > MAX_DEPTH:
            raise ReadError(f"nested more than {MAX_DEPTH} levels deep at {_where(node.start_mark)}")
        if id(node) in on_path:
            raise ReadError(f"an alias refers to a mapping or list that contains it, at {_where(node.start_mark)}")
        if id(node) in sizes:
            return sizes[id(node)]
        if isinstance(node, yaml.ScalarNode):
            if len(node.value) > MAX_STRING_CHARS:
                raise ReadError(
                    f"a value of {len(node.value)} characters at {_where(node.start_mark)} is longer than "
                    f"the {MAX_STRING_CHARS} allowed: {shorten(node.value)}"
                )
            size = 1
        else:
            on_path.add(id(node))
            children = [c for pair in node.value for c in pair] if isinstance(node, yaml.MappingNode) else node.value
            size = 1 + sum(visit(child, depth + 1) for child in children)
            on_path.discard(id(node))
        if size > MAX_VALUES:
            raise ReadError(
                f"the document expands to more than {MAX_VALUES} values (aliases followed) at "
                f"{_where(node.start_mark)}: an alias bomb?"
            )
        sizes[id(node)] = size
        return size

    visit(root, 0)


def check_data_limits(data: Any, where: str = "") -> None:
    """The limits of :func:`check_node_limits` on already-parsed data (JSON, or a plan built in Python).

    A structure that contains itself ends at the depth limit.
    """
    count = 0
    stack: list[tuple[Any, int, str]] = [(data, 0, where)]
    while stack:
        value, depth, path = stack.pop()
        count += 1
        if count > MAX_VALUES:
            raise ReadError(f"more than {MAX_VALUES} values in one plan")
        if depth > MAX_DEPTH:
            raise ReadError(f"{path or 'the plan'}: nested more than {MAX_DEPTH} levels deep")
        if isinstance(value, str) and len(value) > MAX_STRING_CHARS:
            raise ReadError(
                f"{path or 'the plan'}: a value of {len(value)} characters is longer than the "
                f"{MAX_STRING_CHARS} allowed: {shorten(value)}"
            )
        if isinstance(value, dict):
            stack.extend((v, depth + 1, f"{path}.{k}" if path else str(k)) for k, v in value.items())
            stack.extend((k, depth + 1, path) for k in value if isinstance(k, str))
        elif isinstance(value, list):
            stack.extend((v, depth + 1, f"{path}[{i}]") for i, v in enumerate(value))


def decode_plan_bytes(raw: bytes) -> str:
    """Plan bytes as text; refuses files too large to be a plan, HDF5 files and other binary files."""
    if len(raw) > MAX_FILE_BYTES:
        raise ReadError(f"{len(raw)} bytes is larger than a plan can be ({MAX_FILE_BYTES} bytes)")
    if raw.startswith(_HDF5_SIGNATURE):
        raise ReadError(
            "this is an HDF5 file, not a plan (YAML or JSON); name data files in `raw_data.path` "
            "and saved states in `init.state`"
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ReadError(f"not a text file: byte 0x{raw[exc.start]:02x} at line {line} is not UTF-8") from None
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise ReadError(f"not a text file: a NUL character at line {line}")
    return text


def read_yaml_documents(text: str, loader: type[PlanYamlLoader] = PlanYamlLoader) -> list[Any]:
    """The non-empty documents of YAML ``text`` (``---`` separated), within the limits."""
    try:
        return [doc for doc in yaml.load_all(text, Loader=loader) if doc is not None]  # noqa: S506 (a SafeLoader)
    except yaml.MarkedYAMLError as exc:
        problem = exc.problem or "cannot parse"
        raise ReadError(f"not valid YAML at {_where(exc.problem_mark)}: {problem}") from None
    except yaml.YAMLError as exc:
        raise ReadError(f"not valid YAML: {shorten(str(exc), 200)}") from None
    except RecursionError:
        raise ReadError(f"nested more than {MAX_DEPTH} levels deep") from None


class _DuplicateJsonKey(ValueError):
    def __init__(self, key: str):
        self.key = key


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateJsonKey(key)
        out[key] = value
    return out


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number a plan may hold")


def read_json_documents(text: str) -> list[Any]:
    """The plan(s) in JSON ``text``: one object, or a list of them, within the limits."""
    try:
        loaded = json.loads(text, object_pairs_hook=_json_object, parse_constant=_refuse_constant)
    except _DuplicateJsonKey as exc:
        lines = [text[: m.start()].count("\n") + 1 for m in re.finditer(re.escape(json.dumps(exc.key)) + r"\s*:", text)]
        where = f" (lines {', '.join(map(str, lines))})" if len(lines) > 1 else ""
        raise ReadError(f"key {shorten(exc.key)} written twice in one object{where} (keep one)") from None
    except json.JSONDecodeError as exc:
        raise ReadError(f"not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    except ValueError as exc:
        raise ReadError(f"not valid JSON: {exc}") from None
    except RecursionError:
        raise ReadError(f"nested more than {MAX_DEPTH} levels deep") from None
    check_data_limits(loaded)
    return loaded if isinstance(loaded, list) else [loaded]


def safe_yaml_loader() -> type[PlanYamlLoader]:
    """The loader class plans are read with (subclass it to add tags)."""
    return PlanYamlLoader
