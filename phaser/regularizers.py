"""Cost regularizers: terms added to the gradient engine's loss, each with a schedulable weight.

Each is a pure function ``cost(xp, variables, params) -> scalar`` over the variables dict
(``object`` (S, Ny, Nx) complex, ``probe`` (M, N, N) complex, ...). ``params`` holds the traced
numbers (``weight`` and the rest), so a new weight never recompiles. The engine scales each term
by the group's share of the positions, so one iteration adds the full cost once.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from pydantic import Field

from phaser.hooks import HookProps
from phaser.schedules import Schedule


class WeightProps(HookProps):
    """A regularizer with only a weight."""

    weight: Schedule = Field(description="weight of the term (per object pixel sum)")


class SmoothWeightProps(WeightProps):
    """A total-variation regularizer: ``eps`` smooths |gradient| at zero."""

    eps: float = Field(1e-6, gt=0, description="smoothing of the absolute value")


def _lateral_differences(xp: ModuleType, array: Any) -> tuple[Any, Any]:
    return array[..., 1:, :] - array[..., :-1, :], array[..., :, 1:] - array[..., :, :-1]


def obj_l1(xp: ModuleType, variables: dict[str, Any], params: Any) -> Any:
    """``weight * sum |O|``: sparsity of the transmission."""
    return params["weight"] * xp.sum(xp.abs(variables["object"]))


def obj_l2(xp: ModuleType, variables: dict[str, Any], params: Any) -> Any:
    """``weight * sum |O|^2``."""
    return params["weight"] * xp.sum(xp.abs(variables["object"]) ** 2)


def obj_phase_l1(xp: ModuleType, variables: dict[str, Any], params: Any) -> Any:
    """``weight * sum |arg O|``: pulls the phase towards zero (vacuum)."""
    return params["weight"] * xp.sum(xp.abs(xp.angle(variables["object"])))


def obj_tikhonov(xp: ModuleType, variables: dict[str, Any], params: Any) -> Any:
    """``weight * sum |grad O|^2`` over the lateral axes."""
    dy, dx = _lateral_differences(xp, variables["object"])
    return params["weight"] * (xp.sum(xp.abs(dy) ** 2) + xp.sum(xp.abs(dx) ** 2))


def obj_tv(xp: ModuleType, variables: dict[str, Any], params: Any) -> Any:
    """``weight * sum sqrt(|dO/dy|^2 + |dO/dx|^2 + eps)`` (isotropic total variation)."""
    dy, dx = _lateral_differences(xp, variables["object"])
    magnitude2 = xp.abs(dy[..., :, :-1]) ** 2 + xp.abs(dx[..., :-1, :]) ** 2
    return params["weight"] * xp.sum(xp.sqrt(magnitude2 + params["eps"]))


def layers_tikhonov(xp: ModuleType, variables: dict[str, Any], params: Any) -> Any:
    """``weight * sum |O_{s+1} - O_s|^2``: smoothness along depth."""
    obj = variables["object"]
    return params["weight"] * xp.sum(xp.abs(obj[1:] - obj[:-1]) ** 2)


COST_REGULARIZERS: dict[str, tuple[Any, type[HookProps]]] = {
    "obj_l1": (obj_l1, WeightProps),
    "obj_l2": (obj_l2, WeightProps),
    "obj_phase_l1": (obj_phase_l1, WeightProps),
    "obj_tikhonov": (obj_tikhonov, WeightProps),
    "obj_tv": (obj_tv, SmoothWeightProps),
    "layers_tikhonov": (layers_tikhonov, WeightProps),
}
