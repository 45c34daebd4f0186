"""Constraints: each does its one job, on numpy and jax alike, and jit-compiles once."""

from __future__ import annotations

from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from phaser import constraints
from phaser.constraints import CONSTRAINTS, ConstraintContext, constraint_numbers
from phaser.hooks import FreeProps, load_function

SAMPLING = (0.25, 0.3)
WAVELENGTH = 0.025
SCAN = (4, 5)


def _initial_positions() -> np.ndarray:
    rows, cols = np.meshgrid(np.arange(SCAN[0]) * 4.0 + 14.0, np.arange(SCAN[1]) * 3.5 + 13.0, indexing="ij")
    return np.stack([rows, cols], axis=-1).reshape(-1, 2)


def _context(scan_shape: tuple[int, int] | None = SCAN, thicknesses: tuple[float, ...] = (10.0, 10.0, 10.0)):
    return ConstraintContext(SAMPLING, WAVELENGTH, np.asarray(thicknesses), scan_shape, _initial_positions())


def _variables(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    shape = (3, 40, 44)
    obj = (1 + 0.3 * rng.normal(size=shape)) * np.exp(1j * rng.normal(0, 0.5, shape))
    probe = rng.normal(size=(2, 16, 16)) + 1j * rng.normal(size=(2, 16, 16))
    return {
        "object": obj.astype(np.complex64),
        "probe": probe.astype(np.complex64),
        "positions": (_initial_positions() + rng.normal(0, 0.3, (20, 2))).astype(np.float32),
        "tilt": rng.normal(0, 1, (20, 2)).astype(np.float32),
    }


def _apply(name: str, variables: dict, context: ConstraintContext | None = None, xp=np, **props) -> dict:
    function, props_class = CONSTRAINTS[name]
    params = {k: xp.asarray(v, dtype=xp.float32) for k, v in props_class(**props).numbers(1, 10).items()}
    return function(xp, variables, params, context or _context())


EXAMPLES = {
    "clamp_object_amplitude": [{"amplitude": [0.8, 1.1]}, {"amplitude": [0.7, 1.2]}],
    "limit_probe_support": [{"max_angle": 20.0}, {"max_angle": 30.0}],
    "probe_support_recip": [{"max_angle": 20.0}, {"max_angle": 30.0, "edge_mrad": 3.0}],
    "probe_support_real": [{"radius_frac": 0.5}, {"radius_frac": 0.7}],
    "layers": [{"sigma": 10.0}, {"sigma": 20.0, "weight": 0.5}],
    "obj_low_pass": [{}, {"max_freq": 0.2, "edge": 0.2}],
    "obj_gaussian": [{"sigma": 1.0}, {"sigma": 2.0, "weight": 0.5}],
    "remove_phase_ramp": [{}, {"per_slice": False}],
    "nonneg_object_phase": [{}, {"weight": 0.5}],
    "tilt_gaussian": [{"sigma_positions": 1.0}, {"sigma_positions": 2.0}],
    "positions_affine": [{}, {"weight": 0.5}],
    "positions_lines": [{}, {"weight": 0.5}],
}


# --- every constraint -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CONSTRAINTS))
def test_jax_jit_matches_numpy_and_compiles_once_for_new_numbers(name: str) -> None:
    function, props_class = CONSTRAINTS[name]
    context = _context()
    traces = []

    @jax.jit
    def constrained(variables, params):
        traces.append(1)
        return function(jnp, variables, params, context)

    variables = _variables()
    results = []
    for example in EXAMPLES[name]:
        numbers = props_class(**example).numbers(1, 10)
        on_jax = constrained(variables, {k: jnp.asarray(v, jnp.float32) for k, v in numbers.items()})
        on_numpy = function(np, variables, {k: np.float32(v) for k, v in numbers.items()}, context)
        for key, value in on_numpy.items():
            assert value.dtype == variables[key].dtype, key
            np.testing.assert_allclose(np.asarray(on_jax[key]), value, atol=1e-5, rtol=1e-5, err_msg=key)
        results.append(on_numpy)
    assert len(traces) == 1
    changed = [k for k in variables if not np.array_equal(results[0][k], variables[k])]
    assert changed, "the constraint changed nothing"
    assert any(not np.allclose(results[0][k], results[1][k]) for k in changed), "the numbers have no effect"


@pytest.mark.parametrize("name", list(CONSTRAINTS))
def test_is_functional_registered_by_reference_and_keeps_what_it_does_not_know(name: str) -> None:
    function, _ = CONSTRAINTS[name]
    assert load_function(f"phaser.constraints:{function.__name__}") is function
    variables = _variables()
    copies = {k: v.copy() for k, v in variables.items()}
    out = _apply(name, variables, **EXAMPLES[name][0])
    assert set(out) == set(variables)
    for key in variables:
        np.testing.assert_array_equal(variables[key], copies[key])  # inputs untouched
    if name in ("tilt_gaussian", "positions_affine", "positions_lines"):
        without = {k: v for k, v in variables.items() if k not in ("tilt", "positions")}
        assert _apply(name, without, **EXAMPLES[name][0]) is without


# --- object ---------------------------------------------------------------------------------------


def test_clamp_keeps_amplitude_in_bounds_and_the_phase() -> None:
    variables = _variables()
    variables["object"][0, 0, 0] = 0.0
    out = _apply("clamp_object_amplitude", variables, amplitude=[0.8, 1.1])["object"]
    amp = np.abs(out)
    assert amp.min() >= 0.8 - 1e-6 and amp.max() <= 1.1 + 1e-6
    inside = np.abs(variables["object"]) > 0
    np.testing.assert_allclose(np.angle(out[inside]), np.angle(variables["object"][inside]), atol=1e-5)
    assert out[0, 0, 0] == pytest.approx(0.8)
    only_max = _apply("clamp_object_amplitude", variables, amplitude=1.1)["object"]  # the original's form
    assert np.abs(only_max).max() <= 1.1 + 1e-6 and np.abs(only_max).min() < 0.5


def test_layers_blur_reduces_depth_variation_without_wrapping() -> None:
    rng = np.random.default_rng(1)
    phase = np.zeros((6, 16, 16))
    phase[0] = rng.uniform(0.5, 1.0, (16, 16))  # only the first slice has structure
    variables = {"object": np.exp(1j * phase).astype(np.complex64)}
    context = _context(thicknesses=(10.0,) * 6)
    out = _apply("layers", variables, context, sigma=10.0, weight=1.0)["object"]
    assert np.sum(np.abs(np.diff(np.angle(out), axis=0))) < 0.7 * np.sum(np.abs(np.diff(phase, axis=0)))
    assert np.abs(np.angle(out[1])).mean() > 0.1  # the neighbour got some
    assert np.abs(np.angle(out[-1])).max() < 1e-4  # the far end did not: no wrap-around
    # a depth-uniform object is unchanged: the kernel is renormalised at the ends
    uniform = {"object": np.repeat(np.exp(1j * phase[:1]), 6, axis=0).astype(np.complex64)}
    np.testing.assert_allclose(_apply("layers", uniform, context, sigma=30.0)["object"], uniform["object"], atol=1e-5)
    single = {"object": variables["object"][:1]}
    assert _apply("layers", single, _context(thicknesses=(10.0,)), sigma=10.0) is single


def test_low_pass_removes_the_high_frequencies_only() -> None:
    variables = _variables()
    obj = variables["object"]
    cycles_y = np.fft.fftfreq(40)[:, None]
    cycles_x = np.fft.fftfreq(44)[None, :]
    k = np.hypot(cycles_y, cycles_x)
    out = _apply("obj_low_pass", variables, max_freq=0.2)["object"]
    spectrum, before = np.fft.fft2(out), np.fft.fft2(obj)
    assert np.abs(spectrum[:, k > 0.2 + 1e-6]).max() < 1e-3 * np.abs(before).max()
    np.testing.assert_allclose(spectrum[:, k < 0.2], before[:, k < 0.2], rtol=1e-4, atol=1e-2)
    # the same cutoff written as a fraction of Nyquist; a soft edge passes less above the cutoff only
    np.testing.assert_allclose(_apply("obj_low_pass", variables, cutoff_nyquist=0.4)["object"], out, atol=1e-6)
    soft = np.fft.fft2(_apply("obj_low_pass", variables, max_freq=0.2, edge=0.5)["object"])
    assert np.abs(soft[:, k > 0.3 + 1e-6]).max() < 1e-3 * np.abs(before).max()
    np.testing.assert_allclose(soft[:, k < 0.2], before[:, k < 0.2], rtol=1e-4, atol=1e-2)
    # in A: keep periods of 1 A and longer
    k_invA = np.hypot(cycles_y / SAMPLING[0], cycles_x / SAMPLING[1])
    in_A = np.fft.fft2(_apply("obj_low_pass", variables, cutoff_A=1.0)["object"])
    assert np.abs(in_A[:, k_invA > 1.0 + 1e-6]).max() < 1e-3 * np.abs(before).max()


def test_gaussian_blur_smooths_laterally_and_weight_zero_is_identity() -> None:
    variables = _variables()
    out = _apply("obj_gaussian", variables, sigma=1.0, weight=1.0)["object"]
    assert np.abs(np.diff(out, axis=-1)).mean() < 0.5 * np.abs(np.diff(variables["object"], axis=-1)).mean()
    assert np.mean(out) == pytest.approx(np.mean(variables["object"]), abs=1e-5)
    unchanged = _apply("obj_gaussian", variables, sigma=1.0, weight=0.0)["object"]
    np.testing.assert_allclose(unchanged, variables["object"], atol=1e-5)


def _fitted_ramp(phase: np.ndarray, mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    design = np.stack([np.ones_like(ys), ys, xs], axis=1).astype(float)
    return np.linalg.lstsq(design, phase[mask], rcond=None)[0]


@pytest.mark.parametrize("per_slice", [True, False])
def test_ramp_removal_leaves_no_fitted_ramp_even_when_the_phase_wraps(per_slice: bool) -> None:
    rng = np.random.default_rng(2)
    ys, xs = np.mgrid[:40, :44]
    structure = 0.3 * np.sin(ys / 3.0) * np.cos(xs / 4.0) + 0.05 * rng.normal(size=(3, 40, 44))
    ramps = np.array([0.9, -0.4, 0.6])[:, None, None] * ys + np.array([-0.7, 0.5, 0.2])[:, None, None] * xs + 2.0
    variables = {"object": (1.2 * np.exp(1j * (structure + ramps))).astype(np.complex64)}
    out = _apply("remove_phase_ramp", variables, per_slice=per_slice)["object"]
    np.testing.assert_allclose(np.abs(out), 1.2, rtol=1e-5)
    everywhere = np.ones((40, 44), bool)
    summed = np.angle(np.prod(out, axis=0))  # the summed phase (small once the ramps are gone)
    assert np.abs(_fitted_ramp(summed, everywhere)).max() < 1e-3
    if per_slice:
        for s in range(3):
            assert np.abs(_fitted_ramp(np.angle(out[s]), everywhere)).max() < 1e-3
    else:  # every slice loses the same share: the differences between the slices are kept
        before = variables["object"]
        np.testing.assert_allclose(out[0] * np.conj(out[1]), before[0] * np.conj(before[1]), atol=1e-4)


def test_ramp_is_fitted_over_the_scanned_region_when_positions_are_given() -> None:
    ys, xs = np.mgrid[:40, :44]
    region = (ys >= 10) & (ys <= 25) & (xs >= 12) & (xs <= 30)
    phase = 0.2 * ys + np.where(region, 0.0, 0.5 * np.sin(xs) + 0.05 * xs)  # a clean ramp inside, junk outside
    positions = np.array([[10.0, 12.0], [25.0, 30.0], [17.0, 20.0]], np.float32)
    variables = {"object": np.exp(1j * phase)[None].astype(np.complex64), "positions": positions}
    out = _apply("remove_phase_ramp", variables)["object"]
    assert np.abs(np.angle(out[0][region])).max() < 1e-3
    whole = _apply("remove_phase_ramp", variables, scan_region=False)["object"]
    assert np.abs(_fitted_ramp(np.angle(whole[0]), np.ones((40, 44), bool))).max() < 1e-3
    assert np.abs(np.angle(whole[0][region])).max() > 0.1


def test_nonneg_phase_clips_negative_phase_and_keeps_amplitude() -> None:
    variables = _variables()
    out = _apply("nonneg_object_phase", variables)["object"]
    assert np.angle(out).min() >= -1e-6
    np.testing.assert_allclose(np.abs(out), np.abs(variables["object"]), rtol=1e-5)
    positive = np.angle(variables["object"]) > 0
    np.testing.assert_allclose(out[positive], variables["object"][positive], atol=1e-6)
    half = _apply("nonneg_object_phase", variables, weight=0.5)["object"]
    negative = np.angle(variables["object"]) < -0.01
    np.testing.assert_allclose(np.angle(half[negative]), 0.5 * np.angle(variables["object"][negative]), atol=1e-5)


# --- probe ----------------------------------------------------------------------------------------


def test_real_space_support_zeroes_outside_the_disc() -> None:
    variables = _variables()
    ys = (np.arange(16) - 8)[:, None] * SAMPLING[0]
    xs = (np.arange(16) - 8)[None, :] * SAMPLING[1]
    r = np.hypot(ys, xs)
    out = _apply("probe_support_real", variables, radius_A=1.2, edge_A=0.5)["probe"]
    assert np.all(out[:, r >= 1.7] == 0)
    np.testing.assert_array_equal(out[:, r <= 1.2], variables["probe"][:, r <= 1.2])
    edge = (r > 1.2) & (r < 1.7)
    assert np.all(np.abs(out[:, edge]) <= np.abs(variables["probe"][:, edge]))
    # a fraction of half the smaller window side (16 * 0.25 A / 2 = 2 A)
    by_frac = _apply("probe_support_real", variables, radius_frac=0.6, edge_A=0.5)["probe"]
    np.testing.assert_array_equal(by_frac, out)
    with pytest.raises(ValueError, match="exactly one"):
        constraints.ProbeSupportRealProps(radius_A=1.0, radius_frac=0.5)


def test_aperture_zeroes_the_fourier_probe_outside() -> None:
    variables = _variables()
    ky = np.fft.fftfreq(16, SAMPLING[0])[:, None]
    kx = np.fft.fftfreq(16, SAMPLING[1])[None, :]
    angle = 1e3 * WAVELENGTH * np.hypot(ky, kx)
    before = np.fft.fft2(variables["probe"])
    for name, edge in (("limit_probe_support", 0.0), ("probe_support_recip", 1.0)):
        after = np.fft.fft2(_apply(name, variables, max_angle=40.0)["probe"])
        assert np.abs(after[:, angle > 40.0 + edge]).max() < 1e-4 * np.abs(before).max(), name
        np.testing.assert_allclose(after[:, angle <= 40.0], before[:, angle <= 40.0], atol=1e-4)
    soft_edge = (angle > 40.0) & (angle < 41.0)
    assert soft_edge.any()


# --- tilt and positions ---------------------------------------------------------------------------


@pytest.mark.parametrize("scan_shape", [SCAN, None])
def test_tilt_smoothing_lowers_variance_and_keeps_a_constant_tilt(scan_shape) -> None:
    variables = _variables()
    context = _context(scan_shape)
    out = _apply("tilt_gaussian", variables, context, sigma_positions=1.0, weight=1.0)["tilt"]
    assert np.var(out, axis=0).max() < 0.6 * np.var(variables["tilt"], axis=0).min()
    assert np.mean(out, axis=0) == pytest.approx(np.mean(variables["tilt"], axis=0), abs=0.25)
    constant = {"tilt": np.tile(np.float32([2.0, -1.0]), (20, 1))}
    np.testing.assert_allclose(
        _apply("tilt_gaussian", constant, context, sigma=5.0)["tilt"], constant["tilt"], rtol=1e-5
    )
    # sigma in A: the same smoothing as in steps when the steps are 1 A
    unit_steps = ConstraintContext((1.0, 1.0), WAVELENGTH, np.ones(1), scan_shape, _initial_positions() / [4.0, 3.5])
    in_A = _apply("tilt_gaussian", variables, unit_steps, sigma=1.0, weight=1.0)["tilt"]
    in_steps = _apply("tilt_gaussian", variables, unit_steps, sigma_positions=1.0, weight=1.0)["tilt"]
    np.testing.assert_allclose(in_A, in_steps, atol=1e-5)


def test_affine_projection_keeps_an_affine_displacement_and_removes_noise() -> None:
    rng = np.random.default_rng(3)
    initial = _initial_positions()
    matrix = np.array([[0.02, -0.03], [0.01, 0.015]])
    affine = initial @ matrix.T + np.array([0.4, -0.2])
    exact = _apply("positions_affine", {"positions": (initial + affine).astype(np.float32)})["positions"]
    np.testing.assert_allclose(exact, initial + affine, atol=1e-4)
    noise = rng.normal(0, 0.3, initial.shape)
    noisy = {"positions": (initial + affine + noise).astype(np.float32)}
    projected = _apply("positions_affine", noisy)["positions"]
    error = np.sqrt(np.mean((projected - initial - affine) ** 2))
    assert error < 0.6 * np.sqrt(np.mean(noise**2))
    again = _apply("positions_affine", {"positions": projected})["positions"]
    np.testing.assert_allclose(again, projected, atol=1e-4)  # a projection


def test_line_projection_moves_each_row_rigidly() -> None:
    variables = _variables()
    out = _apply("positions_lines", variables)["positions"]
    displacement = (out - _initial_positions()).reshape(*SCAN, 2)
    np.testing.assert_allclose(displacement, np.broadcast_to(displacement[:, :1], displacement.shape), atol=1e-5)
    before = (variables["positions"] - _initial_positions()).reshape(*SCAN, 2)
    np.testing.assert_allclose(displacement[:, 0], before.mean(axis=1), atol=1e-5)
    with pytest.raises(ValueError, match="scan shape"):
        _apply("positions_lines", variables, _context(scan_shape=None))


# --- parameters and context -----------------------------------------------------------------------


def test_props_follow_the_original_plans_and_give_numbers() -> None:
    assert constraints.ClampObjectAmplitudeProps().numbers(1, 1) == {"min": 0.0, "max": 1.1}
    assert constraints.ClampObjectAmplitudeProps(amplitude=[None, 2.0]).numbers(1, 1)["min"] == 0.0
    assert constraints.ObjLowPassProps().numbers(1, 1)["max_freq"] == 0.4
    assert constraints.LimitProbeSupportProps(max_angle=25.0).numbers(1, 1) == {"max_angle": 25.0, "edge_mrad": 0.0}
    assert constraints.LayersProps().numbers(1, 1) == {"sigma": 50.0, "weight": 0.9}
    assert constraints.RemovePhaseRampProps().numbers(1, 1) == {"per_slice": 1.0, "scan_region": 1.0}
    scheduled = constraints.ObjGaussianProps(sigma={"type": "expr", "expr": "i / 2"})
    assert scheduled.numbers(3, 10)["sigma"] == 1.5
    assert constraint_numbers(scheduled, 4, 10)["sigma"] == 2.0
    assert constraint_numbers(FreeProps(sigma=2, name="x", on=True), 1, 1) == {"sigma": 2.0, "on": 1.0}
    for bad in ({"cutoff_A": 1.0, "max_freq": 0.3}, {"max_freq": -1.0}):
        with pytest.raises(ValueError):
            constraints.ObjLowPassProps(**bad)
    with pytest.raises(ValueError, match="exactly one"):
        constraints.TiltGaussianProps()


def test_context_from_state_and_as_a_jit_argument() -> None:
    state = SimpleNamespace(
        sampling_A=(0.5, 0.25),
        wavelength_A=WAVELENGTH,
        slice_thicknesses_A=[5.0, 5.0],
        scan_shape=[2, 1],
        initial_positions_A=np.array([[1.0, 1.0], [2.0, 3.0]]),
    )
    context = ConstraintContext.from_state(state)
    assert context.scan_shape == (2, 1) and context.sampling_A == (0.5, 0.25)
    np.testing.assert_allclose(context.initial_positions_px, [[2.0, 4.0], [4.0, 12.0]])
    positions = {"positions": jnp.asarray([[2.5, 4.0], [4.5, 12.0]])}
    lines = jax.jit(lambda v, c: constraints.positions_lines(jnp, v, {"weight": 1.0}, c))(positions, context)
    np.testing.assert_allclose(lines["positions"], positions["positions"], atol=1e-6)


def test_apply_constraints_runs_them_in_order() -> None:
    variables = _variables()
    functions = (constraints.nonneg_object_phase, constraints.clamp_object_amplitude)
    params = ({"weight": 1.0}, {"min": 0.9, "max": 1.0})
    out = constraints.apply_constraints(np, functions, variables, params, _context())
    assert np.angle(out["object"]).min() >= -1e-6 and np.abs(out["object"]).max() <= 1.0 + 1e-6
