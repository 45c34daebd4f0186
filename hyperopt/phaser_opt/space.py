"""Search spaces of plan templates: any plan value may be a ``float``, ``int`` or ``choice`` annotation.

:func:`parse_template` checks every annotation (all problems at once, each with its field path such as
``engines[0].solvers.object.learning_rate``) and names it by that path unless it has a ``name``.
Annotations inside a choice option are conditional and carry the option's label in their path
(``engines[0].noise_model[anscombe].eps``), so two options never give one name two distributions.
:class:`SearchSpace` then turns an Optuna trial, or a fixed point, into a concrete plan (define-by-run).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from phaser_opt.template_io import AnnotationError, AnnotationKey, read_file, read_text, yaml_loader

__all__ = [
    "AnnotationError",
    "ChoiceParam",
    "FloatParam",
    "IntParam",
    "SearchSpace",
    "label_of",
    "load_template",
    "load_template_text",
    "parse_template",
    "yaml_loader",
]

ROOT = "<root>"  # the path (and default name) of an annotation that is the whole template
_NUMBER_KEYS = ("low", "high", "log", "step", "name")
_CHOICE_KEYS = ("options", "name", "labels")
_KINDS = {"$float": "float", "$int": "int", "$choice": "choice"}


@dataclass(frozen=True)
class FloatParam:
    """A real number in ``[low, high]``, log-uniform if ``log``, on the grid ``low + k * step`` if ``step``."""

    name: str
    path: str
    low: float
    high: float
    log: bool = False
    step: float | None = None

    def distribution(self) -> optuna.distributions.FloatDistribution:
        return optuna.distributions.FloatDistribution(self.low, self.high, log=self.log, step=self.step)


@dataclass(frozen=True)
class IntParam:
    """An integer in ``[low, high]`` (log-uniform if ``log``; ``step`` None means 1)."""

    name: str
    path: str
    low: int
    high: int
    log: bool = False
    step: int | None = None

    def distribution(self) -> optuna.distributions.IntDistribution:
        return optuna.distributions.IntDistribution(self.low, self.high, log=self.log, step=self.step or 1)


@dataclass(frozen=True)
class ChoiceParam:
    """One of ``options`` (values, sub-plans...); Optuna stores the matching entry of ``labels``."""

    name: str
    path: str
    options: tuple[Any, ...]
    labels: tuple[Any, ...]

    def distribution(self) -> optuna.distributions.CategoricalDistribution:
        return optuna.distributions.CategoricalDistribution(list(self.labels))

    def option(self, label: Any) -> Any:
        """The option stored as ``label``; ValueError if it is none of the labels."""
        for candidate, option in zip(self.labels, self.options, strict=True):
            if candidate == label:
                return option
        raise ValueError(f"{label!r} is not one of the labels {list(self.labels)}")


Param = FloatParam | IntParam | ChoiceParam


def _scalar_text(value: Any) -> str:
    """A scalar as YAML writes it (``null``, ``true``, ``0.5``; strings as themselves)."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, float) and not math.isfinite(value):
        return ".nan" if math.isnan(value) else ("-.inf" if value < 0 else ".inf")
    return str(value)


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def _readable(option: Any) -> str | None:
    """A short name of an option: a scalar's text, a mapping's ``type`` (or ``name``), list items joined by +."""
    if _is_scalar(option):
        return _scalar_text(option)
    if isinstance(option, dict):
        names = [option.get(key) for key in ("type", "name")]
        return next((name for name in names if isinstance(name, str) and name), None)
    if isinstance(option, (list, tuple)) and option:
        parts = [_readable(item) for item in option]
        return "+".join(parts) if all(parts) else None
    return None


def label_of(option: Any, index: int) -> str:
    """The readable label of ``option`` (see :func:`_readable`), else ``option{index}``."""
    return _readable(option) or f"option{index}"


def _made_unique(labels: list[str]) -> list[str]:
    """``labels`` with repeats renamed ``label#2``, ``label#3``..."""
    taken: set[str] = set()
    unique = []
    for label in labels:
        candidate, count = label, 1
        while candidate in taken:
            count += 1
            candidate = f"{label}#{count}"
        taken.add(candidate)
        unique.append(candidate)
    return unique


