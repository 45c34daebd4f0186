"""The gradient engine's chunked groups: cutting a device's share of a group into chunks (to keep a
chunk's multislice waves in the CPU's cache) must not change a single update.

One iteration of the same plan runs with whole shares on every CPU device, and with chunks of 2
positions, on one device in chunks of 3, and on one device whole (the GPU's layout): the object
(both slices), the probe (two modes), the positions and the recorded loss and error must agree to
float32 rounding. The plan updates all of them, carries a regularizer (added once per group, not
once per chunk) and uses a grouping of 10 over 64 positions, so groups are uneven and padded.
Data: 8x8 scan, 32x32 patterns, 2 slices (``tests.helpers.DATASET_DEFAULTS``).
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

import phaser.engines.gradient as gradient
from phaser.backend import to_numpy
from phaser.jax_devices import configure_cpu_devices
from phaser.plan import validate_plan
from phaser.run import run_plan
from tests.helpers import plan_for, simulated_file


@pytest.fixture(scope="module")
def data_path(tmp_path_factory: pytest.TempPathFactory):
    return simulated_file(tmp_path_factory.mktemp("gradient_chunks") / "sim.h5", n_slices=2)[1]


def _run(path, niter: int, chunk: int, monkeypatch: pytest.MonkeyPatch, one_device: bool = False):
    """The plan's state after ``niter`` iterations, with chunks of ``chunk`` positions (0: whole shares);
    ``one_device``: every group on one device, as on a GPU."""
    monkeypatch.setattr(gradient, "cache_chunk", lambda *args: chunk)
    configure_cpu_devices()  # before JAX's first use, as a run would: every core a device
    devices = jax.devices()[:1] if one_device else jax.devices()
    monkeypatch.setattr(gradient, "shard_devices", lambda: devices)
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


LAYOUTS = {"chunks-of-2": (2, False), "one-device-chunks-of-3": (3, True), "gpu-layout": (0, True)}


@pytest.mark.parametrize(("chunk", "one_device"), LAYOUTS.values(), ids=LAYOUTS.keys())
def test_every_group_layout_gives_the_same_iteration(
    data_path, monkeypatch: pytest.MonkeyPatch, chunk: int, one_device: bool
) -> None:
    """Against whole shares on every CPU device: chunked shares, and one device with and without chunks."""
    start = _run(data_path, 0, 0, monkeypatch)
    whole = _run(data_path, 1, 0, monkeypatch)
    other = _run(data_path, 1, chunk, monkeypatch, one_device)
    for name in ("object_slices", "probe_modes", "positions_A"):
        before, a, b = (to_numpy(getattr(state, name)) for state in (start, whole, other))
        tolerance = 2e-5 * np.max(np.abs(a))
        assert np.max(np.abs(a - before)) > 20 * tolerance, f"{name} did not move: the comparison would be empty"
        np.testing.assert_allclose(b, a, rtol=0, atol=tolerance, err_msg=name)
    np.testing.assert_allclose(other.loss_history, whole.loss_history, rtol=1e-5)
    np.testing.assert_allclose(other.error_history, whole.error_history, rtol=1e-5)


def test_later_iterations_reuse_the_first_compilation(data_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Arrays placed on other devices than an iteration's results make the second iteration compile
    again (1.4 s at 1 slice on 2 CPU devices); a run of several iterations compiles at most once."""
    before = gradient._iteration._cache_size()
    state = _run(data_path, 4, 3, monkeypatch)  # chunks of 3: a layout no other test compiles
    assert len(state.error_history) == 4
    assert gradient._iteration._cache_size() - before <= 1
