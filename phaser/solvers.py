"""Gradient solvers: any optax optimizer by name, its numbers schedulable without recompiling.

A solver in a plan is ``{type: adam, learning_rate: 0.01, nesterov: true, ...}``: the ``type`` is
an optax optimizer's name and the other keys are that optimizer's keyword arguments. Numeric ones
may be schedules (see :mod:`phaser.schedules`); they are wrapped by
``optax.inject_hyperparams`` so the engine writes a new value into the optimizer state each
iteration. Flags (``nesterov``) are fixed for the engine.
"""

from __future__ import annotations

import inspect
import math
from functools import cache
from typing import Any

import jax.numpy as jnp
import optax
from pydantic import ConfigDict, Field, model_validator

from phaser.hooks import HookProps
from phaser.schedules import NonNegativeSchedule, Schedule, schedule_at

# The optax optimizers offered by name: those whose first argument is a learning rate.
OPTAX_SOLVERS: tuple[str, ...] = (
    "adam",
    "sgd",
    "adamw",
    "nadam",
    "radam",
    "adamax",
    "amsgrad",
    "adabelief",
    "adagrad",
    "rmsprop",
    "lamb",
    "lion",
    "yogi",
    "novograd",
    "sm3",
    "fromage",
    "sign_sgd",
)


class OptaxSolverProps(HookProps):
    """An optax optimizer's keyword arguments; numbers may be schedules."""

    model_config = ConfigDict(extra="allow", frozen=True, allow_inf_nan=False)
    learning_rate: NonNegativeSchedule = Field(description="step size (units of the variable per unit gradient)")

    @model_validator(mode="after")
    def _numbers_not_negative(self) -> OptaxSolverProps:
        # optax's numeric arguments (b1, b2, eps, weight_decay, momentum, ...) are all >= 0
        for key, value in (self.model_extra or {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                if not math.isfinite(value) or value < 0:
                    raise ValueError(f"{key}: expected a finite number >= 0, got {value}")
        return self

    def numeric(self) -> dict[str, Schedule]:
        """Arguments that are numbers or schedules (traced)."""
        return {k: v for k, v in self.model_dump().items() if k != "learning_rate" and _is_numeric(v)} | {
            "learning_rate": self.learning_rate
        }

    def static(self) -> dict[str, Any]:
        """Arguments fixed for the engine (flags, None, strings)."""
        return {k: v for k, v in self.model_dump().items() if k != "learning_rate" and not _is_numeric(v)}


def _is_numeric(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)) or isinstance(value, dict)


def solver_props_class(name: str) -> type[OptaxSolverProps]:
    """Props class for optax optimizer ``name``: unknown keyword arguments are rejected."""
    signature = inspect.signature(getattr(optax, name))
    allowed = set(signature.parameters)

    def check(cls: type, values: Any) -> Any:
        if isinstance(values, dict):
            unknown = sorted(set(values) - allowed - {"type"})
            if unknown:
                raise ValueError(
                    f"optax.{name} takes no argument {', '.join(map(repr, unknown))}; "
                    f"it takes {', '.join(sorted(allowed))}"
                )
        return values

    return type(
        f"{name.title().replace('_', '')}SolverProps",
        (OptaxSolverProps,),
        {
            "__doc__": f"Keyword arguments of optax.{name} (numbers may be schedules).",
            "_known_arguments": model_validator(mode="before")(classmethod(check)),
        },
    )


@cache
def _optimizer(
    name: str, numeric_names: tuple[str, ...], static_items: tuple[tuple[str, Any], ...]
) -> optax.GradientTransformation:
    # Cached per structure, so repeated engines and study trials reuse one transformation object and
    # therefore one compiled iteration; the numbers themselves live in the optimizer state.
    factory = getattr(optax, name)
    placeholders = {k: 0.0 for k in numeric_names}
    return optax.inject_hyperparams(
        factory, static_args=tuple(k for k, _ in static_items), hyperparam_dtype=jnp.float32
    )(**placeholders, **dict(static_items))


def make_optimizer(name: str, props: OptaxSolverProps) -> optax.GradientTransformation:
    """The optax transformation for solver ``name`` with ``props`` (hyperparameters injectable)."""
    static = tuple(sorted(props.static().items()))
    return _optimizer(name, tuple(sorted(props.numeric())), static)


def gradient_scales(probe_modes: Any, group_size: Any) -> dict[str, Any]:
    """What each variable's gradient, summed over a group, is divided by before its solver sees it.

    As in the original phaser package, so that a plan's numbers mean what they mean there: the
    object's and probe's by the group's size (the mean per-position gradient), the object's,
    positions' and tilt's also by the probe's intensity ``sum |P|^2`` [electrons per pattern]. A
    learning rate is then a step per unit of mean gradient (per probe electron). Scale-free
    solvers (Adam) see the scale only through their ``eps``; SGD and momentum take it in full.
    """
    probe_power = jnp.sum(jnp.real(probe_modes) ** 2 + jnp.imag(probe_modes) ** 2)
    return {
        "object": group_size * probe_power,
        "probe": group_size,
        "positions": probe_power,
        "tilt": probe_power,
    }


def hyperparameters_at(props: OptaxSolverProps, i: int, niter: int) -> dict[str, float]:
    """Values of the solver's numeric arguments at engine iteration ``i``."""
    return {k: schedule_at(v, i, niter) for k, v in props.numeric().items()}