def _distinct_scalars(options: list[Any]) -> bool:
    # equal values of different types (1, 1.0, true) or NaN would make Optuna pick the wrong option
    if not all(_is_scalar(option) for option in options):
        return False
    if any(isinstance(option, float) and math.isnan(option) for option in options):
        return False
    return len(set(options)) == len(options)


def _choice_labels(options: list[Any]) -> tuple[Any, ...]:
    """Automatic labels: distinct scalars as themselves, otherwise unique readable strings."""
    if _distinct_scalars(options):
        return tuple(options)
    return tuple(_made_unique([label_of(option, index) for index, option in enumerate(options)]))


def _key_path(path: str, key: Any) -> str:
    if isinstance(key, str) and key.isidentifier():
        return f"{path}.{key}" if path else key
    return f"{path}[{key!r}]"


def _as_raw(param: Param) -> dict[str, Any]:
    """A resolved parameter back in the JSON form (so that a loaded template can be parsed again)."""
    if isinstance(param, ChoiceParam):
        body: dict[str, Any] = {"options": list(param.options), "name": param.name}
        if param.labels != _choice_labels(list(param.options)):
            body["labels"] = list(param.labels)
        return {"$choice": body}
    kind = "$int" if isinstance(param, IntParam) else "$float"
    return {kind: {"low": param.low, "high": param.high, "log": param.log, "step": param.step, "name": param.name}}


def _number_problems(kind: str, spec: dict[str, Any]) -> list[str]:
    """What is wrong with the bounds, ``log`` and ``step`` of a float or int annotation."""
    problems = [f"missing '{key}'" for key in ("low", "high") if spec.get(key) is None]
    for key in ("low", "high", "step"):
        problems += _value_problems(kind, key, spec.get(key))
    log = spec.get("log", False)
    log_problems = [] if isinstance(log, bool) else [f"log must be true or false (got {log!r})"]
    if not problems:  # the bounds are numbers: compare them
        problems += _range_problems(spec["low"], spec["high"], log is True, spec.get("step"))
    return log_problems + problems


def _value_problems(kind: str, key: str, value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return [f"{key} must be a finite real number (got {value!r})"]
    if kind == "int" and not isinstance(value, int):
        return [f"{key} must be an integer in an int annotation (got {value!r})"]
    return []


def _range_problems(low: float, high: float, log: bool, step: float | None) -> list[str]:
    problems = []
    if low >= high:
        problems.append(f"low must be less than high (got low={low!r}, high={high!r})")
    if log and low <= 0:
        problems.append(f"log requires low > 0 (got low={low!r})")
    if step is None:
        return problems
    if log:
        problems.append("log and step cannot be combined")
    if step <= 0:
        problems.append(f"step must be positive (got {step!r})")
    elif low < high:
        ratio = (high - low) / step
        if abs(ratio - round(ratio)) > 1e-9 * max(1.0, abs(ratio)):
            problems.append(f"high - low = {high - low!r} is not a whole number of steps of {step!r}")
    return problems


def _labels_problems(labels: Any, option_count: int) -> list[str]:
    if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels):
        return [f"labels must be a list of strings (got {labels!r})"]
    problems = [f"label {label!r} is used more than once" for label in sorted(set(labels)) if labels.count(label) > 1]
    if len(labels) != option_count:
        problems.append(f"labels has {len(labels)} entries but there are {option_count} options")
    return problems


