"""Reading plan templates from YAML or JSON text into plain trees, annotations kept as ``{"$kind": body}``.

YAML tags (``!float``, ``!int``, ``!choice``) are sugar for the JSON form, so both formats give one raw
tree that :func:`phaser_opt.space.parse_template` validates. Nothing here builds Python objects from
the text (the loader is a ``yaml.SafeLoader``), a key written twice in one mapping is an error, and
``1e-3`` is a number as in JSON (plain YAML 1.1 reads it as a string).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from phaser.plan.read import (
    PlanYamlLoader,
    ReadError,
    decode_plan_bytes,
    read_json_documents,
    read_yaml_documents,
    refuse_duplicate_keys,
)

ANNOTATION_KINDS = ("float", "int", "choice")


class AnnotationError(ValueError):
    """Every problem found in a template, each as ``(path, message)``; ``path`` is ``""`` for a file error."""

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        self.source = source
        self.problems = list(problems)
        lines = [f"  {path}: {message}" if path else f"  {message}" for path, message in self.problems]
        count = len(self.problems)
        super().__init__(f"{source}: {count} problem{'s' if count != 1 else ''}\n" + "\n".join(lines))


@dataclass(frozen=True)
class AnnotationKey:
    """Stands for an annotation written as a mapping key (refused later, with the mapping's path)."""

    text: str
    line: int  # 1-based
    column: int  # 1-based

    def __str__(self) -> str:
        return f"{self.text} at line {self.line}, column {self.column}"


class _TemplateLoader(PlanYamlLoader):
    """The plan loader (duplicate keys refused, size, depth and alias limits) plus the annotation tags."""

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict[Any, Any]:
        if not isinstance(node, yaml.MappingNode):
            return super().construct_mapping(node, deep=deep)
        refuse_duplicate_keys(node)
        self.flatten_mapping(node)  # `<<` merges: a merged key overridden by an own key is not a duplicate
        return {self._key(node, key): self.construct_object(value, deep=deep) for key, value in node.value}

    def _key(self, node: yaml.MappingNode, key_node: yaml.Node) -> Any:
        if _is_annotation_node(key_node):
            mark = key_node.start_mark
            return AnnotationKey(_node_text(key_node), mark.line + 1, mark.column + 1)
        key = self.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark, "found unhashable key", key_node.start_mark
            ) from None
        return key


def _is_annotation_node(node: yaml.Node) -> bool:
    """Whether ``node`` is ``!kind ...`` or ``{$kind: ...}``."""
    if node.tag in {f"!{kind}" for kind in ANNOTATION_KINDS}:
        return True
    if not isinstance(node, yaml.MappingNode) or len(node.value) != 1:
        return False
    key_node = node.value[0][0]
    return isinstance(key_node, yaml.ScalarNode) and key_node.value in {f"${kind}" for kind in ANNOTATION_KINDS}


def _node_text(node: yaml.Node) -> str:
    return node.tag if node.tag.startswith("!") else f"{{{node.value[0][0].value}: ...}}"


def _annotation_constructor(kind: str) -> Any:
    """The constructor of tag ``!kind``: its body, deep, in the JSON form ``{"$kind": body}``."""

    def construct(loader: _TemplateLoader, node: yaml.Node) -> dict[str, Any]:
        if isinstance(node, yaml.MappingNode):
            body: Any = loader.construct_mapping(node, deep=True)
        elif isinstance(node, yaml.SequenceNode):
            body = loader.construct_sequence(node, deep=True)
        else:
            body = loader.construct_scalar(node)  # refused by the validator, with its path
        return {f"${kind}": body}

    return construct


for _kind in ANNOTATION_KINDS:
    _TemplateLoader.add_constructor(f"!{_kind}", _annotation_constructor(_kind))

# YAML 1.1 reads 1e-3 and 1.0e3 as strings (its exponent needs a dot and a sign); read them as JSON does.
_TemplateLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+.0123456789"),
)


def yaml_loader() -> type[yaml.SafeLoader]:
    """The tag-aware SafeLoader subclass (for ``yaml.load(text, Loader=yaml_loader())``)."""
    return _TemplateLoader


def read_text(text: str, source: str, fmt: str = "yaml") -> Any:
    """The raw tree of a template's text; syntax errors raise :class:`AnnotationError` with line and column."""
    if fmt not in ("yaml", "json"):
        raise ValueError(f"unknown template format {fmt!r} (expected 'yaml' or 'json')")
    try:
        documents = read_json_documents(text) if fmt == "json" else read_yaml_documents(text, _TemplateLoader)
    except ReadError as exc:
        raise AnnotationError(source, [("", str(exc))]) from None
    if fmt == "json" and text.lstrip().startswith("["):
        documents = [documents]  # a JSON template is one value; a list is that value, not several plans
    if len(documents) != 1:
        raise AnnotationError(source, [("", f"a template holds one plan, this holds {len(documents)} documents")])
    return documents[0]


def read_file(path: str | Path) -> Any:
    """The raw tree of a template file: JSON for ``.json``, YAML otherwise."""
    path = Path(path)
    try:
        text = decode_plan_bytes(path.read_bytes())
    except FileNotFoundError:
        raise AnnotationError(str(path), [("", "file not found")]) from None
    except (OSError, ReadError) as exc:
        raise AnnotationError(str(path), [("", f"cannot read it as a template ({exc})")]) from None
    return read_text(text, str(path), "json" if path.suffix.lower() == ".json" else "yaml")
