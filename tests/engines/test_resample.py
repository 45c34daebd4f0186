"""Bringing the state and the patterns to each engine's grid, probe modes and slices."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from phaser.engines.resample import (
    added_modes,
    depth_weights,
    orthogonal_modes,
    prepare_for_engine,
    resample_object,
    resize_modes,
    reslice,
)
from phaser.initial import object_shape_for, place_positions
from phaser.physics.aberrations import parse_aberrations
from phaser.physics.constants import electron_wavelength_A
from phaser.physics.grids import real_space_sampling_A
from phaser.physics.probe import focused_probe
from phaser.physics.scan import raster_positions_A
from phaser.state import ReconsState

N = 32
DIFF_STEP_MRAD = 2.0
WAVELENGTH_A = electron_wavelength_A(200.0)
DX_A = real_space_sampling_A(WAVELENGTH_A, (N, N), DIFF_STEP_MRAD)[0]
PAD_PX = 5.0
DOSE = 1e5


def _engine(sim_shape=None, method="pad_crop", probe_modes=1, slices=None, obj_pad_px=PAD_PX):
    return SimpleNamespace(
        sim_shape=sim_shape,
        resize_method=method,
        probe_modes=probe_modes,
        base_mode_power=0.7,
        slices=slices,
        obj_pad_px=obj_pad_px,
    )


def _plan(*engines):
    return SimpleNamespace(slices=None, engines=list(engines))


def _probe(shape=(N, N), sampling=(DX_A, DX_A)) -> np.ndarray:
    aberrations = parse_aberrations([{"c1": 100.0}])
    return focused_probe(np, shape, sampling, WAVELENGTH_A, 20.0, aberrations, DOSE, np.float64)


def _state(seed: int = 0) -> ReconsState:
    rng = np.random.default_rng(seed)
    positions = place_positions(raster_positions_A((6, 6), 0.6), (DX_A, DX_A), (N, N), PAD_PX)
    shape = object_shape_for(positions / DX_A, (N, N), PAD_PX)
    obj = np.exp(1j * rng.uniform(-3.0, 3.0, size=(1, *shape)))  # pure phase, wrapping
    return ReconsState(
        kv=200.0,
        wavelength_A=WAVELENGTH_A,
        sampling_A=(DX_A, DX_A),
        probe_modes=_probe()[None],
        object_slices=obj,
        slice_thicknesses_A=np.array([0.0]),
        positions_A=positions,
        initial_positions_A=positions.copy(),
        tilt_mrad=np.zeros_like(positions),
        scan_shape=(6, 6),
    )


def _patterns(seed: int = 0) -> np.ndarray:
    """36 centred patterns [electrons]: the probe's far field plus noise, nothing in the outer 2 px."""
    rng = np.random.default_rng(seed)
    far = np.abs(np.fft.fftshift(np.fft.fft2(_probe(), norm="ortho"))) ** 2
    patterns = far[None] * rng.uniform(0.5, 1.5, size=(36, N, N)) + rng.uniform(0, 5, size=(36, N, N))
    patterns[:, :2] = patterns[:, -2:] = patterns[:, :, :2] = patterns[:, :, -2:] = 0
    return patterns.astype(np.float32)


def _far_field(probe: np.ndarray) -> np.ndarray:
    """Centred ``|FFT|^2`` of a probe centred at ``N//2`` (zero frequency at ``N//2``)."""
    return np.abs(np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(probe), norm="ortho"))) ** 2


def _assert_object_covers(state: ReconsState, pad_px: float = PAD_PX) -> None:
    positions_px = np.asarray(state.positions_A) / np.asarray(state.sampling_A)
    n = np.asarray(state.probe_shape)
    top_left = np.round(positions_px) - n // 2
    assert np.all(top_left >= np.floor(pad_px))
    assert np.all(top_left + n + np.floor(pad_px) <= np.asarray(state.object_slices.shape[-2:]))


