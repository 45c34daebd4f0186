"""A custom hook module used by the plan tests (referenced as ``tests.plan.custom_hooks:...``)."""

from __future__ import annotations

from pydantic import Field

from phaser.hooks import HookProps


class HalfProps(HookProps):
    factor: float = Field(0.5, gt=0)


def scale_down(raw, rng, props: HalfProps):
    """Post-load hook: multiply the patterns by ``factor``."""
    return raw.with_patterns(raw.patterns * props.factor)


scale_down.props_class = HalfProps


def untyped(raw, rng, props):
    """Post-load hook without a props class: parameters arrive unvalidated."""
    return raw
