"""The conventional engines (ePIE/3PIE, LSQML) and their position refinement, run end to end.

Datasets: 8x8 scans of 32x32 patterns (200 kV, 20 mrad, 100 A defocus, 2 mrad/px, 0.6 A steps,
1e5 electrons per pattern with Poisson noise). Phase-error bounds are about 1.7x the values
measured when the tests were written (noted beside each bound).
"""

from __future__ import annotations

from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from phaser.engines.conventional.arrays import add_patches, scatter_add
from phaser.engines.conventional.forward import Setup, StepOptions, Variables, forward_group
from phaser.engines.conventional.noise_updates import WAVE_UPDATES
from phaser.engines.conventional.positions import position_step
from phaser.engines.forward_jax import model_intensity, tilted_propagators
from phaser.noise import NOISE_LOSSES, NOISE_PROPS
from phaser.observers import CallbackObserver
from phaser.physics.grids import fft_frequencies
from phaser.physics.multislice import forward_intensity
from phaser.physics.propagation import fresnel_propagator
from phaser.plan import validate_plan
from phaser.run import run_plan
from phaser.simulate import SimulatedDataset, simulate_dataset
from phaser.simulate.files import write_dataset
from tests.helpers import phase_error

SIM = {
    "kv": 200.0,
    "conv_angle_mrad": 20.0,
    "defocus_A": 100.0,
    "diff_step_mrad": 2.0,
    "scan_step_A": 0.6,
    "pattern_shape": (32, 32),
    "scan_shape": (8, 8),
    "dose_per_pattern": 1e5,
    "seed": 0,
}
TWO_SLICES = {"n": 2, "slice_thickness": 10.0}


def _dataset(tmp_path_factory: pytest.TempPathFactory, name: str, **changes) -> tuple[Path, SimulatedDataset]:
    ds = simulate_dataset(**{**SIM, **changes})
    return write_dataset(ds, tmp_path_factory.mktemp("data") / f"{name}.h5"), ds


@pytest.fixture(scope="module")
def one_slice(tmp_path_factory):
    return _dataset(tmp_path_factory, "one_slice")


@pytest.fixture(scope="module")
def two_slices(tmp_path_factory):
    return _dataset(tmp_path_factory, "two_slices", n_slices=2, slice_thickness_A=10.0)


@pytest.fixture(scope="module")
def jittered(tmp_path_factory):
    sampling = simulate_dataset(**{**SIM, "scan_shape": (1, 1)}).sampling_A[0]
    return _dataset(tmp_path_factory, "jittered", position_jitter_A=0.3 * sampling)


def _plan(
    path: Path,
    solver: dict,
    niter: int,
    backend: str = "numpy",
    slices: dict | None = None,
    noise: str = "amplitude",
    **engine,
):
    data = {
        "name": "conv",
        "backend": backend,
        "seed": 3,
        "raw_data": {"type": "manual", "path": str(path)},
        "init": {"probe": {"type": "focused", "conv_angle": 20.0, "defocus": 100.0}},
        "engines": [
            {"type": "conventional", "niter": niter, "noise_model": {"type": noise}, "solver": solver, **engine}
        ],
    }
    if slices is not None:
        data["slices"] = slices
    return validate_plan(data)


def _summed_phase_error(state, ds: SimulatedDataset) -> float:
    recon = np.angle(np.asarray(state.object_slices)).sum(axis=0)
    return phase_error(recon, ds.object_phase.sum(axis=0), state.positions_A, ds.positions_A, ds.sampling_A)


def _assert_falling(history: list[float]) -> None:
    assert np.all(np.isfinite(history))
    assert history[-1] < 0.5 * history[0]
    # noisy at the end (stochastic groups near the noise floor), but still lower on average
    assert np.mean(history[-5:]) < np.mean(history[1:6])


# --- building blocks --------------------------------------------------------------------------


