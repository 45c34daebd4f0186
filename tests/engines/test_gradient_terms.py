"""How much a cost regularizer moves the object in one gradient-engine iteration.

The plan's loss is ``data + weight * cost``: one iteration over all groups applies the
regularizer once in total, whatever the grouping (each group carries its share of the positions).
Object pixels no probe window reaches have no data gradient, so there one SGD iteration with
learning rate ``lr`` and ``obj_l2`` (``weight * sum |O - 1|^2``, whose descent direction is
``-2 weight (O - 1)``) must give ``O - 1 -> (O - 1)(1 - 2 lr weight)`` up to second order in
``lr * weight``. Data: 8x8 scan, 32x32 patterns (``tests.helpers.DATASET_DEFAULTS``).
"""

from __future__ import annotations

import numpy as np
import pytest

from phaser.backend import to_numpy
from phaser.plan import validate_plan
from phaser.run import run_plan
from tests.helpers import plan_for, simulated_file

LEARNING_RATE = 0.01
WEIGHT = 1.0  # 2 * lr * weight = 0.02: second-order terms stay below 2e-4
EXPECTED_FACTOR = 1.0 - 2.0 * LEARNING_RATE * WEIGHT


def _engine(niter: int, grouping: int, regularizers: list[dict]) -> dict:
    return {
        "type": "gradient",
        "niter": niter,
        "grouping": grouping,
        "obj_pad_px": 8,  # a frame of object pixels no probe window reaches
        "noise_model": {"type": "amplitude"},
        "solvers": {"object": {"type": "sgd", "learning_rate": LEARNING_RATE}},
        "update_probe": False,
        "regularizers": regularizers,
    }


@pytest.fixture(scope="module")
def data_path(tmp_path_factory: pytest.TempPathFactory):
    return simulated_file(tmp_path_factory.mktemp("gradient_terms") / "sim.h5")[1]


def _object(path, niter: int, grouping: int = 16, regularizers: list[dict] | None = None) -> np.ndarray:
    """The object after ``niter`` iterations from a random-phase start (seeded: the same start each run)."""
    plan = plan_for(path, [_engine(niter, grouping, regularizers or [])])
    plan["init"]["object"] = {"type": "random", "sigma": 0.5}  # O - 1 is far from 0 everywhere
    return to_numpy(run_plan(validate_plan(plan)).object_slices)[0]


@pytest.fixture(scope="module")
def unreached(data_path) -> tuple[np.ndarray, np.ndarray]:
    """``(start, mask)``: the starting object and the pixels that the data term leaves unchanged."""
    start = _object(data_path, 0)
    plain = _object(data_path, 1)
    mask = plain == start
    assert 200 < mask.sum() < 0.8 * mask.size, mask.sum()  # a frame around the scan, not the whole object
    return start, mask


@pytest.mark.parametrize("grouping", [16, 10, 64], ids=["4-groups", "7-uneven-groups", "1-group"])
def test_one_iteration_applies_the_regularizer_once(data_path, unreached, grouping: int) -> None:
    start, mask = unreached
    after = _object(data_path, 1, grouping, [{"type": "obj_l2", "weight": WEIGHT}])
    before_dev, after_dev = (start - 1.0)[mask], (after - 1.0)[mask]
    factor = np.sum(np.real(np.conj(before_dev) * after_dev)) / np.sum(np.abs(before_dev) ** 2)
    # a term weighted k times too strongly gives 1 - 0.02 k (k = 4: 0.92; 7 groups of 10 counted
    # with their padding, k = 70/64: 0.9781)
    assert factor == pytest.approx(EXPECTED_FACTOR, abs=5e-4)
    assert np.all(np.abs(after_dev - EXPECTED_FACTOR * before_dev) <= 1e-3 * np.abs(before_dev) + 1e-6)


def test_regularizer_weight_zero_leaves_the_data_update(data_path, unreached) -> None:
    """The regularizer adds to the data update rather than replacing or rescaling it."""
    start, mask = unreached
    plain = _object(data_path, 1)
    zero = _object(data_path, 1, regularizers=[{"type": "obj_l2", "weight": 0.0}])
    np.testing.assert_array_equal(zero, plain)
    assert np.abs(plain - start)[~mask].max() > 1e-3  # the data term did move the scanned region
