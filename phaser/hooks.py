"""The one hook registry: built-in short names or ``package.module:function`` references.

A hook is called as ``function(*inputs, props)``: ``inputs`` are what phaser hands that kind of
hook (raw data, the state, ...), ``props`` is a validated :class:`HookProps` model holding the
keyword parameters written in the plan. Built-in hooks declare their own props class; a custom
``module:function`` hook may declare one as ``function.props_class``, otherwise it receives its
parameters unvalidated in a :class:`FreeProps`.

Trust: a plan is data, so naming a function in it must not run code the user did not choose.
Built-in hooks and the hooks installed packages declare in the entry-point group ``phaser.hooks``
are allowed; any other module must be allowed explicitly (:func:`allowed_hooks`, ``--allow-hooks``
on the command line, or ``$PHASER_ALLOW_HOOKS=mod1,mod2``), and a standard-library module never
is. A module that is not allowed is never imported. See ``docs/hooks.md``.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import inspect
import os
import sys
import typing
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator


class _NotANumber:
    """Stands in for ``true``/``false`` written where a number is expected, so that pydantic
    reports a type error at that field instead of reading ``true`` as 1."""

    def __init__(self, value: bool):
        self.value = value

    def __repr__(self) -> str:
        return "true" if self.value else "false"


def _admits(annotation: Any, kind: type) -> bool:
    if annotation is kind or annotation is Any:
        return True
    return any(_admits(arg, kind) for arg in typing.get_args(annotation) if arg is not Ellipsis)


def _sequence_items(annotation: Any, n: int) -> list[Any] | None:
    """Per-element annotations when ``annotation`` is (or holds one) list/tuple type, else None."""
    origin = typing.get_origin(annotation)
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if origin in (list, tuple) and args:
        if origin is list or (len(args) == 2 and args[1] is Ellipsis) or len(args) == 1:
            return [args[0]] * n
        return args if len(args) == n else None
    sequences = [a for a in args if typing.get_origin(a) in (list, tuple)]
    return _sequence_items(sequences[0], n) if len(sequences) == 1 else None


def _guard_bools(annotation: Any, value: Any) -> Any:
    if isinstance(value, bool):
        wants_number = _admits(annotation, int) or _admits(annotation, float)
        return _NotANumber(value) if wants_number and not _admits(annotation, bool) else value
    if isinstance(value, (list, tuple)):
        items = _sequence_items(annotation, len(value))
        if items is not None:
            return [_guard_bools(a, v) for a, v in zip(items, value, strict=True)]
    return value


class StrictNumbers(BaseModel):
    """Base of plan models: numbers must be finite, and ``true``/``false`` are not numbers."""

    model_config = ConfigDict(allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _no_bools_for_numbers(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        fields = cls.model_fields
        return {k: _guard_bools(fields[k].annotation, v) if k in fields else v for k, v in data.items()}


class HookProps(StrictNumbers):
    """Base of every hook's parameters: immutable, unknown keys rejected, numbers finite."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True, allow_inf_nan=False)


class FreeProps(HookProps):
    """Parameters of a custom hook that declares no props class: taken as written."""

    model_config = ConfigDict(extra="allow", frozen=True)


class HookError(ValueError):
    """A hook reference that cannot be resolved (unknown name, missing module or function)."""


@dataclass(frozen=True)
class HookEntry:
    """A registered built-in hook: where its function lives and the class of its parameters."""

    ref: str
    props_class: type[HookProps]


# kind -> name -> entry. Filled by `register`, mostly in phaser.plan.registry.
_REGISTRY: dict[str, dict[str, HookEntry]] = {}


def register(kind: str, name: str, ref: str, props_class: type[HookProps]) -> None:
    """Register built-in hook ``name`` of ``kind`` implemented at ``ref`` (``module:function``)."""
    _REGISTRY.setdefault(kind, {})[name] = HookEntry(ref, props_class)


def known_names(kind: str) -> list[str]:
    """Built-in names of hook ``kind``, in registration order."""
    return list(_REGISTRY.get(kind, {}))


def entry(kind: str, name: str) -> HookEntry | None:
    """The registered entry of ``name``, or None when ``name`` is not a built-in of ``kind``."""
    return _REGISTRY.get(kind, {}).get(name)


def is_reference(name: str) -> bool:
    """Whether ``name`` looks like ``package.module:function``."""
    module, sep, func = name.partition(":")
    return bool(sep and module and func and all(p.isidentifier() for p in module.split(".")))


def load_function(ref: str) -> Callable[..., Any]:
    """Import the function named by ``module:function``; raises :class:`HookError`."""
    module_name, _, func_name = ref.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise HookError(f"cannot import module {module_name!r} of hook {ref!r}: {exc}") from exc
    func = getattr(module, func_name, None)
    if func is None or not callable(func):
        raise HookError(f"module {module_name!r} has no function {func_name!r} (hook {ref!r})")
    return func


