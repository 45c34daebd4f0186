"""How much a cost regularizer moves the object in one gradient-engine iteration.

The plan's loss is ``data + weight * cost``, each group carrying its share ``G_k / P`` of the cost
(``G_k`` positions of ``P``), and the solver sees the group's gradient divided by ``G_k sum |P|^2``
as in the original package (:func:`phaser.solvers.gradient_scales`). Object pixels no probe window
reaches have no data gradient, so there each group's SGD step with ``obj_l2`` (``weight * sum
|O - 1|^2``, descent direction ``-2 weight (O - 1)``) multiplies ``O - 1`` by ``1 - c`` with
``c = 2 lr weight / (P sum |P|^2)``, whatever the group's size: one iteration of ``n`` groups gives
``(1 - c)^n``. The learning rate is chosen per grouping so that ``n c = 0.02``. Data: 8x8 scan,
32x32 patterns (``tests.helpers.DATASET_DEFAULTS``).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from phaser.backend import to_numpy
from phaser.plan import validate_plan
from phaser.run import run_plan
from tests.helpers import plan_for, simulated_file

WEIGHT = 1.0
TOTAL_SHRINK = 0.02  # n c: second-order terms stay below 2e-4
N_POSITIONS = 64


def _engine(niter: int, grouping: int, regularizers: list[dict], learning_rate: float) -> dict:
    return {
        "type": "gradient",
        "niter": niter,
        "grouping": grouping,
        "obj_pad_px": 8,  # a frame of object pixels no probe window reaches
        "noise_model": {"type": "amplitude"},
        "solvers": {"object": {"type": "sgd", "learning_rate": learning_rate}},
        "update_probe": False,
        "regularizers": regularizers,
    }


@pytest.fixture(scope="module")
def data_path(tmp_path_factory: pytest.TempPathFactory):
    return simulated_file(tmp_path_factory.mktemp("gradient_terms") / "sim.h5")[1]


def _run(path, niter: int, grouping: int = 16, regularizers: list[dict] | None = None, learning_rate: float = 1.0):
    """The state after ``niter`` iterations from a random-phase start (seeded: the same start each run)."""
    plan = plan_for(path, [_engine(niter, grouping, regularizers or [], learning_rate)])
    plan["init"]["object"] = {"type": "random", "sigma": 0.5}  # O - 1 is far from 0 everywhere
    return run_plan(validate_plan(plan))


def _object(path, niter: int, grouping: int = 16, regularizers: list[dict] | None = None, learning_rate: float = 1.0):
    return to_numpy(_run(path, niter, grouping, regularizers, learning_rate).object_slices)[0]


@pytest.fixture(scope="module")
def probe_power(data_path) -> float:
    """``sum |P|^2`` of the initial probe [electrons per pattern]: the probe is not updated."""
    state = _run(data_path, 0)
    assert state.positions_A.shape[0] == N_POSITIONS
    return float(np.sum(np.abs(to_numpy(state.probe_modes)) ** 2))


@pytest.fixture(scope="module")
def unreached(data_path) -> tuple[np.ndarray, np.ndarray]:
    """``(start, mask)``: the starting object and the pixels that the data term leaves unchanged."""
    start = _object(data_path, 0)
    plain = _object(data_path, 1)
    mask = plain == start
    assert 200 < mask.sum() < 0.8 * mask.size, mask.sum()  # a frame around the scan, not the whole object
    return start, mask


@pytest.mark.parametrize(
    ("grouping", "n_groups"), [(16, 4), (10, 7), (64, 1)], ids=["4-groups", "7-uneven-groups", "1-group"]
)
def test_one_iteration_applies_the_regularizer_in_every_groups_share(
    data_path, unreached, probe_power, grouping: int, n_groups: int
) -> None:
    start, mask = unreached
    per_group = TOTAL_SHRINK / n_groups  # c
    learning_rate = per_group * N_POSITIONS * probe_power / (2.0 * WEIGHT)
    after = _object(data_path, 1, grouping, [{"type": "obj_l2", "weight": WEIGHT}], learning_rate)
    expected = (1.0 - per_group) ** n_groups
    before_dev, after_dev = (start - 1.0)[mask], (after - 1.0)[mask]
    factor = np.sum(np.real(np.conj(before_dev) * after_dev)) / np.sum(np.abs(before_dev) ** 2)
    # a term weighted k times too strongly gives about 1 - 0.02 k (k = 4: 0.92); the whole cost in
    # every group, 1 - 0.02 P / G; the last of 7 groups (4 positions) scaled by its padded size 10
    # instead of 4, 1 - 0.02 (6 + 0.4) / 7 = 0.9817
    assert factor == pytest.approx(expected, abs=5e-4)
    assert math.isclose(expected, 1.0 - TOTAL_SHRINK, abs_tol=2e-4)
    assert np.all(np.abs(after_dev - expected * before_dev) <= 1e-3 * np.abs(before_dev) + 1e-6)


def test_regularizer_weight_zero_leaves_the_data_update(data_path, unreached) -> None:
    """The regularizer adds to the data update rather than replacing or rescaling it."""
    start, mask = unreached
    plain = _object(data_path, 1)
    zero = _object(data_path, 1, regularizers=[{"type": "obj_l2", "weight": 0.0}])
    np.testing.assert_array_equal(zero, plain)
    assert np.abs(plain - start)[~mask].max() > 1e-3  # the data term did move the scanned region