def _frame_shift_px(state: ReconsState, new_state: ReconsState) -> np.ndarray:
    """Whole new pixels the frame moved by: the same for every position, initial ones included."""
    shift = new_state.positions_A - state.positions_A
    shift_px = np.round(shift[0] / np.asarray(new_state.sampling_A)).astype(int)
    expected = np.broadcast_to(shift_px * np.asarray(new_state.sampling_A), shift.shape)
    np.testing.assert_allclose(shift, expected, atol=1e-12)
    np.testing.assert_allclose(new_state.initial_positions_A - new_state.positions_A, 0.0, atol=1e-12)
    return shift_px


def _assert_pure_phase(state: ReconsState) -> None:
    np.testing.assert_allclose(np.abs(state.object_slices), 1.0, atol=1e-5)


@pytest.mark.parametrize("new_n", [48, 24])
def test_pad_crop_keeps_the_detector_pixel_and_the_window(new_n):
    state, patterns = _state(), _patterns()
    engine = _engine((new_n, new_n), "pad_crop")
    new_state, new_patterns = prepare_for_engine(state, engine, _plan(engine), patterns, np.random.default_rng(0))

    assert new_patterns.shape == (36, new_n, new_n) and new_patterns.dtype == np.float32
    assert new_state.probe_shape == (new_n, new_n)
    np.testing.assert_allclose(new_state.sampling_A, [WAVELENGTH_A / (new_n * DIFF_STEP_MRAD * 1e-3)] * 2, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(new_state.sampling_A) * new_n, N * DX_A, rtol=1e-12)  # same window
    # the shared detector pixels (zero frequency at N//2 on both) hold the same counts
    shared = min(N, new_n)
    old_cut = slice(N // 2 - shared // 2, N // 2 - shared // 2 + shared)
    new_cut = slice(new_n // 2 - shared // 2, new_n // 2 - shared // 2 + shared)
    np.testing.assert_array_equal(new_patterns[:, new_cut, new_cut], patterns[:, old_cut, old_cut])
    np.testing.assert_allclose(new_patterns.sum(axis=(1, 2)), patterns[:, old_cut, old_cut].sum(axis=(1, 2)))
    if new_n > N:
        np.testing.assert_allclose(new_patterns.sum(axis=(1, 2)), patterns.sum(axis=(1, 2)), rtol=1e-6)
    # the probe: same electrons, same far field on the shared pixels
    probe, new_probe = state.probe_modes[0], new_state.probe_modes[0]
    np.testing.assert_allclose(np.sum(np.abs(new_probe) ** 2), DOSE, rtol=1e-10)
    far, new_far = _far_field(probe), _far_field(new_probe)
    np.testing.assert_allclose(new_far[new_cut, new_cut], far[old_cut, old_cut], atol=1e-7 * far.max())
    # the object: new pixel, still pure phase, still covering every window (obj_pad_px of the coarser
    # pixel of the crop is a wider margin, so that object grows before its first pixel too)
    assert new_state.object_slices.shape[-1] >= np.floor((state.object_slices.shape[-1] - 1) * new_n / N) + 1
    _assert_pure_phase(new_state)
    _assert_object_covers(new_state)
    shift_px = _frame_shift_px(state, new_state)
    assert (shift_px == 0).all() if new_n > N else (shift_px > 0).all()


@pytest.mark.parametrize("new_n", [48, 24])
def test_resample_keeps_the_real_space_pixel_and_the_angular_range(new_n):
    state, patterns = _state(), _patterns()
    engine = _engine((new_n, new_n), "resample")
    new_state, new_patterns = prepare_for_engine(state, engine, _plan(engine), patterns, np.random.default_rng(0))

    assert new_patterns.shape == (36, new_n, new_n)
    assert new_state.probe_shape == (new_n, new_n)
    assert new_state.sampling_A == state.sampling_A
    # every electron lands on the new detector (nothing lies in the outermost old pixels)
    np.testing.assert_allclose(new_patterns.sum(axis=(1, 2)), patterns.sum(axis=(1, 2)), rtol=1e-5)
    np.testing.assert_allclose(np.sum(np.abs(new_state.probe_modes) ** 2), DOSE, rtol=1e-10)
    # same angles: new pixel 3m and old pixel 2m (48) or 4m (24) from the zero frequency
    step_new, step_old = (3, 2) if new_n == 48 else (3, 4)
    m = np.arange(-(N // 2) // step_old + 1, (N // 2) // step_old)
    old_idx, new_idx = N // 2 + step_old * m, new_n // 2 + step_new * m
    density = (new_n / N) ** 2  # electrons per new pixel -> per old pixel
    far, new_far = _far_field(state.probe_modes[0]), _far_field(new_state.probe_modes[0]) * density
    tolerance = 1e-8 if new_n > N else 0.1  # padding is exact; cropping cuts the probe's tails
    np.testing.assert_allclose(
        new_far[np.ix_(new_idx, new_idx)], far[np.ix_(old_idx, old_idx)], atol=tolerance * far.max()
    )
    # the patterns' mean intensity per solid angle follows the same way (smoothed by the rebinning)
    mean_old = patterns.mean(axis=0)[np.ix_(old_idx, old_idx)]
    mean_new = new_patterns.mean(axis=0)[np.ix_(new_idx, new_idx)] * density
    assert np.abs(mean_new - mean_old).max() < 0.35 * mean_old.max()
    # the object keeps its pixel; a larger window makes it grow with vacuum and shifts the frame
    _assert_pure_phase(new_state)
    _assert_object_covers(new_state)
    shift_px = _frame_shift_px(state, new_state)
    old_obj = state.object_slices[0]
    moved = new_state.object_slices[0, shift_px[0] : shift_px[0] + old_obj.shape[0], shift_px[1] :]
    np.testing.assert_array_equal(moved[:, : old_obj.shape[1]], old_obj)
    if new_n > N:
        assert shift_px.min() > 0


def test_a_pure_phase_object_stays_pure_phase_and_keeps_its_phase():
    rng = np.random.default_rng(1)
    phase = rng.uniform(-np.pi, np.pi, size=(2, 30, 40))
    obj = np.exp(1j * phase)
    finer = resample_object(obj, np.array([0.3, 0.3]), np.array([0.2, 0.2]))
    assert finer.shape == (2, 44, 59)
    np.testing.assert_allclose(np.abs(finer), 1.0, atol=1e-12)
    # new pixel 3m sits on old pixel 2m
    np.testing.assert_allclose(finer[:, ::3, ::3], obj[:, ::2, ::2], atol=1e-12)
    coarser = resample_object(obj, np.array([0.3, 0.3]), np.array([0.45, 0.45]))
    assert coarser.shape == (2, 20, 27)
    np.testing.assert_allclose(np.abs(coarser), 1.0, atol=1e-12)
    np.testing.assert_allclose(coarser[:, ::2, ::2], obj[:, ::3, ::3], atol=1e-12)
    # a weak absorber keeps its amplitude where the grids meet
    absorbing = obj * 0.9
    np.testing.assert_allclose(np.abs(resample_object(absorbing, np.array([0.3, 0.3]), np.array([0.2, 0.2]))), 0.9)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ([5.0, 5.0, 5.0, 5.0], [10.0, 10.0]),
        ([10.0, 10.0], [2.0, 4.0, 6.0, 8.0]),
        ([5.0, 5.0, 5.0, 5.0], [1.0, 2.0, 3.0, 14.0]),
        ([5.0, 5.0, 5.0, 5.0], [15.0, 15.0]),
        ([0.0], [4.0, 6.0]),
        ([3.0, 7.0], [0.0]),
    ],
)
def test_reslicing_keeps_the_projected_transmission(old, new):
    rng = np.random.default_rng(2)
    obj = np.exp((-0.05 + 0.4j) * rng.uniform(0, 1, size=(len(old), 12, 12)))
    resliced = reslice(obj, old, new)
    assert resliced.shape == (len(new), 12, 12)
    np.testing.assert_allclose(np.sum(np.angle(resliced), axis=0), np.sum(np.angle(obj), axis=0), atol=1e-5)
    np.testing.assert_allclose(np.prod(resliced, axis=0), np.prod(obj, axis=0), atol=1e-10)


def test_reslicing_follows_the_depth_profile():
    weights = depth_weights([10.0, 10.0], [5.0, 5.0, 5.0, 5.0])
    np.testing.assert_allclose(weights, [[0.5, 0], [0.5, 0], [0, 0.5], [0, 0.5]])
    # a different total thickness: the profile is stretched, not cut
    np.testing.assert_allclose(depth_weights([5.0] * 4, [30.0, 10.0]), [[1, 1, 1, 0], [0, 0, 0, 1]])
    phase = np.stack([np.full((4, 4), 0.1), np.full((4, 4), 0.5)])
    resliced = reslice(np.exp(1j * phase), [10.0, 10.0], [5.0] * 4)
    np.testing.assert_allclose(np.angle(resliced[:, 0, 0]), [0.05, 0.05, 0.25, 0.25])
    # one slice to many: in proportion to thickness (the projected potential spread evenly)
    np.testing.assert_allclose(np.angle(reslice(np.exp(1j * phase[1:]), [0.0], [1.0, 3.0])[:, 0, 0]), [0.125, 0.375])
    same = np.exp(1j * phase)
    assert reslice(same, [5.0, 5.0], [10.0, 10.0]) is same  # same profile, only thicker


def _overlaps(modes: np.ndarray) -> np.ndarray:
    flat = modes.reshape(len(modes), -1)
    gram = flat.conj() @ flat.T
    norms = np.sqrt(np.real(np.diag(gram)))
    return np.abs(gram) / np.outer(norms, norms)


def test_added_modes_are_orthogonal_and_split_the_power():
    base = _probe()
    modes = resize_modes(base[None], 4, 0.7)
    overlaps = _overlaps(modes)
    assert np.abs(overlaps - np.eye(4)).max() < 1e-6
    powers = np.sum(np.abs(modes) ** 2, axis=(1, 2))
    np.testing.assert_allclose(powers.sum(), DOSE, rtol=1e-10)
    np.testing.assert_allclose(powers, [0.7 * DOSE] + [0.1 * DOSE] * 3, rtol=1e-10)
    np.testing.assert_allclose(modes[0], base * np.sqrt(0.7))
    np.testing.assert_allclose(orthogonal_modes(base, 4, 0.7), modes)


def test_modes_added_to_several_are_orthogonal_to_all_of_them():
    rng = np.random.default_rng(3)
    base = _probe()
    other = base * np.exp(1j * rng.uniform(0, 0.5, size=base.shape)) * rng.uniform(0.5, 1.5, size=base.shape)
    other = other - base * np.vdot(base, other) / np.vdot(base, base)  # two orthogonal modes, unlike the polynomials
    existing = np.stack([base, other * np.sqrt(0.2 * DOSE / np.sum(np.abs(other) ** 2))])
    modes = resize_modes(existing, 5, 0.7)
    assert np.abs(_overlaps(modes) - np.eye(5)).max() < 1e-6
    powers = np.sum(np.abs(modes) ** 2, axis=(1, 2))
    total = np.sum(np.abs(existing) ** 2)
    np.testing.assert_allclose(powers.sum(), total, rtol=1e-10)
    np.testing.assert_allclose(powers[:2].sum(), 0.7 * total, rtol=1e-10)
    np.testing.assert_allclose(powers[2:], 0.1 * total, rtol=1e-10)
    new = added_modes(existing, 3)
    assert np.abs(new.reshape(3, -1).conj() @ existing.reshape(2, -1).T).max() < 1e-6 * np.sqrt(DOSE)
    # fewer modes: the strongest are kept, with the same total
    fewer = resize_modes(modes, 2, 0.7)
    np.testing.assert_allclose(np.sum(np.abs(fewer) ** 2), total, rtol=1e-10)
    np.testing.assert_allclose(fewer[0], modes[0] * np.sqrt(total / np.sum(np.abs(modes[:2]) ** 2)))


def test_nothing_to_change_returns_the_same_state_and_patterns():
    state, patterns = _state(), _patterns()
    engine = _engine()
    new_state, new_patterns = prepare_for_engine(state, engine, _plan(engine), patterns, np.random.default_rng(0))
    assert new_state is state and new_patterns is patterns


def test_a_grid_is_kept_until_an_engine_names_another():
    patterns = _patterns()
    first, keep, back = _engine((48, 48), "pad_crop"), _engine(), _engine((32, 32), "pad_crop")
    plan = _plan(first, keep, back)
    state, first_patterns = prepare_for_engine(_state(), first, plan, patterns, np.random.default_rng(0))
    state.engine_index = 1
    state, keep_patterns = prepare_for_engine(state, keep, plan, patterns, np.random.default_rng(0))
    assert state.probe_shape == (48, 48)
    np.testing.assert_array_equal(keep_patterns, first_patterns)
    state.engine_index = 2
    state, back_patterns = prepare_for_engine(state, back, plan, patterns, np.random.default_rng(0))
    assert back_patterns is patterns
    np.testing.assert_allclose(state.sampling_A, (DX_A, DX_A), rtol=1e-12)
    np.testing.assert_allclose(state.probe_modes[0], _state().probe_modes[0], atol=1e-8 * np.sqrt(DOSE))
    _assert_pure_phase(state)


def test_a_probe_that_does_not_match_the_plan_is_reported():
    state = _state()
    state.engine_index = 1
    plan = _plan(_engine((48, 48)), _engine())
    with pytest.raises(ValueError, match=r"engines\[:1\] give \(48, 48\)"):
        prepare_for_engine(state, plan.engines[1], plan, _patterns(), np.random.default_rng(0))


def test_a_plan_changing_grid_modes_and_slices_between_engines_runs(tmp_path: Path):
    from phaser.plan import validate_plan
    from phaser.run import run_plan
    from tests.helpers import simulated_file

    _, path = simulated_file(tmp_path / "sim.h5", scan_shape=(6, 6))
    solvers = {"object": {"type": "adam", "learning_rate": 0.05}, "probe": {"type": "adam", "learning_rate": 0.01}}
    engine = {"type": "gradient", "niter": 2, "grouping": 12, "noise_model": {"type": "amplitude"}, "solvers": solvers}
    plan = validate_plan(
        {
            "name": "resample",
            "backend": "jax",
            "seed": 1,
            "raw_data": {"type": "manual", "path": str(path)},
            "init": {"probe": {"type": "focused", "conv_angle": 20.0, "defocus": 100.0}},
            "engines": [
                {**engine, "sim_shape": None},
                {**engine, "sim_shape": [48, 48], "probe_modes": 2, "slices": {"n": 2, "total_thickness": 20.0}},
            ],
        }
    )
    state = run_plan(plan)
    assert state.probe_shape == (48, 48) and state.probe_modes.shape[0] == 2
    assert state.n_slices == 2
    np.testing.assert_allclose(state.slice_thicknesses_A, [10.0, 10.0])
    np.testing.assert_allclose(state.sampling_A, real_space_sampling_A(WAVELENGTH_A, (48, 48), 2.0), rtol=1e-9)
    assert state.iteration == 4 and len(state.error_history) == 4
    assert np.all(np.isfinite(state.error_history))
    assert np.all(np.isfinite(np.asarray(state.object_slices)))
    _assert_object_covers(state)
