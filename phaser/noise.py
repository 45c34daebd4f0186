"""Noise models: the per-pattern data loss between modelled and measured intensities.

Each model is a pure function ``loss(xp, model_I, measured_I, params) -> (B,)`` where ``params`` maps
the props' field names to numbers (traced scalars inside a jit, so a new epsilon never recompiles),
summed over detector pixels, zero when ``model_I == measured_I`` and finite (with a finite gradient)
at zero intensity. ``model_I``/``measured_I`` are in electrons per pixel.

- ``amplitude``: ``2/(1+v) * sum (sqrt(I + o + eps) - sqrt(M + o + eps))^2`` (Gaussian noise on the
  amplitude, v = ``gaussian_variance``);
- ``anscombe``: the amplitude form with the variance-stabilising offset ``o = 3/8``;
- ``poisson``: ``sum (M + eps) - I log(M + eps) - [(I + eps) - I log(I + eps)]`` with ``M`` the
  model and ``I`` the measured counts: the negative log-likelihood of counts ``I`` for a Poisson mean
  ``M + eps`` (``eps`` a background added to the model, as in the original phaser package, so that a
  plan's eps means the same in both), minus its value at ``M = I``. Its gradient
  ``1 - I / (M + eps)`` vanishes at ``M = I - eps``, where the conventional engines' Poisson update
  rests too;
- ``gaussian``: ``sum (M - I)^2 / (2 (mean(I) + o + eps))`` (Gaussian noise on the intensity with a
  variance of the pattern's mean count, so its scale is comparable to the others).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from pydantic import Field

from phaser.hooks import HookProps


class AmplitudeNoiseProps(HookProps):
    """Parameters of the amplitude (and Anscombe) noise models."""

    eps: float = Field(1e-3, ge=0, description="intensity added inside the square roots [e]")
    offset: float = Field(0.0, ge=0, description="intensity offset [e]")
    gaussian_variance: float = Field(0.1, ge=0, description="variance of the amplitude noise")


class AnscombeNoiseProps(AmplitudeNoiseProps):
    """Anscombe noise: the amplitude model on ``I + 3/8``."""

    offset: float = Field(0.375, ge=0, description="variance-stabilising offset [e]")


class PoissonNoiseProps(HookProps):
    """Parameters of the Poisson noise model."""

    eps: float = Field(1e-3, gt=0, description="background added to the model intensity, keeping log finite [e]")


class GaussianNoiseProps(HookProps):
    """Parameters of the Gaussian (intensity) noise model."""

    eps: float = Field(1e-3, gt=0, description="floor of the variance [e]")
    offset: float = Field(0.0, ge=0, description="intensity added to the variance [e]")


def _floor(xp: ModuleType, x: Any) -> Any:
    # keeps sqrt/log gradients finite even when eps == 0 and the model intensity is exactly 0
    return xp.maximum(x, 1e-12)


def amplitude_loss(xp: ModuleType, model_I: Any, measured_I: Any, params: Any) -> Any:
    """Amplitude-domain least squares per pattern."""
    shift = params["offset"] + params["eps"]
    diff = xp.sqrt(_floor(xp, model_I + shift)) - xp.sqrt(_floor(xp, measured_I + shift))
    return 2.0 / (1.0 + params["gaussian_variance"]) * xp.sum(diff**2, axis=(-2, -1))


def poisson_loss(xp: ModuleType, model_I: Any, measured_I: Any, params: Any) -> Any:
    """Poisson negative log-likelihood of the counts for the mean ``model + eps``, per pattern, zero at the truth."""
    eps = params["eps"]
    model = _floor(xp, model_I + eps)
    counts = xp.maximum(measured_I, 0.0)
    at_truth = counts + eps - counts * xp.log(counts + eps)
    return xp.sum(model - counts * xp.log(model) - at_truth, axis=(-2, -1))


def gaussian_loss(xp: ModuleType, model_I: Any, measured_I: Any, params: Any) -> Any:
    """Intensity-domain least squares per pattern, scaled by the pattern's mean count."""
    variance = xp.mean(measured_I, axis=(-2, -1)) + params["offset"] + params["eps"]
    return xp.sum((model_I - measured_I) ** 2, axis=(-2, -1)) / (2.0 * variance)


NOISE_LOSSES = {
    "amplitude": amplitude_loss,
    "anscombe": amplitude_loss,
    "poisson": poisson_loss,
    "gaussian": gaussian_loss,
}
NOISE_PROPS = {
    "amplitude": AmplitudeNoiseProps,
    "anscombe": AnscombeNoiseProps,
    "poisson": PoissonNoiseProps,
    "gaussian": GaussianNoiseProps,
}


def noise_loss(name: str) -> Any:
    """The loss function of built-in noise model ``name``."""
    return NOISE_LOSSES[name]