ENTRY_POINT_GROUP = "phaser.hooks"
"""Entry-point group in which installed packages declare the hooks they provide."""
ALLOW_ENV = "PHASER_ALLOW_HOOKS"
"""Environment variable: comma-separated modules whose hooks may be used."""

HOOK_SIGNATURES = {
    "raw_data": "function(props) -> RawData",
    "post_load": "function(raw, rng, props) -> RawData",
    "probe": "function(ctx, props) -> probe array",
    "scan": "function(ctx, props) -> positions array",
    "object": "function(ctx, props) -> object array",
    "tilt": "function(ctx, n_positions, props) -> tilt array",
    "noise_model": "function(xp, model_intensity, measured_intensity, props) -> loss per pattern",
    "cost_regularizer": "function(xp, variables, props) -> cost",
    "group_constraint": "function(xp, variables, props, context) -> variables",
    "iter_constraint": "function(xp, variables, props, context) -> variables",
    "conventional_solver": "function(xp, variables, solver_state, forward, chi, weights, options, props)",
    "position_solver": "function(xp, shift_px, previous_move_px, i, niter, props) -> move_px",
}
"""How each kind of hook is called (positional arguments, ``props`` last)."""

_ALLOWED: contextvars.ContextVar[frozenset[str]] = contextvars.ContextVar("phaser_allowed_hooks", default=frozenset())


@contextlib.contextmanager
def allowed_hooks(modules: Iterable[str]) -> Iterator[None]:
    """Within the block, hooks from ``modules`` (and their submodules) may be imported."""
    modules = frozenset(m.strip() for m in ([modules] if isinstance(modules, str) else modules) if m.strip())
    token = _ALLOWED.set(_ALLOWED.get() | modules)
    try:
        yield
    finally:
        _ALLOWED.reset(token)


def _declared_refs() -> set[str]:
    """``module:function`` (or module) values of the ``phaser.hooks`` entry points; nothing is imported."""
    return {ep.value.replace(" ", "") for ep in entry_points(group=ENTRY_POINT_GROUP)}


def _allowed_modules() -> set[str]:
    from_env = {m.strip() for m in os.environ.get(ALLOW_ENV, "").split(",") if m.strip()}
    return set(_ALLOWED.get()) | from_env


def _is_builtin_ref(ref: str) -> bool:
    return any(e.ref == ref for kind in _REGISTRY.values() for e in kind.values())


def refusal(ref: str) -> str | None:
    """Why the custom hook ``ref`` may not be imported, or None when it may."""
    module = ref.partition(":")[0]
    top = module.split(".")[0]
    if top in sys.stdlib_module_names or top == "builtins":
        return f"{module!r} is a standard-library module: its functions are never hooks"
    if _is_builtin_ref(ref):
        return None
    declared = _declared_refs()
    if ref in declared or module in declared:
        return None
    if any(module == m or module.startswith(m + ".") for m in _allowed_modules()):
        return None
    return (
        f"module {module!r} is not allowed to provide hooks, so it was not imported; if you trust it, "
        f"run with `--allow-hooks {top}` or set {ALLOW_ENV}={top}, or install it as a package declaring "
        f"the hook in the entry-point group {ENTRY_POINT_GROUP!r} (see docs/hooks.md)"
    )


def check_signature(kind: str, function: Callable[..., Any], ref: str) -> None:
    """Raise :class:`HookError` when ``function`` cannot be called the way hooks of ``kind`` are."""
    expected = HOOK_SIGNATURES.get(kind)
    if expected is None:
        return
    n_args = expected.partition("(")[2].partition(")")[0].count(",") + 1
    try:
        inspect.signature(function).bind(*range(n_args))
    except TypeError:
        raise HookError(f"{ref!r} is not a {kind} hook: a {kind} hook is called as {expected}") from None
    except ValueError:  # no signature to inspect (some builtins): accept
        return


@dataclass(frozen=True)
class Hook:
    """A resolved hook: its kind, the name written in the plan, and its validated parameters."""

    kind: str
    name: str
    props: HookProps

    @property
    def ref(self) -> str:
        """``module:function`` of the implementation."""
        found = entry(self.kind, self.name)
        return found.ref if found else self.name

    def function(self) -> Callable[..., Any]:
        """The implementation (imported on first use)."""
        return load_function(self.ref)

    def __call__(self, *inputs: Any) -> Any:
        return self.function()(*inputs, self.props)

    def to_plan(self) -> dict[str, Any]:
        """The plan form ``{type: name, **props}``, JSON/YAML-ready, defaults filled in."""
        return {"type": self.name, **self.props.model_dump(mode="json")}
