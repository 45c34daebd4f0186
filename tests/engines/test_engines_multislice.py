"""Every engine on multislice data with two probe modes and perturbed positions, position correction on.

Data: 12x12 scan, 32x32 patterns, 2 slices 10 A apart, probe modes of power 1 : 0.3, positions
perturbed by 0.3 px (rms per axis), 1e5 electrons per pattern. Measured on this setup (summed-phase
RMS error against the truth, whose own RMS is 0.2 rad; RMS position error from 0.303 px):
gradient 0.037 rad, 0.156 px; ePIE 0.032 rad, 0.236 px; LSQML 0.035 rad, 0.250 px.
"""

from __future__ import annotations

import numpy as np
import pytest

from phaser.plan import validate_plan
from phaser.run import run_plan
from tests.helpers import phase_error, plan_for, simulated_file

POSITION_SOLVER = {"type": "steepest_descent", "step_size": 3.0}
ENGINES = {
    "gradient": {
        "type": "gradient",
        "noise_model": {"type": "poisson", "eps": 0.1},
        "solvers": {
            "object": {"type": "adam", "learning_rate": 0.05},
            "probe": {"type": "adam", "learning_rate": {"type": "cosine", "init": 0.2, "final": 0.02}},
            "positions": {"type": "adam", "learning_rate": 0.02},
        },
    },
    "epie": {
        "type": "conventional",
        "noise_model": {"type": "amplitude", "eps": 0.1},
        "solver": {"type": "epie", "beta_object": 0.3, "beta_probe": 0.3},
        "position_solver": POSITION_SOLVER,
    },
    "lsqml": {
        "type": "conventional",
        "noise_model": {"type": "amplitude", "eps": 0.1},
        "solver": {"type": "lsqml"},
        "position_solver": POSITION_SOLVER,
    },
}
# (phase error bound [rad], bound on final / initial RMS position error)
BOUNDS = {"gradient": (0.06, 0.7), "epie": (0.055, 0.9), "lsqml": (0.065, 0.95)}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory):
    path = tmp_path_factory.mktemp("multislice") / "sim.h5"
    return simulated_file(
        path,
        scan_shape=(12, 12),
        n_slices=2,
        slice_thickness_A=10.0,
        probe_modes_weights=[1.0, 0.3],
        position_jitter_A=0.3 * 0.392,
    )


def _rms_position_error_px(positions_A: np.ndarray, truth_A: np.ndarray, sampling_A: tuple[float, float]) -> float:
    diff = (positions_A - positions_A.mean(axis=0)) - (truth_A - truth_A.mean(axis=0))
    return float(np.sqrt(np.mean(diff**2))) / sampling_A[0]


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_engine_reconstructs_multislice_with_modes_and_position_correction(engine: str, dataset) -> None:
    ds, path = dataset
    engine_plan = {**ENGINES[engine], "niter": 40, "grouping": 16, "probe_modes": 2, "update_positions": {"after": 10}}
    plan = validate_plan(plan_for(path, [engine_plan], seed=1, slices={"n": 2, "slice_thickness": 10.0}))
    state = run_plan(plan)
    history = state.error_history
    assert all(np.isfinite(history)) and history[-1] < 0.35 * history[0]
    phase_bound, position_ratio = BOUNDS[engine]
    recon = np.angle(np.asarray(state.object_slices)).sum(axis=0)
    error = phase_error(recon, np.angle(ds.object).sum(axis=0), state.positions_A, ds.positions_A, state.sampling_A)
    assert error < phase_bound, f"summed phase error {error:.4f} rad"
    before = _rms_position_error_px(state.initial_positions_A, ds.positions_A, state.sampling_A)
    after = _rms_position_error_px(state.positions_A, ds.positions_A, state.sampling_A)
    assert 0.25 < before < 0.35
    assert after < position_ratio * before, f"position error {before:.3f} -> {after:.3f} px"
