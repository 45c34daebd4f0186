"""The one hook registry: built-in short names or ``package.module:function`` references.

A hook is called as ``function(*inputs, props)``: ``inputs`` are what phaser hands that kind of
hook (raw data, the state, ...), ``props`` is a validated :class:`HookProps` model holding the
keyword parameters written in the plan. Built-in hooks declare their own props class; a custom
``module:function`` hook may declare one as ``function.props_class``, otherwise it receives its
parameters unvalidated in a :class:`FreeProps`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict


class HookProps(BaseModel):
    """Base of every hook's parameters: immutable, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


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
