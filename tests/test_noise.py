"""Noise models: zero at the truth, least at the truth (Poisson: less its background eps), finite with
finite gradients at zero intensity."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pydantic
import pytest

from phaser.noise import NOISE_LOSSES, NOISE_PROPS, PoissonNoiseProps, noise_loss

MODELS = sorted(NOISE_LOSSES)


def _params(name: str, **overrides) -> dict:
    """The props' numeric fields as float32 scalars, as the gradient engine passes them."""
    values = {**NOISE_PROPS[name]().model_dump(), **overrides}
    return {k: jnp.asarray(v, jnp.float32) for k, v in values.items() if isinstance(v, (int, float))}


def _measured(seed: int = 0) -> np.ndarray:
    """Three 16x16 patterns of counts, strictly positive (a bright disc and a dim background)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.indices((16, 16)) - 8
    mean = np.where(yy**2 + xx**2 < 25, 200.0, 3.0)
    return (rng.poisson(mean, size=(3, 16, 16)) + 1.0).astype(np.float32)


def test_every_model_has_props():
    assert set(NOISE_LOSSES) == set(NOISE_PROPS) == {"amplitude", "anscombe", "poisson", "gaussian"}
    assert noise_loss("poisson") is NOISE_LOSSES["poisson"]


@pytest.mark.parametrize("name", MODELS)
def test_zero_at_truth(name):
    measured = jnp.asarray(_measured())
    loss = NOISE_LOSSES[name](jnp, measured, measured, _params(name))
    assert loss.shape == (3,)
    # float32 sums of ~256 terms of size up to ~1e3: exact cancellation up to roundoff
    np.testing.assert_allclose(np.asarray(loss), 0.0, atol=1e-2)


def _minimiser(name: str, measured, params):
    """The model intensity where the loss is least: the measurement, less Poisson's background ``eps``."""
    return measured - params["eps"] if name == "poisson" else measured


@pytest.mark.parametrize("name", MODELS)
def test_gradient_vanishes_at_the_minimiser(name):
    measured = jnp.asarray(_measured())
    params = _params(name)
    best = _minimiser(name, measured, params)
    grad = jax.grad(lambda m: jnp.sum(NOISE_LOSSES[name](jnp, m, measured, params)))(best)
    # relative to the gradient one count away
    off = jax.grad(lambda m: jnp.sum(NOISE_LOSSES[name](jnp, m, measured, params)))(best + 1.0)
    assert float(jnp.max(jnp.abs(grad))) <= 1e-3 * float(jnp.max(jnp.abs(off)))


def test_poisson_gradient_is_the_originals():
    """``d/dM = 1 - I / (M + eps)``: eps is a background added to the model, as in the original
    package, so a plan's eps means the same there and here. Guards the form that adds eps to the
    counts too (``1 - (I + eps) / (M + eps)``), which weakens the pull of dark pixels towards zero
    by a factor ``M / (M + eps)`` (0.09 at M = 0.01, eps = 0.1)."""
    rng = np.random.default_rng(7)
    measured = rng.poisson(rng.uniform(0.0, 3.0, size=(2, 8, 8))).astype(np.float64)
    measured[0, 0, :4] = 0.0  # dark pixels, where the two forms differ most
    model = rng.uniform(0.0, 3.0, size=measured.shape)
    params = {"eps": 0.1}
    grad = jax.grad(lambda m: jnp.sum(NOISE_LOSSES["poisson"](jnp, m, jnp.asarray(measured), params)))(
        jnp.asarray(model)
    )
    np.testing.assert_allclose(np.asarray(grad), 1.0 - measured / (model + 0.1), rtol=1e-5, atol=1e-7)


def test_poisson_fixed_point_agrees_with_the_conventional_update():
    """The gradient engines' Poisson loss is least where the conventional engines' far-field factor is 1."""
    from phaser.engines.conventional.noise_updates import poisson_update

    measured = np.array([[[0.0, 0.05, 1.0, 40.0]]])
    params = {"eps": 0.1}
    best = np.maximum(measured - 0.1, 0.0)
    far = np.sqrt(best)[:, None] + 0j  # one mode
    factor = poisson_update(np, far, measured, params) / np.where(far == 0, 1, far)
    grad = np.asarray(
        jax.grad(lambda m: jnp.sum(NOISE_LOSSES["poisson"](jnp, m, jnp.asarray(measured), params)))(jnp.asarray(best))
    )
    # interior minimum (I > eps): both at rest; on the boundary M = 0 the loss still pushes down (grad > 0)
    interior = measured > 0.1
    np.testing.assert_allclose(np.abs(factor[:, 0][interior]), 1.0, rtol=1e-12)
    np.testing.assert_allclose(grad[interior], 0.0, atol=1e-6)
    assert np.all(grad[~interior] > 0)