class _Parser:
    """One walk over a template tree: resolves annotations, gathers parameters and every problem."""

    def __init__(self) -> None:
        self.problems: list[tuple[str, str]] = []
        self.params: dict[str, Param] = {}
        self.names: list[str] = []  # in document order, a choice before the parameters of its options

    def problem(self, path: str, message: str) -> None:
        self.problems.append((path or ROOT, message))

    def node(self, value: Any, path: str) -> Any:
        if isinstance(value, (FloatParam, IntParam, ChoiceParam)):
            value = _as_raw(value)
        if isinstance(value, dict):
            annotation = self.annotation_of(value, path)
            return self.annotation(*annotation, path) if annotation else self.mapping(value, path)
        if isinstance(value, (list, tuple)):
            return [self.node(item, f"{path}[{index}]") for index, item in enumerate(value)]
        return value

    def annotation_of(self, mapping: dict[Any, Any], path: str) -> tuple[str, Any] | None:
        """``(kind, body)`` if ``mapping`` is ``{"$kind": body}``; misused ``$`` keys are problems."""
        dollar_keys = [key for key in mapping if isinstance(key, str) and key.startswith("$")]
        if len(mapping) == 1 and dollar_keys and dollar_keys[0] in _KINDS:
            return _KINDS[dollar_keys[0]], mapping[dollar_keys[0]]
        for key in dollar_keys:
            if key in _KINDS:
                others = ", ".join(repr(other) for other in mapping if other != key)
                self.problem(path, f"{key!r} must be the only key of its mapping (found also {others})")
            elif len(mapping) == 1:
                self.problem(path, f"unknown annotation {key!r} (expected one of {', '.join(_KINDS)})")
        return None

    def mapping(self, mapping: dict[Any, Any], path: str) -> dict[Any, Any]:
        resolved = {}
        for key, value in mapping.items():
            if isinstance(key, (AnnotationKey, FloatParam, IntParam, ChoiceParam)):
                self.problem(path, f"an annotation cannot be a mapping key ({key})")
                continue
            resolved[key] = self.node(value, _key_path(path, key))
        return resolved

    def annotation(self, kind: str, body: Any, path: str) -> Param | None:
        keys = _CHOICE_KEYS if kind == "choice" else _NUMBER_KEYS
        spec = self.spec(kind, body, path, keys)
        if spec is None:
            return None
        name = spec.get("name")
        if name is not None and (not isinstance(name, str) or not name):
            self.problem(path, f"name must be a non-empty string (got {name!r})")
            name = None
        name = name or path or ROOT
        self.names.append(name)
        param = self.choice(spec, path, name) if kind == "choice" else self.number(kind, spec, path, name)
        if param is not None:
            self.register(param)
        return param

    def spec(self, kind: str, body: Any, path: str, keys: tuple[str, ...]) -> dict[str, Any] | None:
        """The annotation's mapping (the shorthand list expanded), unknown keys reported."""
        if isinstance(body, list) and kind == "choice":
            return {"options": body}
        if isinstance(body, list) and len(body) == 2:
            return {"low": body[0], "high": body[1]}
        if isinstance(body, list):
            self.problem(path, f"the {kind} shorthand is [low, high], got {len(body)} values")
            return None
        if not isinstance(body, dict):
            shape = "[option, ...] or {options: [...]}" if kind == "choice" else "[low, high] or {low: ..., high: ...}"
            self.problem(path, f"a {kind} annotation is {shape}, got {body!r}")
            return None
        for key in body:
            if key not in keys:
                self.problem(path, f"unknown key {key!r} in a {kind} annotation (allowed: {', '.join(keys)})")
        return body

    def number(self, kind: str, spec: dict[str, Any], path: str, name: str) -> FloatParam | IntParam | None:
        problems = _number_problems(kind, spec)
        for message in problems:
            self.problem(path, message)
        if problems:
            return None
        step, log = spec.get("step"), spec.get("log", False)
        if kind == "int":
            return IntParam(name, path, spec["low"], spec["high"], log, step)
        step = None if step is None else float(step)
        return FloatParam(name, path, float(spec["low"]), float(spec["high"]), log, step)

    def choice(self, spec: dict[str, Any], path: str, name: str) -> ChoiceParam | None:
        options, labels = spec.get("options"), spec.get("labels")
        if not isinstance(options, list) or not options:
            self.problem(path, f"options must be a non-empty list (got {options!r})")
            return None
        problems = [] if labels is None else _labels_problems(labels, len(options))
        for message in problems:
            self.problem(path, message)
        labels = _choice_labels(options) if labels is None or problems else tuple(labels)
        branch_paths = [f"{path}[{_scalar_text(label)}]" for label in labels]
        resolved = tuple(self.node(option, branch) for option, branch in zip(options, branch_paths, strict=True))
        return None if problems else ChoiceParam(name, path, resolved, labels)

    def register(self, param: Param) -> None:
        """Record ``param``; a name used twice must mean one distribution (the fields then share a value)."""
        first = self.params.setdefault(param.name, param)
        if first is not param and (type(first) is not type(param) or first.distribution() != param.distribution()):
            self.problem(
                param.path,
                f"name {param.name!r} is also used at {first.path or ROOT} with a different distribution "
                f"({first.distribution()!r} there, {param.distribution()!r} here)",
            )


