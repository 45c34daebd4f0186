"""A gradient-engine plan's numbers mean what they mean in the original phaser package (phaserem).

There the gradient a solver sees is the group's summed gradient divided by the group's size, and,
for the object, positions and tilt, also by the probe's intensity ``sum |P|^2`` (electrons per
pattern): a learning rate is a step per unit of the mean per-position gradient per electron. A
scale-free solver (Adam) hardly notices (only through its ``eps``), but SGD, its momentum and any
solver with an absolute scale take steps ``G * sum |P|^2`` (object) or ``G`` (probe) times too
large without it. One SGD step (learning rate ``lr``) is compared with the step computed here
from the reference forward model (:func:`phaser.physics.multislice.forward_intensity`) and
``jax.grad``: ``-lr * conj(dL/dX) / (G * sum |P|^2)`` for the object and ``-lr * conj(dL/dP) / G``
for the probe, ``L`` the Poisson loss summed over the group. Data: 16 positions, 32x32 patterns.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from phaser.backend import get_backend
from phaser.engines.context import EngineContext
from phaser.engines.loop import engine_implementation
from phaser.noise import poisson_loss
from phaser.observers import ObserverSet
from phaser.physics.multislice import forward_intensity
from phaser.plan import validate_plan
from phaser.state import ReconsState

N = 32  # pattern side [px]
SAMPLING_A = 0.25
WAVELENGTH_A = 0.025079  # 200 kV (REFERENCE.md)
COUNTS = 1e4  # electrons per pattern
EPS = 0.1  # Poisson eps of the plan
# two clusters of 8 integer positions [px], 48 px apart: their 32 px windows never overlap, so the
# second group's object gradient does not depend on the first group's update
CLUSTER = np.array([(y, x) for y in (20, 23) for x in (20, 22, 24, 26)], dtype=np.float64)
POSITIONS_PX = np.concatenate([CLUSTER, CLUSTER + (0.0, 48.0)])
OBJECT_SHAPE = (1, 40, 94)


def _probe() -> np.ndarray:
    """A defocused disc probe ``(1, N, N)`` holding :data:`COUNTS` electrons, centred at ``N//2``."""
    k = np.fft.fftfreq(N, SAMPLING_A)
    k2 = k[:, None] ** 2 + k[None, :] ** 2
    spectrum = (k2 <= (0.02 / WAVELENGTH_A) ** 2) * np.exp(-1j * np.pi * WAVELENGTH_A * 60.0 * k2)
    probe = np.fft.fftshift(np.fft.ifft2(spectrum))
    return (probe * np.sqrt(COUNTS / np.sum(np.abs(probe) ** 2)))[None].astype(np.complex64)


def _measured(probe: np.ndarray) -> np.ndarray:
    """Noiseless patterns ``(P, N, N)`` (centred) of a weak random phase object."""
    rng = np.random.default_rng(1)
    truth = np.exp(0.3j * rng.standard_normal(OBJECT_SHAPE))
    intensity = forward_intensity(np, probe, truth, POSITIONS_PX, np.ones((0, N, N)))
    return np.fft.fftshift(intensity, axes=(-2, -1)).astype(np.float32)


def _one_step(grouping: int, solvers: dict, update_probe: bool, update_object: bool) -> tuple[ReconsState, dict]:
    """The state before and the variables after one iteration of a gradient engine with ``solvers``."""
    probe = _probe()
    state = ReconsState(
        kv=200.0,
        wavelength_A=WAVELENGTH_A,
        sampling_A=(SAMPLING_A, SAMPLING_A),
        probe_modes=probe,
        object_slices=np.ones(OBJECT_SHAPE, dtype=np.complex64),
        slice_thicknesses_A=np.array([10.0]),
        positions_A=POSITIONS_PX * SAMPLING_A,
        initial_positions_A=POSITIONS_PX * SAMPLING_A,
        tilt_mrad=np.zeros_like(POSITIONS_PX),
    )
    engine = {
        "type": "gradient",
        "niter": 1,
        "grouping": grouping,
        "compact": True,  # the two clusters are the two groups
        "shuffle_groups": False,
        "noise_model": {"type": "poisson", "eps": EPS},
        "solvers": solvers,
        "update_probe": update_probe,
        "update_object": update_object,
    }
    plan = validate_plan(
        {
            "name": "meaning",
            "backend": "jax",
            "raw_data": {"type": "manual", "path": "unused.npy"},
            "init": {"probe": {"type": "focused", "conv_angle": 20.0}},  # unused: the state is given
            "engines": [engine],
        },
        check_files=False,
    )
    ctx = EngineContext(get_backend("jax", "float32"), np.random.default_rng(0), ObserverSet([]))
    implementation = engine_implementation("gradient")
    engine_state = implementation.init(plan.engines[0], state, _measured(probe), ctx)
    after, _ = implementation.step(engine_state, 1)
    return state, {name: np.asarray(value) for name, value in after.variables.items()}


