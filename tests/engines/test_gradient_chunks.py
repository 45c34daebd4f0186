"""The gradient engine's chunked groups: cutting a device's share of a group into chunks (to keep a
chunk's multislice waves in the CPU's cache) must not change a single update.

One iteration of the same plan runs with whole shares and with chunks of 2 positions: the object
(both slices), the probe (two modes), the positions and the recorded loss and error must agree to
float32 rounding. The plan updates all of them, carries a regularizer (added once per group, not
once per chunk) and uses a grouping of 10 over 64 positions, so groups are uneven and padded.
Data: 8x8 scan, 32x32 patterns, 2 slices (``tests.helpers.DATASET_DEFAULTS``).
"""

from __future__ import annotations

import numpy as np
import pytest

import phaser.engines.gradient as gradient
from phaser.backend import to_numpy
from phaser.plan import validate_plan
from phaser.run import run_plan
from tests.helpers import plan_for, simulated_file


@pytest.fixture(scope="module")
def data_path(tmp_path_factory: pytest.TempPathFactory):
    return simulated_file(tmp_path_factory.mktemp("gradient_chunks") / "sim.h5", n_slices=2)[1]


def _run(path, niter: int, chunk: int, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(gradient, "cache_chunk", lambda *args: chunk)
    engine = {
        "type": "gradient",
        "niter": niter,
        "grouping": 10,
        "probe_modes": 2,
        "noise_model": {"type": "poisson", "eps": 0.1},
        "solvers": {
            "object": {"type": "adam", "learning_rate": 0.05},
            "probe": {"type": "adam", "learning_rate": 0.02},
            "positions": {"type": "sgd", "learning_rate": 2.0},
        },
        "update_positions": True,
        "regularizers": [{"type": "obj_l2", "weight": 3.0}],
    }
    plan = plan_for(path, [engine], slices={"n": 2, "slice_thickness": 10.0})
    return run_plan(validate_plan(plan))


def test_chunked_groups_give_the_same_iteration(data_path, monkeypatch: pytest.MonkeyPatch) -> None:
    start = _run(data_path, 0, 0, monkeypatch)
    whole = _run(data_path, 1, 0, monkeypatch)
    chunked = _run(data_path, 1, 2, monkeypatch)
    for name in ("object_slices", "probe_modes", "positions_A"):
        before, a, b = (to_numpy(getattr(state, name)) for state in (start, whole, chunked))
        tolerance = 2e-5 * np.max(np.abs(a))
        assert np.max(np.abs(a - before)) > 20 * tolerance, f"{name} did not move: the comparison would be empty"
        np.testing.assert_allclose(b, a, rtol=0, atol=tolerance, err_msg=name)
    np.testing.assert_allclose(chunked.loss_history, whole.loss_history, rtol=1e-5)
    np.testing.assert_allclose(chunked.error_history, whole.error_history, rtol=1e-5)