def parse_template(tree: Any, source: str = "<template>") -> SearchSpace:
    """The search space of a template tree; raises :class:`AnnotationError` listing every problem."""
    parser = _Parser()
    resolved = parser.node(tree, "")
    if parser.problems:
        raise AnnotationError(source, parser.problems)
    return SearchSpace(resolved, {name: parser.params[name] for name in parser.names}, source)


def load_template_text(text: str, source: str, fmt: str = "yaml") -> Any:
    """A template's tree from YAML or JSON text, annotations resolved to parameter objects."""
    return parse_template(read_text(text, source, fmt), source).tree


def load_template(path: str | Path) -> Any:
    """A template's tree from a file (``.json`` as JSON, otherwise YAML), annotations resolved."""
    return parse_template(read_file(path), str(path)).tree


class _Point:
    """Chooses each parameter's value once per name (tied fields share it) and records it."""

    def __init__(self, choose: Callable[[Param], Any]) -> None:
        self.choose = choose
        self.values: dict[str, Any] = {}

    def __call__(self, param: Param) -> Any:
        if param.name not in self.values:
            self.values[param.name] = self.choose(param)
        return self.values[param.name]


def _materialize(node: Any, point: _Point) -> Any:
    """A new plain tree with every active annotation replaced by its value at ``point``."""
    if isinstance(node, ChoiceParam):
        return _materialize(node.option(point(node)), point)
    if isinstance(node, (FloatParam, IntParam)):
        return point(node)
    if isinstance(node, dict):
        return {key: _materialize(value, point) for key, value in node.items()}
    if isinstance(node, list):
        return [_materialize(item, point) for item in node]
    return copy.deepcopy(node)


def _suggest(trial: Any, param: Param) -> Any:
    """Ask an Optuna trial (or FixedTrial) for ``param``."""
    if isinstance(param, ChoiceParam):
        return trial.suggest_categorical(param.name, list(param.labels))
    if isinstance(param, IntParam):
        return trial.suggest_int(param.name, param.low, param.high, step=param.step or 1, log=param.log)
    return trial.suggest_float(param.name, param.low, param.high, step=param.step, log=param.log)


def _lowest(param: Param) -> Any:
    return param.labels[0] if isinstance(param, ChoiceParam) else param.low


def _highest(param: Param) -> Any:
    return param.labels[-1] if isinstance(param, ChoiceParam) else param.high


class SearchSpace:
    """A validated template: its tree with parameter objects, and every parameter that can exist by name."""

    def __init__(self, tree: Any, params: dict[str, Param], source: str = "<template>") -> None:
        self.tree = tree
        self.params = params
        self.source = source

    def __len__(self) -> int:
        return len(self.params)

    @property
    def is_empty(self) -> bool:
        """True for a plain plan (no annotations)."""
        return not self.params

    def __repr__(self) -> str:
        return f"SearchSpace({self.source!r}, params={list(self.params)})"

    def sample(self, trial: Any) -> dict[str, Any]:
        """The concrete plan for an Optuna trial, asking it only for the parameters that are active."""
        return _materialize(self.tree, _Point(lambda param: _suggest(trial, param)))

    def concrete(self, params: dict[str, Any]) -> dict[str, Any]:
        """The concrete plan at a fixed point (such as a finished trial's ``params``)."""

        def lookup(param: Param) -> Any:
            if param.name not in params:
                raise AnnotationError(self.source, [(param.path or ROOT, f"no value for parameter {param.name!r}")])
            value = params[param.name]
            if isinstance(param, ChoiceParam) and value not in param.labels:
                message = f"{value!r} is not a label of {param.name!r} (labels: {list(param.labels)})"
                raise AnnotationError(self.source, [(param.path or ROOT, message)])
            return value

        return _materialize(self.tree, _Point(lookup))

    def corner(self, which: str, seed: int = 0) -> tuple[dict[str, Any], dict[str, Any]]:
        """``(params, plan)`` at the lowest (``low``/first option), highest or a seeded ``random`` point."""
        if which == "random":
            trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed)).ask()
            point = _Point(lambda param: _suggest(trial, param))
        elif which in ("low", "high"):
            point = _Point(_lowest if which == "low" else _highest)
        else:
            raise ValueError(f"corner: which is 'low', 'high' or 'random', not {which!r}")
        plan = _materialize(self.tree, point)
        return point.values, plan
