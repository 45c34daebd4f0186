"""Cost regularizers: each pulls its quantity the right way, alone and beside a data term."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from phaser import regularizers
from phaser.engines.forward_jax import model_intensity
from phaser.noise import poisson_loss
from phaser.physics.propagation import gap_propagators
from phaser.regularizers import COST_REGULARIZERS, SmoothWeightProps, WeightProps
from phaser.simulate.dataset import simulate_dataset

CANONICAL = {
    "obj_tikh": "obj_tikhonov",
    "layers_tikh": "layers_tikhonov",
    "probe_phase_tikh": "probe_phase_tikhonov",
    "probe_recip_tikh": "probe_recip_tikhonov",
}
NAMES = [name for name in COST_REGULARIZERS if name not in CANONICAL]


# --- measures of what each term targets (numpy, no smoothing) ------------------------------------


def _spectrum(probe: np.ndarray) -> np.ndarray:
    return np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(probe, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))


def _lateral_tv(a: np.ndarray) -> float:
    dy, dx = np.diff(a, axis=-2)[..., :, :-1], np.diff(a, axis=-1)[..., :-1, :]
    return float(np.sum(np.sqrt(np.abs(dy) ** 2 + np.abs(dx) ** 2)))


def _wrapped_phase_steps(a: np.ndarray) -> np.ndarray:
    dy = np.angle(a[..., 1:, :] * np.conj(a[..., :-1, :]))[..., :, :-1]
    dx = np.angle(a[..., :, 1:] * np.conj(a[..., :, :-1]))[..., :-1, :]
    return np.sqrt(dy**2 + dx**2)


def _probe_phase_roughness(probe: np.ndarray) -> float:
    spectrum = _spectrum(probe)
    amp = np.abs(spectrum)
    bright = (amp > 0.3 * amp.max())[..., :-1, :-1] & (amp > 0.3 * amp.max())[..., 1:, 1:]
    return float(np.mean(_wrapped_phase_steps(spectrum)[bright]))


TARGETS = {
    "obj_l1": lambda v: np.mean(np.abs(v["object"] - 1)),
    "obj_l2": lambda v: np.mean(np.abs(v["object"] - 1) ** 2),
    "obj_phase_l1": lambda v: np.mean(np.abs(np.angle(v["object"]))),
    "obj_recip_l1": lambda v: np.mean(
        np.abs(np.fft.fft2(v["object"] - v["object"].mean(axis=(-2, -1), keepdims=True)))
    ),
    "obj_tikhonov": lambda v: (
        np.sum(np.abs(np.diff(v["object"], axis=-1)) ** 2) + np.sum(np.abs(np.diff(v["object"], axis=-2)) ** 2)
    ),
    "obj_tv": lambda v: _lateral_tv(v["object"]),
    "obj_phase_tikhonov": lambda v: np.sum(_wrapped_phase_steps(v["object"]) ** 2),
    "obj_phase_tv": lambda v: np.sum(_wrapped_phase_steps(v["object"])),
    "layers_tikhonov": lambda v: np.sum(np.abs(np.diff(v["object"], axis=0)) ** 2),
    "layers_tv": lambda v: np.sum(np.abs(np.diff(v["object"], axis=0))),
    "probe_phase_tikhonov": lambda v: _probe_phase_roughness(v["probe"]),
    "probe_phase_tv": lambda v: _probe_phase_roughness(v["probe"]),
    "probe_recip_tikhonov": lambda v: _lateral_tv(np.abs(_spectrum(v["probe"]))),
    "probe_recip_tv": lambda v: _lateral_tv(np.abs(_spectrum(v["probe"]))),
}


def _params(name: str, weight: float = 1.0) -> dict[str, float]:
    props = COST_REGULARIZERS[name][1](weight=weight)
    return {k: float(v) for k, v in props.model_dump().items()}


def _all_terms(variables: dict) -> jnp.ndarray:
    return jnp.stack([COST_REGULARIZERS[name][0](jnp, variables, _params(name)) for name in NAMES])


@pytest.fixture(scope="module")
def problem() -> dict:
    """A 6x6 scan, 32x32 patterns, 2 slices, 1e4 electrons per pattern; a start with a noisy object and probe."""
    ds = simulate_dataset(
        kv=200.0,
        conv_angle_mrad=20.0,
        defocus_A=100.0,
        diff_step_mrad=2.0,
        scan_step_A=1.0,
        scan_shape=(6, 6),
        n_slices=2,
        slice_thickness_A=10.0,
        dose_per_pattern=1e4,
        seed=4,
    )
    rng = np.random.default_rng(5)
    start_object = (
        (1 + 0.05 * rng.normal(size=ds.object.shape)) * ds.object * np.exp(0.3j * rng.normal(size=ds.object.shape))
    )
    noise = (1 + 0.05 * rng.normal(size=(32, 32))) * np.exp(0.3j * rng.normal(size=(32, 32)))
    start_probe = np.fft.ifft2(np.fft.fft2(ds.probe_modes) * noise)
    return {
        "patterns": jnp.asarray(np.fft.ifftshift(ds.patterns.reshape(-1, 32, 32), axes=(-2, -1))),
        "positions": jnp.asarray(ds.positions_A / np.asarray(ds.sampling_A), jnp.float32),
        "propagators": jnp.asarray(
            gap_propagators(np, (32, 32), ds.sampling_A, ds.wavelength_A, [10.0, 10.0], None), jnp.complex64
        ),
        "start": {"object": jnp.asarray(start_object, jnp.complex64), "probe": jnp.asarray(start_probe, jnp.complex64)},
    }


def _data_loss(problem: dict, variables: dict) -> jnp.ndarray:
    model = model_intensity(variables["probe"], variables["object"], problem["positions"], problem["propagators"])
    return jnp.mean(poisson_loss(jnp, model, problem["patterns"], {"eps": 1e-3}))


MAX_STEPS = 30


@jax.jit
def _reconstruct(n_steps: int, problem: dict, weights: jnp.ndarray, data_weight: float) -> tuple:
    """Adam on ``data_weight * data + sum(weights * terms)``, descent direction ``-conj(grad)`` as in the engine.

    Runs the first ``n_steps`` of ``MAX_STEPS`` (traced, so one compiled program serves every run) and
    returns the final data loss, terms and variables.
    """
    solver = optax.adam(0.02)

    def loss(variables):
        return data_weight * _data_loss(problem, variables) + jnp.sum(weights * _all_terms(variables))

    def step(carry, i):
        variables, state = carry
        grads = jax.tree_util.tree_map(jnp.conj, jax.grad(loss)(variables))
        updates, state = solver.update(grads, state, variables)
        # Adam steps are absolute: the probe's are scaled to its size (|O| ~ 1)
        updates = {"object": updates["object"], "probe": updates["probe"] * 0.5 * probe_size}
        stepped = (optax.apply_updates(variables, updates), state)
        return jax.tree_util.tree_map(lambda a, b: jnp.where(i < n_steps, a, b), stepped, carry), None

    start = problem["start"]
    probe_size = jnp.maximum(jnp.max(jnp.abs(start["probe"])), 1.0)
    (end, _), _ = jax.lax.scan(step, (start, solver.init(start)), jnp.arange(MAX_STEPS))
    return _data_loss(problem, end), _all_terms(end), end


def _run(problem: dict, n_steps: int, weights: np.ndarray, data_weight: float) -> tuple:
    data, terms, end = _reconstruct(n_steps, problem, jnp.asarray(weights, jnp.float32), data_weight)
    return float(data), np.asarray(terms), {k: np.asarray(v) for k, v in end.items()}


@pytest.fixture(scope="module")
def runs(problem: dict) -> dict:
    """Per term: 30 steps on the term alone, and on the data plus the term at a moderate weight."""
    none = np.zeros(len(NAMES))
    start_data, start_terms, _ = _run(problem, 0, none, 1.0)
    # moderate: each term starts at 10% of the data term
    moderate = 0.1 * start_data / np.maximum(start_terms, 1e-12)
    out = {"start_data": start_data, "start_terms": start_terms, "plain": _run(problem, 30, none, 1.0)}
    for k, name in enumerate(NAMES):
        one_hot = np.eye(len(NAMES))[k]
        out[name] = {
            "alone": _run(problem, 30, one_hot, 0.0),
            "with_data": _run(problem, 30, one_hot * moderate[k], 1.0),
        }
    return out


def _as_numpy(variables: dict) -> dict[str, np.ndarray]:
    return {k: np.asarray(v) for k, v in variables.items()}


@pytest.mark.parametrize("name", NAMES)
def test_descent_on_the_term_alone_lowers_it_and_its_target(name: str, problem: dict, runs: dict) -> None:
    k = NAMES.index(name)
    _, terms, end = runs[name]["alone"]
    assert np.isfinite(terms[k])
    assert terms[k] < 0.95 * runs["start_terms"][k]
    assert TARGETS[name](end) < 0.95 * TARGETS[name](_as_numpy(problem["start"]))


@pytest.mark.parametrize("name", NAMES)
def test_with_the_data_term_the_fit_stays_good_and_the_term_lower(name: str, runs: dict) -> None:
    k = NAMES.index(name)
    plain_data, plain_terms, _ = runs["plain"]
    assert plain_data < 0.8 * runs["start_data"]
    data, terms, _ = runs[name]["with_data"]
    assert np.isfinite(data)
    assert data < 1.5 * plain_data
    assert terms[k] < plain_terms[k]


def test_every_term_is_finite_with_a_finite_gradient_even_at_zero(problem: dict, runs: dict) -> None:
    """A step from all-zero variables (and from the start) with every term on stays finite (Adam passes NaNs on)."""
    zero = {**problem, "start": jax.tree_util.tree_map(jnp.zeros_like, problem["start"])}
    for start in (zero, problem):
        _, terms, end = _run(start, 1, np.ones(len(NAMES)), 0.0)
        assert np.all(np.isfinite(terms))
        assert all(np.all(np.isfinite(v)) for v in end.values())


def test_numpy_and_jax_agree(problem: dict, runs: dict) -> None:
    variables = _as_numpy(problem["start"])
    for k, name in enumerate(NAMES):
        on_numpy = COST_REGULARIZERS[name][0](np, variables, _params(name))
        assert float(on_numpy) == pytest.approx(runs["start_terms"][k], rel=1e-4), name


def test_aliases_share_the_canonical_function_and_props() -> None:
    for alias, canonical in CANONICAL.items():
        assert COST_REGULARIZERS[alias] == COST_REGULARIZERS[canonical]


def test_weight_is_also_accepted_as_cost_and_is_required() -> None:
    assert WeightProps.model_validate({"cost": 0.3}).weight == 0.3
    assert SmoothWeightProps.model_validate({"weight": {"type": "constant", "value": 2.0}, "eps": 1e-8}).eps == 1e-8
    with pytest.raises(ValueError, match="weight"):
        WeightProps.model_validate({})


def test_phase_terms_ignore_phase_wraps() -> None:
    """A phase ramp of 0.3 rad/px wraps through pi many times yet costs only its slope."""
    ramp = np.exp(0.3j * np.arange(32))[None, None, :] * np.ones((1, 32, 1))
    variables = {"object": ramp.astype(np.complex64)}
    params = {"weight": 1.0, "eps": 1e-12}
    assert regularizers.obj_phase_tikhonov(np, variables, params) == pytest.approx(32 * 31 * 0.3**2, rel=1e-4)
    assert regularizers.obj_phase_tv(np, variables, params) == pytest.approx(31 * 31 * 0.3, rel=1e-4)
