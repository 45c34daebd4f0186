"""The conventional engine's pass over an iteration's groups: one compiled ``lax.scan`` on jax, a
Python loop on numpy, the same numbers.

Dataset: a 16x16 scan of 32x32 patterns (200 kV, 20 mrad, 100 A defocus, 2 mrad/px, 0.6 A steps,
1e5 electrons per pattern, 0.15 A position jitter), one or two slices. The passes start from a flat
object, the true probe and the raster positions, and refine object, probe and positions, with group
constraints on, over two iterations of 4x64 positions.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import jax.numpy as jnp
import numpy as np
import pytest

from phaser.constraints import (
    ClampObjectAmplitudeProps,
    ConstraintContext,
    PositionsProjectionProps,
    ProbeSupportRealProps,
    clamp_object_amplitude,
    positions_affine,
    probe_support_real,
)
from phaser.engines.conventional.arrays import add_patches, cut_patches
from phaser.engines.conventional.epie import epie_update
from phaser.engines.conventional.forward import Setup, StepOptions, Variables, shift, unshift
from phaser.engines.conventional.iteration import _jitted_pass, conventional_iteration
from phaser.engines.conventional.lsqml import lsqml_update
from phaser.engines.conventional_props import LSQMLSolverProps
from phaser.engines.grouping import make_groups, pad_groups
from phaser.noise import NOISE_PROPS
from phaser.physics.grids import fft_frequencies
from phaser.physics.propagation import gap_propagators
from phaser.physics.shift import phase_ramp, ramp_factors
from phaser.simulate import simulate_dataset

SIM = {
    "kv": 200.0,
    "conv_angle_mrad": 20.0,
    "defocus_A": 100.0,
    "diff_step_mrad": 2.0,
    "scan_step_A": 0.6,
    "pattern_shape": (32, 32),
    "scan_shape": (16, 16),
    "dose_per_pattern": 1e5,
    "position_jitter_A": 0.15,
    "seed": 0,
}
SOLVERS = {
    "epie": (epie_update, "amplitude", {"beta_object": 0.5, "beta_probe": 0.5}),
    "lsqml": (
        lsqml_update,
        "anscombe",
        {
            "beta_object": 1.0,
            "beta_probe": 1.0,
            "gamma": 1e-4,
            "illum_reg_object": 1e-2,
            "illum_reg_probe": 1e-2,
            "step_reg": 1.0,
        },
    ),
}


@cache
def _dataset(n_slices: int) -> Any:
    return simulate_dataset(**SIM, n_slices=n_slices, slice_thickness_A=10.0)


def _case(xp: Any, n_slices: int, noise: str) -> tuple[Setup, Variables, ConstraintContext]:
    """Setup, starting variables and constraint context on backend ``xp`` (float32)."""
    ds = _dataset(n_slices)
    sampling = tuple(float(s) for s in ds.sampling_A)
    wavelength = 0.025079  # [A] at 200 kV (REFERENCE.md)
    shape = ds.probe_modes.shape[-2:]
    thicknesses = np.full(n_slices, 10.0)
    props = gap_propagators(np, shape, sampling, wavelength, thicknesses, 2.0 / 3.0, np.float64)
    ky, kx = fft_frequencies(np, shape, sampling, np.float64)
    patterns = ds.patterns.reshape(-1, *shape)
    noise_params = {k: xp.asarray(v, dtype=xp.float32) for k, v in NOISE_PROPS[noise]().model_dump().items()}
    setup = Setup(
        patterns=xp.asarray(np.fft.ifftshift(patterns, axes=(-2, -1)), dtype=xp.float32),
        propagators=xp.asarray(props, dtype=xp.complex64),
        thicknesses=xp.asarray(thicknesses, dtype=xp.float32),
        ky=xp.asarray(ky[:, 0], dtype=xp.float32),
        kx=xp.asarray(kx[0, :], dtype=xp.float32),
        tilt_mrad=xp.zeros((patterns.shape[0], 2), dtype=xp.float32),
        noise_params=noise_params,
    )
    nominal_px = np.asarray(ds.nominal_positions_A) / np.asarray(sampling)
    variables = Variables(
        object=xp.ones(ds.object.shape, dtype=xp.complex64),
        probe=xp.asarray(ds.probe_modes, dtype=xp.complex64),
        positions=xp.asarray(nominal_px, dtype=xp.float32),
    )
    context = ConstraintContext(
        sampling_A=sampling,  # type: ignore[arg-type]
        wavelength_A=wavelength,
        slice_thicknesses_A=thicknesses,
        scan_shape=SIM["scan_shape"],
        # off the raster by more than an affine map: the affine projection really moves the positions
        initial_positions_px=nominal_px + np.random.default_rng(3).normal(scale=0.3, size=nominal_px.shape),
    )
    return setup, variables, context


def _constraints(xp: Any, moving_positions: bool) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    functions: list[Any] = [clamp_object_amplitude, probe_support_real]
    props: list[Any] = [ClampObjectAmplitudeProps(amplitude=1.05), ProbeSupportRealProps(radius_frac=0.9)]
    if moving_positions:
        functions.append(positions_affine)
        props.append(PositionsProjectionProps(weight=0.5))
    params = tuple({k: xp.asarray(v, dtype=xp.float32) for k, v in p.numbers(1, 2).items()} for p in props)
    return tuple(functions), params


def _groups(n_iterations: int, group_size: int) -> list[tuple[np.ndarray, np.ndarray]]:
    n_positions = int(np.prod(SIM["scan_shape"]))
    rng = np.random.default_rng(7)
    dummy = np.zeros((n_positions, 2))
    return [pad_groups(make_groups(dummy, group_size, False, True, rng)) for _ in range(n_iterations)]


def _run(
    xp: Any,
    solver_name: str,
    n_slices: int,
    groups: list[tuple[np.ndarray, np.ndarray]],
    moving_positions: bool = True,
    stochastic: bool = True,
    beta_scale: float = 1.0,
) -> list[tuple[Any, ...]]:
    """Passes over ``groups`` (one per iteration); per pass the host copies of its five results."""
    solver, noise, numbers = SOLVERS[solver_name]
    setup, variables, context = _case(xp, n_slices, noise)
    params = {
        k: xp.asarray(v * (beta_scale if k.startswith("beta") else 1.0), dtype=xp.float32) for k, v in numbers.items()
    }
    options = StepOptions(noise, update_object=True, update_probe=True, update_positions=True, model_tilt=False)
    solver_state = (
        solver.init_state(xp, variables, LSQMLSolverProps(stochastic=stochastic)) if solver_name == "lsqml" else None
    )
    functions, group_params = _constraints(xp, moving_positions)
    out = []
    for indices, weights in groups:
        variables, solver_state, loss, residual, shifts = conventional_iteration(
            xp,
            solver,
            options,
            variables,
            solver_state,
            indices,
            weights,
            setup,
            params,
            functions,
            group_params,
            context,
        )
        if solver_name == "lsqml" and not stochastic:
            variables, solver_state = solver.finish_iteration(xp, variables, solver_state, options, params)
        out.append(tuple(np.asarray(a) for a in (*variables, loss, residual, shifts)))
    return out


def _run_start_positions(n_slices: int) -> np.ndarray:
    return np.asarray(_case(np, n_slices, "amplitude")[1].positions)


def _assert_close(jax_result: list[tuple[Any, ...]], numpy_result: list[tuple[Any, ...]]) -> None:
    """Every array within float32 rounding: 1e-4 of its largest magnitude (2e-3 for the shifts, a
    least-squares estimate from small differences, and at least 1e-6 px: against a flat object,
    before any group has updated it, the estimates are rounding noise)."""
    names = ("object", "probe", "positions", "loss", "residual", "shifts")
    for got_pass, want_pass in zip(jax_result, numpy_result, strict=True):
        for name, got, want in zip(names, got_pass, want_pass, strict=True):
            scale = float(np.max(np.abs(want)))
            assert scale > 0 or name == "shifts", name
            tolerance = max(2e-3 * scale, 1e-6) if name == "shifts" else 1e-4 * scale
            np.testing.assert_allclose(got, want, rtol=0, atol=tolerance, err_msg=name)


@pytest.mark.parametrize("n_slices", [1, 2])
@pytest.mark.parametrize("solver_name", ["epie", "lsqml"])
def test_compiled_pass_equals_the_loop(solver_name, n_slices):
    groups = _groups(2, 64)
    got, want = _run(jnp, solver_name, n_slices, groups), _run(np, solver_name, n_slices, groups)
    _assert_close(got, want)
    first, second = want
    # the pass did something: object, probe and positions all moved, shifts were estimated
    assert np.max(np.abs(first[0] - 1.0)) > 1e-2
    assert np.max(np.abs(first[1] - np.asarray(_dataset(n_slices).probe_modes))) > 0
    assert np.max(np.abs(first[2] - _run_start_positions(n_slices))) > 1e-2
    assert np.max(np.abs(first[5])) > 1e-3
    assert second[3] < first[3]  # the loss falls


@pytest.mark.parametrize("solver_name", ["epie", "lsqml"])
def test_ramps_follow_positions_a_group_constraint_moves(solver_name):
    # with positions fixed during the pass the jax pass computes every group's sub-pixel ramps ahead;
    # a constraint that moves positions must make it use each group's moved positions instead
    groups = _groups(1, 64)
    moved = _run(np, solver_name, 1, groups, moving_positions=True)
    fixed = _run(np, solver_name, 1, groups, moving_positions=False)
    assert np.max(np.abs(moved[0][0] - fixed[0][0])) > 1e-3  # the constraint matters
    _assert_close(_run(jnp, solver_name, 1, groups, moving_positions=True), moved)
    _assert_close(_run(jnp, solver_name, 1, groups, moving_positions=False), fixed)


def test_iteration_wide_lsqml_accumulates_over_the_scan():
    groups = _groups(2, 64)
    _assert_close(_run(jnp, "lsqml", 1, groups, stochastic=False), _run(np, "lsqml", 1, groups, stochastic=False))


def test_another_group_count_recompiles_and_still_matches():
    for group_size in (64, 48):  # 4 groups of 64, then 6 of 43 (padded to 43)
        groups = _groups(1, group_size)
        _assert_close(_run(jnp, "epie", 1, groups), _run(np, "epie", 1, groups))


def test_new_numbers_do_not_recompile():
    groups = _groups(1, 64)
    _run(jnp, "epie", 1, groups)
    compiled = _jitted_pass()._cache_size()
    changed = _run(jnp, "epie", 1, groups, beta_scale=0.5)
    assert _jitted_pass()._cache_size() == compiled
    assert not np.allclose(changed[0][0], _run(jnp, "epie", 1, groups)[0][0])  # the beta was used


@pytest.mark.parametrize("xp", [np, jnp], ids=["numpy", "jax"])
@pytest.mark.parametrize("solver_name", ["epie", "lsqml"])
def test_padding_changes_nothing(xp, solver_name):
    indices, weights = _groups(1, 64)[0]
    # the same groups, each padded with 5 positions of weight 0 (repeats of an arbitrary position)
    pad = np.tile(np.arange(5, dtype=indices.dtype) * 37 % indices.size, (indices.shape[0], 1))
    padded = (np.concatenate([indices, pad], axis=1), np.concatenate([weights, np.zeros_like(pad, np.float32)], axis=1))
    _assert_close(_run(xp, solver_name, 1, [padded]), _run(xp, solver_name, 1, [(indices, weights)]))


def test_patches_cut_and_added_alike_on_jax_and_numpy():
    rng = np.random.default_rng(1)
    obj = (rng.normal(size=(2, 20, 24)) + 1j * rng.normal(size=(2, 20, 24))).astype(np.complex64)
    corners = np.array([[0, 0], [3, 5], [3, 5], [12, 16]], dtype=np.int32)  # a repeated corner accumulates
    patches = (rng.normal(size=(4, 8, 8)) + 1j * rng.normal(size=(4, 8, 8))).astype(np.complex64)
    want = np.zeros((20, 24), np.complex64)
    for (y, x), patch in zip(corners, patches, strict=True):
        want[y : y + 8, x : x + 8] += patch
    np.testing.assert_allclose(
        np.asarray(add_patches(jnp, (20, 24), jnp.asarray(corners), jnp.asarray(patches))), want, atol=1e-6
    )
    np.testing.assert_allclose(add_patches(np, (20, 24), corners, patches), want, atol=1e-6)
    cut = np.stack([obj[:, y : y + 8, x : x + 8] for y, x in corners])
    np.testing.assert_array_equal(np.asarray(cut_patches(jnp, jnp.asarray(obj), jnp.asarray(corners), (8, 8))), cut)
    np.testing.assert_array_equal(cut_patches(np, obj, corners, (8, 8)), cut)


@pytest.mark.parametrize("xp", [np, jnp], ids=["numpy", "jax"])
def test_unshift_by_ramp_factors_equals_unshift_by_ramps(xp):
    rng = np.random.default_rng(2)
    subpixel = xp.asarray(rng.uniform(-0.5, 0.5, size=(3, 2)), dtype=xp.float32)
    waves = xp.asarray(rng.normal(size=(3, 2, 16, 16)) + 1j * rng.normal(size=(3, 2, 16, 16)), dtype=xp.complex64)
    factors = ramp_factors(xp, subpixel, (16, 16))
    full = phase_ramp(xp, (16, 16), subpixel)
    want = unshift(xp, waves, full)
    np.testing.assert_allclose(
        np.asarray(unshift(xp, waves, factors)), np.asarray(want), atol=1e-5 * float(np.max(np.abs(want)))
    )
    # the adjoint of the shift: <shift(p), w> = <p, unshift(w)>
    probe = xp.asarray(rng.normal(size=(2, 16, 16)) + 1j * rng.normal(size=(2, 16, 16)), dtype=xp.complex64)
    left = np.vdot(np.asarray(shift(xp, probe, full)), np.asarray(waves))
    right = np.vdot(np.asarray(probe), np.asarray(unshift(xp, waves, factors)))
    np.testing.assert_allclose(left, right, rtol=1e-4)
