"""Far-field wave corrections of the noise models: the ``Psi'`` whose difference ``chi = Psi' - Psi``
the conventional engines back-propagate.

Each update is ``update(xp, far, measured_I, params) -> far'`` with ``far`` the modelled far-field
waves ``(B, M, N, N)`` (zero frequency at pixel 0, modes on axis 1), ``measured_I`` ``(B, N, N)`` in
electrons and ``params`` the noise props' numbers, as for :mod:`phaser.noise`. Every mode of a pixel
gets the same real factor, ``far' = far * f``, and ``f`` is finite at zero model or measured
intensity. Negative measured counts (background-subtracted data) are taken as zero.

- ``amplitude``/``anscombe``: modulus replacement ``f = sqrt(I + o) / sqrt(M + o + eps)``, the exact
  minimiser of the amplitude loss per pixel. ``gaussian_variance`` only scales the amplitude loss,
  not its minimiser, so it leaves this update unchanged (no relaxation formula is used).
- ``poisson``: a step along the negative gradient of the Poisson log-likelihood, whose direction is
  ``(I / M - 1) Psi`` (Thibault & Guizar-Sicairos, New J. Phys. 14 (2012) 063004), so
  ``f = 1 - a (1 - I / (M + eps))``. The step is ``a = 1/2``: along that direction the
  Fisher-scoring (expected-Hessian) step of the likelihood is exactly ``1/2`` for any data. To first
  order in ``I/M - 1`` it equals the modulus replacement.
- ``gaussian``: a step along the gradient of the intensity least-squares loss of
  :func:`phaser.noise.gaussian_loss`, ``f = 1 - a_b (M - I) / v_b`` (``v_b`` = mean count of pattern
  ``b`` + ``offset`` + ``eps``), with the Gauss-Newton step per pattern
  ``a_b = v_b sum(M g^2) / (2 sum(M^2 g^2))``, ``g = (M - I) / v_b``.

The engines' LSQML step follows Odstrcil et al., Opt. Express 26 (2018) 3108,
which uses these exit-wave corrections ``chi`` as its descent directions.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

from phaser.engines.conventional.arrays import TINY, abs2


def _model_and_measured(xp: ModuleType, far: Any, measured_I: Any) -> tuple[Any, Any]:
    return xp.sum(abs2(xp, far), axis=-3), xp.maximum(measured_I, 0.0)


def amplitude_update(xp: ModuleType, far: Any, measured_I: Any, params: Any) -> Any:
    """Modulus replacement ``far * sqrt(I + o) / sqrt(M + o + eps)``."""
    model, measured = _model_and_measured(xp, far, measured_I)
    offset = params["offset"]
    factor = xp.sqrt(measured + offset) / xp.sqrt(xp.maximum(model + offset + params["eps"], 1e-12))
    return far * factor[:, None]


def poisson_update(xp: ModuleType, far: Any, measured_I: Any, params: Any) -> Any:
    """Fisher-scoring step ``far * (1 - (1 - I / (M + eps)) / 2)`` on the Poisson likelihood."""
    model, measured = _model_and_measured(xp, far, measured_I)
    ratio = measured / xp.maximum(model + params["eps"], 1e-12)
    return far * (0.5 * (1.0 + ratio))[:, None]


def gaussian_update(xp: ModuleType, far: Any, measured_I: Any, params: Any) -> Any:
    """Gauss-Newton step along the intensity gradient, one step length per pattern."""
    model, measured = _model_and_measured(xp, far, measured_I)
    variance = xp.mean(measured, axis=(-2, -1), keepdims=True) + params["offset"] + params["eps"]
    grad = (model - measured) / variance
    num = xp.sum(model * grad**2, axis=(-2, -1), keepdims=True)
    den = xp.sum(model**2 * grad**2, axis=(-2, -1), keepdims=True)
    step = 0.5 * variance * num / xp.maximum(den, TINY)
    return far * (1.0 - step * grad)[:, None]


WAVE_UPDATES: dict[str, Callable[..., Any]] = {
    "amplitude": amplitude_update,
    "anscombe": amplitude_update,
    "poisson": poisson_update,
    "gaussian": gaussian_update,
}


def wave_update(name: str) -> Callable[..., Any]:
    """The far-field correction of built-in noise model ``name``; ValueError for any other."""
    if name not in WAVE_UPDATES:
        raise ValueError(
            f"noise_model: {name!r} has no wave update for the conventional engines; "
            f"use one of {', '.join(WAVE_UPDATES)}"
        )
    return WAVE_UPDATES[name]