def _far_and_measured(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    far = 3 * (rng.normal(size=(3, 2, 8, 8)) + 1j * rng.normal(size=(3, 2, 8, 8)))
    model = np.sum(np.abs(far) ** 2, axis=1)
    measured = rng.poisson(model * rng.uniform(0.5, 1.5, size=model.shape))
    return far.astype(np.complex64), measured.astype(np.float32)


def _noise_params(name: str) -> dict:
    return {k: np.float32(v) for k, v in NOISE_PROPS[name]().model_dump().items()}


@pytest.mark.parametrize("name", sorted(WAVE_UPDATES))
def test_wave_update_lowers_its_loss_and_keeps_the_truth(name):
    far, measured = _far_and_measured()
    params = _noise_params(name)
    loss = NOISE_LOSSES[name]
    corrected = WAVE_UPDATES[name](np, far, measured, params)
    before = loss(np, np.sum(np.abs(far) ** 2, axis=1), measured, params)
    after = loss(np, np.sum(np.abs(corrected) ** 2, axis=1), measured, params)
    assert np.all(after < 0.5 * before)
    truth = np.sum(np.abs(far) ** 2, axis=1)
    unchanged = WAVE_UPDATES[name](np, far, truth, params)
    np.testing.assert_allclose(unchanged, far, atol=1e-3 * np.abs(far).max())


@pytest.mark.parametrize("name", sorted(WAVE_UPDATES))
@pytest.mark.parametrize("xp", [np, jnp], ids=["numpy", "jax"])
def test_wave_update_is_finite_at_zero_intensity(name, xp):
    far, measured = _far_and_measured(1)
    far[0] = 0.0  # zero model
    measured[1] = 0.0  # zero counts
    far[2, :, :4] = 0.0
    measured[2, 4:] = 0.0  # both, and mixed
    params = {k: xp.asarray(v) for k, v in _noise_params(name).items()}
    params["eps"] = xp.asarray(0.0, xp.float32) if name in ("amplitude", "anscombe") else params["eps"]
    corrected = np.asarray(WAVE_UPDATES[name](xp, xp.asarray(far), xp.asarray(measured), params))
    assert np.all(np.isfinite(corrected))
    np.testing.assert_array_equal(corrected[0], 0.0)


def test_amplitude_update_replaces_the_modulus():
    far, measured = _far_and_measured(2)
    params = {"offset": np.float32(0.0), "eps": np.float32(0.0), "gaussian_variance": np.float32(0.1)}
    corrected = WAVE_UPDATES["amplitude"](np, far, measured, params)
    np.testing.assert_allclose(np.sum(np.abs(corrected) ** 2, axis=1), measured, rtol=1e-4, atol=1e-4)
    lit = np.broadcast_to((measured > 0)[:, None], far.shape) & (np.abs(far) > 1e-3)
    np.testing.assert_allclose(np.angle(corrected[lit]), np.angle(far[lit]), atol=1e-4)


@pytest.mark.parametrize("xp", [np, jnp], ids=["numpy", "jax"])
def test_scatter_add_accumulates_repeated_indices(xp):
    index = xp.asarray([1, 0, 1, 3])
    values = xp.asarray([1 + 1j, 2.0, 3 - 2j, 4j], dtype=xp.complex64)
    out = np.asarray(scatter_add(xp, xp.zeros(5, dtype=xp.complex64), index, values))
    np.testing.assert_allclose(out, [2, 4 - 1j, 0, 4j, 0])
    patches = xp.ones((2, 3, 3), dtype=xp.float32)
    summed = np.asarray(add_patches(xp, (6, 6), xp.asarray([[0, 0], [2, 1]], dtype=xp.int32), patches))
    assert summed.sum() == 18 and summed[2, 1] == 2 and summed[0, 0] == 1 and summed[5, 5] == 0


def _position_props(path: Path, **values):
    plan = _plan(path, {"type": "lsqml"}, 1, position_solver={"type": "steepest_descent", **values})
    return plan.engines[0].position_solver.props


def test_position_step_clips_and_removes_the_mean_move(one_slice):
    props = _position_props(one_slice[0], step_size=1.0, max_step=0.5)
    shifts = np.array([[2.0, 0.0], [0.0, 0.1], [0.0, -0.1], [-0.3, 0.0]])
    move = position_step(np, shifts, np.zeros_like(shifts), 1, 10, props)
    np.testing.assert_allclose(move.mean(axis=0), 0.0, atol=1e-12)
    raw = move + np.array([0.05, 0.0])  # the clipped moves before the mean was removed
    assert np.all(np.linalg.norm(raw, axis=-1) <= 0.5 + 1e-9)
    heavy = _position_props(one_slice[0], step_size=1.0, max_step=10.0, momentum=0.5)
    again = position_step(np, np.zeros_like(shifts), move, 2, 10, heavy)
    np.testing.assert_allclose(again, 0.5 * move)


@pytest.mark.parametrize("tilt", [False, True])
def test_group_forward_matches_the_gradient_engines_model(tilt):
    rng = np.random.default_rng(4)
    n, n_slices = 16, 3
    obj = np.exp(1j * rng.normal(0, 0.3, (n_slices, 40, 40))).astype(np.complex64)
    probe = (rng.normal(size=(2, n, n)) + 1j * rng.normal(size=(2, n, n))).astype(np.complex64)
    positions = np.array([[15.3, 17.8], [20.6, 18.2], [30.0, 31.4]], dtype=np.float32)
    base = np.stack([fresnel_propagator(np, (n, n), (0.4, 0.4), 0.025, 20.0, dtype=np.float64)] * (n_slices - 1))
    ky, kx = fft_frequencies(np, (n, n), (0.4, 0.4), np.float64)
    tilt_mrad = rng.normal(0, 5.0, (3, 2)) if tilt else np.zeros((3, 2))
    setup = Setup(
        patterns=None,
        propagators=base.astype(np.complex64),
        thicknesses=np.full(n_slices, 20.0),
        ky=ky[:, 0],
        kx=kx[0],
        tilt_mrad=tilt_mrad.astype(np.float32),
        noise_params={},
    )
    options = StepOptions("amplitude", True, True, False, model_tilt=tilt)
    forward = forward_group(np, Variables(obj, probe, positions), np.arange(3), setup, options)
    props = tilted_propagators(
        jnp.asarray(base), jnp.full(n_slices, 20.0), jnp.asarray(ky[:, 0]), jnp.asarray(kx[0]), jnp.asarray(tilt_mrad)
    )
    expected = model_intensity(jnp.asarray(probe), jnp.asarray(obj), jnp.asarray(positions), props)
    np.testing.assert_allclose(
        np.sum(np.abs(forward.far) ** 2, axis=1), np.asarray(expected), rtol=1e-3, atol=1e-4 * float(np.max(expected))
    )


# --- whole runs -------------------------------------------------------------------------------


def test_loss_is_the_noise_loss_and_error_the_amplitude_r_factor_of_the_model(one_slice):
    path, ds = one_slice
    state = run_plan(_plan(path, {"type": "lsqml"}, 1, update_object=False, update_probe=False, grouping=8))
    patterns = ds.patterns.reshape(64, 32, 32)
    positions_px = state.positions_A / np.asarray(state.sampling_A)
    model = forward_intensity(
        np, np.asarray(state.probe_modes), np.asarray(state.object_slices), positions_px, np.ones((0, 32, 32))
    )
    measured = np.fft.ifftshift(patterns, axes=(-2, -1))
    params = NOISE_PROPS["amplitude"]().model_dump()
    expected = float(np.mean(NOISE_LOSSES["amplitude"](np, model, measured, params)))
    assert state.loss_history[0] == pytest.approx(expected, rel=1e-4)
    r_factor = np.sum((np.sqrt(model) - np.sqrt(np.maximum(measured, 0))) ** 2) / np.sum(np.maximum(measured, 0))
    assert state.error_history[0] == pytest.approx(r_factor, rel=1e-4)
    assert state.error_engines == [0] and len(state.iteration_seconds) == 1 and state.iteration_seconds[0] > 0


def test_epie_reconstructs_a_single_slice(one_slice):
    path, ds = one_slice
    # summed over a group's ~10 overlapping probes, beta 1 overshoots: ~1/overlap is stable
    state = run_plan(_plan(path, {"type": "epie", "beta_object": 0.3, "beta_probe": 0.3}, 20, grouping=16))
    _assert_falling(state.error_history)
    assert _summed_phase_error(state, ds) < 0.045  # measured 0.027 (truth phase std 0.16 rad)


def test_lsqml_reconstructs_a_single_slice(one_slice):
    path, ds = one_slice
    state = run_plan(_plan(path, {"type": "lsqml"}, 20, grouping=16))
    _assert_falling(state.error_history)
    assert _summed_phase_error(state, ds) < 0.045  # measured 0.0275


@pytest.mark.parametrize(
    "solver", [{"type": "epie", "beta_object": 0.3, "beta_probe": 0.3}, {"type": "lsqml"}], ids=["epie", "lsqml"]
)
def test_two_slices_converge(two_slices, solver):
    path, ds = two_slices
    state = run_plan(_plan(path, solver, 30, grouping=16, slices=TWO_SLICES))
    assert state.n_slices == 2
    _assert_falling(state.error_history)
    # 10 A apart at 20 mrad the slices are not resolved in depth; their sum is
    assert _summed_phase_error(state, ds) < 0.02  # measured 0.010 (epie), 0.0115 (lsqml)


@pytest.mark.parametrize(
    ("solver", "slices", "engine"),
    [
        ({"type": "epie", "beta_object": 0.3}, None, {}),
        ({"type": "lsqml"}, None, {}),
        ({"type": "lsqml", "stochastic": False}, None, {}),
        (
            {"type": "lsqml"},
            TWO_SLICES,
            {"update_positions": True, "position_solver": {"type": "steepest_descent", "step_size": 1.0}},
        ),
    ],
    ids=["epie", "lsqml", "lsqml-full-batch", "lsqml-2-slices-positions"],
)
def test_numpy_and_jax_give_the_same_iterate(one_slice, solver, slices, engine):
    path, _ = one_slice
    states = {
        backend: run_plan(_plan(path, solver, 2, backend, slices=slices, grouping=16, **engine))
        for backend in ("numpy", "jax")
    }
    a, b = states["numpy"], states["jax"]
    np.testing.assert_allclose(a.error_history, b.error_history, rtol=1e-4)
    np.testing.assert_allclose(np.asarray(b.object_slices), np.asarray(a.object_slices), atol=1e-4)
    probe_a, probe_b = np.asarray(a.probe_modes), np.asarray(b.probe_modes)
    np.testing.assert_allclose(probe_b, probe_a, atol=1e-4 * np.abs(probe_a).max())
    np.testing.assert_allclose(b.positions_A, a.positions_A, atol=1e-5)


def test_lsqml_step_does_not_shrink_with_the_group_size(one_slice):
    path, _ = one_slice

    def phase_amplitude(grouping: int) -> float:
        state = run_plan(_plan(path, {"type": "lsqml"}, 3, grouping=grouping))
        phase = np.angle(np.asarray(state.object_slices))[0]
        pos = state.positions_A / np.asarray(state.sampling_A)
        lo, hi = np.ceil(pos.min(axis=0)).astype(int), np.floor(pos.max(axis=0)).astype(int)
        return float(np.std(phase[lo[0] : hi[0], lo[1] : hi[1]]))

    small, large = phase_amplitude(8), phase_amplitude(64)
    assert 1 / 1.5 < small / large < 1.5  # measured 0.120 / 0.103


def test_position_correction_reduces_the_position_error(jittered):
    path, ds = jittered
    plan = _plan(
        path,
        {"type": "lsqml"},
        30,
        grouping=16,
        update_positions={"after": 5},
        position_solver={"type": "steepest_descent", "step_size": 3.0},
    )
    state = run_plan(plan)

    def rms_error_px(positions_A: np.ndarray) -> float:
        diff = positions_A - ds.positions_A
        diff -= diff.mean(axis=0)  # the frames differ by a constant offset
        return float(np.sqrt(np.mean(np.sum(diff**2, axis=-1)))) / ds.sampling_A[0]

    before, after = rms_error_px(state.initial_positions_A), rms_error_px(state.positions_A)
    assert before == pytest.approx(0.415, abs=0.01)  # the initial positions were kept
    assert after < 0.8 * before  # measured 0.415 -> 0.25 px
    np.testing.assert_allclose(np.mean(state.positions_A - state.initial_positions_A, axis=0), 0.0, atol=1e-4)


@pytest.mark.parametrize("solver", [{"type": "epie", "beta_object": 0.3}, {"type": "lsqml"}], ids=["epie", "lsqml"])
def test_poisson_noise_model_runs(one_slice, solver):
    path, _ = one_slice
    state = run_plan(_plan(path, solver, 8, grouping=16, noise="poisson"))
    assert np.all(np.isfinite(np.asarray(state.object_slices))) and np.all(np.isfinite(state.probe_modes))
    assert state.error_history[-1] < 0.5 * state.error_history[0]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_divergence_raises_and_keeps_the_last_finite_iterate(one_slice):
    path, _ = one_slice
    seen = []
    plan = _plan(path, {"type": "epie", "beta_object": 2.0}, 40, grouping=64)
    with pytest.raises(FloatingPointError, match="lower beta_object"):
        run_plan(plan, [CallbackObserver(lambda state, i, niter: seen.append(state))])
    state = seen[-1]
    assert 0 < state.iteration < 40 and len(state.error_history) == state.iteration
    assert np.all(np.isfinite(state.error_history))
    assert np.all(np.isfinite(np.asarray(state.object_slices))) and np.all(np.isfinite(state.probe_modes))