def _loss_gradients(state: ReconsState, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``conj(dL/dO)`` and ``conj(dL/dP)`` (the ascent directions) of the summed Poisson loss of ``indices``."""
    measured = jnp.asarray(np.fft.ifftshift(_measured(state.probe_modes), axes=(-2, -1))[indices])
    positions = jnp.asarray(POSITIONS_PX[indices], dtype=jnp.float32)

    def loss(obj, probe):
        model = forward_intensity(jnp, probe, obj, positions, jnp.ones((0, N, N), jnp.complex64))
        return jnp.sum(poisson_loss(jnp, model, measured, {"eps": EPS}))

    grad_object, grad_probe = jax.grad(loss, argnums=(0, 1))(
        jnp.asarray(state.object_slices), jnp.asarray(state.probe_modes)
    )
    return np.conj(np.asarray(grad_object)), np.conj(np.asarray(grad_probe))


def _relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    return float(np.linalg.norm(actual - expected) / np.linalg.norm(expected))


def test_object_step_is_the_group_mean_gradient_per_probe_electron() -> None:
    learning_rate = 20.0
    start, after = _one_step(8, {"object": {"type": "sgd", "learning_rate": learning_rate}}, False, True)
    ascent, _ = _loss_gradients(start, np.arange(len(POSITIONS_PX)))
    probe_electrons = float(np.sum(np.abs(start.probe_modes) ** 2))
    expected = -learning_rate * ascent / (8 * probe_electrons)
    step = after["object"] - start.object_slices
    assert 1e-2 < np.abs(step).max() < 0.3  # a step well above float32 rounding, still small
    # unnormalised: 8 * 1e4 times larger; normalised by all 16 positions instead of the group's 8: half
    assert _relative_error(step, expected) < 1e-3


def test_probe_step_is_the_group_mean_gradient() -> None:
    learning_rate = 0.2
    start, after = _one_step(16, {"probe": {"type": "sgd", "learning_rate": learning_rate}}, True, False)
    _, ascent = _loss_gradients(start, np.arange(len(POSITIONS_PX)))
    expected = -learning_rate * ascent / len(POSITIONS_PX)
    step = after["probe"] - start.probe_modes
    assert 1e-3 < np.abs(step).max() / np.abs(start.probe_modes).max() < 0.3
    # unnormalised: 16 times larger; also divided by the probe's intensity: 1e4 times smaller
    assert _relative_error(step, expected) < 1e-3


@pytest.mark.parametrize("eps", [1e-8, 1e-3])
def test_adam_eps_is_compared_with_the_normalised_gradient(eps: float) -> None:
    """Adam's first step is ``lr * g / (|g| + eps)``: ``eps`` damps it only at the normalised scale."""
    solver = {"type": "adam", "learning_rate": 0.01, "eps": eps}
    start, after = _one_step(16, {"object": solver}, False, True)  # one group: Adam's very first step
    ascent, _ = _loss_gradients(start, np.arange(len(POSITIONS_PX)))
    normalised = np.abs(ascent) / (16 * float(np.sum(np.abs(start.probe_modes) ** 2)))
    lit = normalised > 1e-3 * normalised.max()
    expected = 0.01 * normalised[lit] / (normalised[lit] + eps)
    np.testing.assert_allclose(np.abs(after["object"] - start.object_slices)[lit], expected, rtol=2e-3, atol=2e-6)
