"""Pydantic field types for hooks: a built-in name or ``module:function`` plus its parameters.

In a plan a hook is written ``name`` or ``{type: name, param: value, ...}``. The field validates the
parameters against the hook's props class (errors carry the full field path) and yields a
:class:`phaser.hooks.Hook`. Unknown names fail with the list of known ones. A ``module:function``
is imported only when the trust policy of :mod:`phaser.hooks` allows its module, and must have
the signature of its kind.
"""

from __future__ import annotations

from functools import cache
from typing import Annotated, Any, Literal, Union

from pydantic import (
    BeforeValidator,
    ConfigDict,
    Discriminator,
    PlainSerializer,
    Tag,
    WrapValidator,
    create_model,
)
from pydantic_core import PydanticCustomError

from phaser import hooks
from phaser.hooks import FreeProps, Hook, HookError, HookProps

CUSTOM_TAG = "<module:function>"  # not "<custom>": the built-in tilt hook is named custom


def _tag(name: str) -> str:
    # angle brackets mark union tags in error locations, which the error formatter drops
    return f"<{name}>"


def _as_mapping(value: Any) -> Any:
    return {"type": value} if isinstance(value, str) else value


def _discriminate(kind: str):
    def tag(value: Any) -> str | None:
        if isinstance(value, Hook):
            return _tag(value.name) if hooks.entry(kind, value.name) else CUSTOM_TAG
        name = value.get("type") if isinstance(value, dict) else None
        if not isinstance(name, str):
            return None
        if hooks.entry(kind, name) is not None:
            return _tag(name)
        return CUSTOM_TAG if hooks.is_reference(name) else None

    return tag


class _CustomHookModel(FreeProps):
    """Parameters of a ``module:function`` hook, checked against its ``props_class`` if it has one."""

    model_config = ConfigDict(extra="allow", frozen=True)
    type: str


def _custom_to_hook(kind: str):
    def convert(value: Any, handler: Any) -> Hook:
        if isinstance(value, Hook):
            return value
        model = handler(value)
        params = {k: v for k, v in model.model_dump().items() if k != "type"}
        refused = hooks.refusal(model.type)
        if refused is not None:
            raise PydanticCustomError("hook_refused", refused)
        try:
            function = hooks.load_function(model.type)
            hooks.check_signature(kind, function, model.type)
        except HookError as exc:
            raise PydanticCustomError("hook_import", str(exc)) from None
        props_class = getattr(function, "props_class", None)
        if props_class is None:
            return Hook(kind, model.type, FreeProps(**params))
        return Hook(kind, model.type, props_class.model_validate(params))

    return convert


def _builtin_to_hook(kind: str, name: str):
    def convert(value: Any, handler: Any) -> Hook:
        if isinstance(value, Hook):
            return value
        model = handler(value)
        entry = hooks.entry(kind, name)
        props = entry.props_class.model_validate(model.model_dump(exclude={"type"}))
        return Hook(kind, name, props)

    return convert


@cache
def _tagged_model(kind: str, name: str, props_class: type[HookProps]) -> type[HookProps]:
    return create_model(f"{props_class.__name__}Field", __base__=props_class, type=(Literal[name], name))


def hook_field(kind: str) -> Any:
    """The annotated type of a plan field holding one hook of ``kind``."""
    names = hooks.known_names(kind)
    members = [
        Annotated[
            _tagged_model(kind, name, hooks.entry(kind, name).props_class),
            WrapValidator(_builtin_to_hook(kind, name)),
            Tag(_tag(name)),
        ]
        for name in names
    ]
    members.append(Annotated[_CustomHookModel, WrapValidator(_custom_to_hook(kind)), Tag(CUSTOM_TAG)])
    expected = ", ".join(names) or "(none built in)"
    return Annotated[
        Union[tuple(members)],  # type: ignore[valid-type]  # noqa: UP007 (a runtime-built union)
        Discriminator(
            _discriminate(kind),
            custom_error_type=f"unknown_hook[{kind}]",
            custom_error_message=f"is not one of {expected}, nor a 'package.module:function' reference",
        ),
        BeforeValidator(_as_mapping),
        PlainSerializer(lambda hook: hook.to_plan(), return_type=dict),
    ]
