"""Constraints and cost regularizers named in a plan act inside every engine."""

from __future__ import annotations

import numpy as np
import pytest

from phaser.backend import to_numpy
from phaser.plan import validate_plan
from phaser.run import run_plan
from tests.helpers import plan_for, simulated_file

GRADIENT = {
    "type": "gradient",
    "noise_model": {"type": "amplitude"},
    "solvers": {
        "object": {"type": "adam", "learning_rate": 0.05},
        "probe": {"type": "adam", "learning_rate": 0.01},
        "positions": {"type": "adam", "learning_rate": 0.05},
    },
}
CONVENTIONAL = {
    "type": "conventional",
    "noise_model": {"type": "amplitude"},
    "solver": {"type": "lsqml"},
    "position_solver": {"type": "steepest_descent", "step_size": 3.0},
}


@pytest.fixture(scope="module")
def data_path(tmp_path_factory: pytest.TempPathFactory):
    return simulated_file(tmp_path_factory.mktemp("constraints") / "sim.h5", position_jitter_A=0.15)[1]


def _run(path, engine: dict, backend: str = "jax"):
    return run_plan(validate_plan(plan_for(path, [{"niter": 6, "grouping": 16, **engine}], backend=backend)))


@pytest.mark.parametrize("engine", [GRADIENT, CONVENTIONAL], ids=["gradient", "conventional"])
def test_group_constraint_bounds_the_object_amplitude(engine: dict, data_path) -> None:
    free = _run(data_path, engine)
    assert np.abs(to_numpy(free.object_slices)).max() > 1.001  # without it the amplitude strays above 1
    clamped = _run(data_path, {**engine, "group_constraints": [{"type": "clamp_object_amplitude", "amplitude": 1.0}]})
    assert np.abs(to_numpy(clamped.object_slices)).max() <= 1.0 + 1e-5


@pytest.mark.parametrize("engine", [GRADIENT, CONVENTIONAL], ids=["gradient", "conventional"])
def test_iter_constraint_projects_positions_onto_an_affine_map(engine: dict, data_path) -> None:
    state = _run(data_path, {**engine, "update_positions": True, "iter_constraints": [{"type": "positions_affine"}]})
    initial, moved = state.initial_positions_A, state.positions_A
    largest = np.abs(moved - initial).max()
    assert largest > 1e-4  # positions did move (measured 3.5e-4 A for LSQML, more for gradient)
    design = np.column_stack([initial, np.ones(len(initial))])
    fit, *_ = np.linalg.lstsq(design, moved - initial, rcond=None)
    np.testing.assert_allclose(design @ fit, moved - initial, atol=0.02 * largest)


def test_cost_regularizer_changes_the_gradient_reconstruction(data_path) -> None:
    plain = _run(data_path, GRADIENT)
    smooth = _run(data_path, {**GRADIENT, "regularizers": [{"type": "obj_tv", "weight": 50.0}]})

    def total_variation(obj):
        phase = np.angle(to_numpy(obj))[0]
        return np.abs(np.diff(phase, axis=0)).sum() + np.abs(np.diff(phase, axis=1)).sum()

    assert total_variation(smooth.object_slices) < 0.9 * total_variation(plain.object_slices)
    assert smooth.error_history[-1] < 1.5 * plain.error_history[-1]