@pytest.mark.parametrize("name", MODELS)
def test_minimal_at_truth_along_random_directions(name):
    measured = _measured(1)
    params = _params(name)
    rng = np.random.default_rng(2)
    for _ in range(5):
        direction = rng.uniform(-1.0, 1.0, size=measured.shape)
        losses = {}
        for t in (-0.3, -0.1, 0.0, 0.1, 0.3):
            model = jnp.asarray(measured * (1.0 + t * direction), jnp.float32)
            losses[t] = float(jnp.sum(NOISE_LOSSES[name](jnp, model, jnp.asarray(measured), params)))
        assert abs(losses[0.0]) < 1e-2
        for t in (0.1, 0.3):
            assert losses[t] > losses[0.0] + 1.0 and losses[-t] > losses[0.0] + 1.0
        # convex along the line: further away costs more
        assert losses[0.3] > losses[0.1] and losses[-0.3] > losses[-0.1]


def _value_and_grad(name, model, measured, params):
    def total(m):
        return jnp.sum(NOISE_LOSSES[name](jnp, m, measured, params))

    return jax.value_and_grad(total)(model)


@pytest.mark.parametrize("name", MODELS)
def test_finite_at_zero_model_and_zero_measured(name):
    zeros = jnp.zeros((2, 8, 8), jnp.float32)
    value, grad = _value_and_grad(name, zeros, zeros, _params(name))
    assert np.isfinite(float(value)) and bool(jnp.all(jnp.isfinite(grad)))
    assert abs(float(value)) < 1e-6


@pytest.mark.parametrize("name", MODELS)
def test_finite_at_zero_model_with_counts_measured(name):
    measured = jnp.asarray(_measured()[:, :8, :8]).at[:, 0, :].set(0.0)
    zeros = jnp.zeros_like(measured)
    value, grad = _value_and_grad(name, zeros, measured, _params(name))
    assert np.isfinite(float(value)) and float(value) > 0
    assert bool(jnp.all(jnp.isfinite(grad)))


@pytest.mark.parametrize("name", ["amplitude", "anscombe"])
def test_amplitude_with_zero_eps_is_finite(name):
    measured = jnp.asarray(_measured()[:, :8, :8]).at[:, 0, :].set(0.0)
    params = _params(name, eps=0.0, offset=0.0)
    for model in (jnp.zeros_like(measured), measured, measured * 1.1):
        for meas in (measured, jnp.zeros_like(measured)):
            value, grad = _value_and_grad(name, model, meas, params)
            assert np.isfinite(float(value)) and bool(jnp.all(jnp.isfinite(grad)))


def test_poisson_rejects_zero_eps():
    with pytest.raises(pydantic.ValidationError):
        PoissonNoiseProps(eps=0.0)


def test_poisson_is_negative_log_likelihood_up_to_a_constant():
    measured = _measured(3).astype(np.float64)
    rng = np.random.default_rng(4)
    a = measured * rng.uniform(0.5, 1.5, size=measured.shape)
    b = measured * rng.uniform(0.5, 1.5, size=measured.shape)
    params = {"eps": 1e-9}
    la = NOISE_LOSSES["poisson"](np, a, measured, params)
    lb = NOISE_LOSSES["poisson"](np, b, measured, params)

    def nll(model):  # -log P(measured | model) without the log(M!) term
        return np.sum(model - measured * np.log(model), axis=(-2, -1))

    np.testing.assert_allclose(la - lb, nll(a) - nll(b), rtol=1e-8)


def test_amplitude_and_gaussian_values():
    measured = _measured(5).astype(np.float64)
    model = measured + 2.0
    amp = NOISE_LOSSES["amplitude"](np, model, measured, {"eps": 0.0, "offset": 0.0, "gaussian_variance": 0.1})
    expected = 2.0 / 1.1 * np.sum((np.sqrt(model) - np.sqrt(measured)) ** 2, axis=(-2, -1))
    np.testing.assert_allclose(amp, expected, rtol=1e-10)
    gauss = NOISE_LOSSES["gaussian"](np, model, measured, {"eps": 0.0, "offset": 0.0})
    expected = np.sum(4.0 * np.ones_like(measured), axis=(-2, -1)) / (2 * measured.mean(axis=(-2, -1)))
    np.testing.assert_allclose(gauss, expected, rtol=1e-10)
