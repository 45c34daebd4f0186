"""End-to-end gradient-engine reconstructions of simulated data, and what forces a recompile.

Data: :func:`phaser.simulate.simulate_dataset`, 16x16 raster of 0.6 A steps, 32x32 patterns,
200 kV, 20 mrad, C10 = 100 A, 2 mrad/px, 1e5 electrons per pattern (Poisson), seed 0; written to
HDF5 and read back by the ``manual`` raw-data loader of a validated plan.
"""

from __future__ import annotations

import numpy as np
import pytest

from phaser.engines import gradient
from phaser.plan import validate_plan
from phaser.run import run_plan
from phaser.simulate import simulate_dataset, write_dataset
from tests.helpers import DATASET_DEFAULTS, phase_error

DATASET = {**DATASET_DEFAULTS, "scan_shape": (16, 16)}


def _plan_data(path: str, **engine) -> dict:
    """The single-slice plan of ``/tmp/pt/g1.yaml``; ``engine`` overrides engine fields."""
    return {
        "name": "recon",
        "backend": "jax",
        "seed": 1,
        "raw_data": {"type": "manual", "path": path},
        "init": {"probe": {"type": "focused", "conv_angle": 20, "defocus": 100}},
        "engines": [
            {
                "type": "gradient",
                "niter": 20,
                "grouping": 32,
                "noise_model": {"type": "poisson", "eps": 0.1},
                "solvers": {
                    "object": {"type": "adam", "learning_rate": 0.05},
                    "probe": {"type": "adam", "learning_rate": 0.01},
                },
                "update_probe": {"after": 5},
                **engine,
            }
        ],
    }


@pytest.fixture(scope="module")
def single_slice(tmp_path_factory):
    folder = tmp_path_factory.mktemp("single_slice")
    ds = simulate_dataset(**DATASET)
    write_dataset(ds, folder / "sim.h5")
    return ds, folder


@pytest.fixture(scope="module")
def two_slices_two_modes(tmp_path_factory):
    folder = tmp_path_factory.mktemp("two_slices")
    ds = simulate_dataset(**DATASET, n_slices=2, slice_thickness_A=10.0, probe_modes_weights=[1.0, 0.3])
    write_dataset(ds, folder / "sim.h5")
    return ds, folder


def _phase_error(state, ds) -> float:
    """RMS error [rad] of the phase summed over slices, against the truth, inside the scan."""
    recon = np.angle(np.asarray(state.object_slices)).sum(axis=0)
    truth = np.angle(ds.object).sum(axis=0)
    return phase_error(recon, truth, np.asarray(state.positions_A), ds.positions_A, state.sampling_A)


def test_single_slice_reconstruction(single_slice):
    """Measured: error 2179 -> 514 e/pattern (Poisson floor ~512), phase RMS error 0.019 rad."""
    ds, folder = single_slice
    plan = validate_plan(_plan_data("sim.h5"), base=folder)
    state = run_plan(plan)
    history = state.error_history
    assert len(history) == 20 and all(np.isfinite(history))
    assert history[-1] < 0.5 * history[0]
    assert np.asarray(state.object_slices).dtype == np.complex64  # float32 run (x64 left off)
    error = _phase_error(state, ds)
    truth_rms = _phase_error(state.copy_with(object_slices=np.ones_like(np.asarray(state.object_slices))), ds)
    assert truth_rms > 0.15  # the bound below is far from "reconstructed nothing"
    assert error < 0.05, f"phase error {error:.4f} rad"


def test_two_slices_two_probe_modes(two_slices_two_modes):
    """2 slices 10 A apart, probe modes of power 1 : 0.3; the plan models the same.

    The simulated second mode stays inside the condenser aperture, so the default band limit
    (2/3 of Nyquist) fits the data. The data term ends close to the Poisson floor (about 0.5 per
    detector pixel, 512 for 32x32). Measured: error 5031 -> 546 e/pattern, summed-phase RMS
    error 0.037 rad (truth RMS 0.2); bound 0.065.
    """
    ds, folder = two_slices_two_modes
    data = _plan_data(
        "sim.h5",
        niter=40,
        probe_modes=2,
        solvers={
            "object": {"type": "adam", "learning_rate": 0.05},
            "probe": {"type": "adam", "learning_rate": 0.2},
        },
        update_probe=True,
    )
    # simulate's slice_thickness is the gap between slices; the plan's propagation after slice s
    # uses thickness[s] (the last one is unused), so two slices of 10 A model the same gap
    data["slices"] = {"n": 2, "slice_thickness": 10.0}
    state = run_plan(validate_plan(data, base=folder))
    assert np.asarray(state.object_slices).shape[0] == 2
    assert np.asarray(state.probe_modes).shape[0] == 2
    history = state.error_history
    assert all(np.isfinite(history))
    assert history[-1] < 0.2 * history[0]
    assert history[-1] < 1.25 * 512, f"final error {history[-1]:.1f} not near the Poisson floor"
    error = _phase_error(state, ds)
    assert error < 0.065, f"summed phase error {error:.4f} rad"


def test_numeric_changes_do_not_recompile(single_slice):
    """New learning rates, schedules, regularizer weights, noise eps and flags toggling mid-run
    reuse the compiled iteration; a structural change (another noise model) does not."""
    ds, folder = single_slice
    assert hasattr(gradient._iteration, "_cache_size"), "jax.jit lost _cache_size: count compiles another way"
    base = _plan_data("sim.h5", niter=2, update_probe=True, regularizers=[{"type": "obj_l2", "weight": 0.1}])
    run_plan(validate_plan(base, base=folder))
    compiled = gradient._iteration._cache_size()

    changed = _plan_data(
        "sim.h5",
        niter=5,
        noise_model={"type": "poisson", "eps": 0.5},
        solvers={
            "object": {
                "type": "adam",
                "learning_rate": {"type": "cosine", "init": 0.1, "final": 0.01},
            },
            "probe": {"type": "adam", "learning_rate": 0.003},
        },
        regularizers=[{"type": "obj_l2", "weight": 0.7}],
        update_probe={"after": 2},  # off, then on
        update_object={"every": 2},  # toggles every iteration
    )
    state = run_plan(validate_plan(changed, base=folder))
    assert len(state.error_history) == 5
    assert gradient._iteration._cache_size() == compiled

    # the counter does count: a different noise model is a different program
    other = _plan_data(
        "sim.h5",
        niter=1,
        noise_model={"type": "amplitude"},
        regularizers=[{"type": "obj_l2", "weight": 0.1}],
    )
    run_plan(validate_plan(other, base=folder))
    assert gradient._iteration._cache_size() == compiled + 1
