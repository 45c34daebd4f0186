"""numpy, jax and cupy give the same iterate (float32 tolerance); cupy runs only where a GPU is."""

from __future__ import annotations

import numpy as np
import pytest

from phaser.backend import backend_available, get_backend, to_numpy
from phaser.physics.multislice import forward_intensity
from phaser.plan import validate_plan
from phaser.run import run_plan
from tests.helpers import plan_for, simulated_file

OTHER_BACKENDS = [
    "jax",
    pytest.param("cupy", marks=pytest.mark.skipif(not backend_available("cupy"), reason="cupy needs an NVIDIA GPU")),
]


@pytest.fixture(scope="module")
def data_path(tmp_path_factory: pytest.TempPathFactory):
    path = tmp_path_factory.mktemp("backends") / "sim.h5"
    return simulated_file(path, scan_shape=(6, 6), n_slices=2, slice_thickness_A=10.0)[1]


def _run(path, backend: str, solver: dict):
    engine = {"type": "conventional", "niter": 2, "grouping": 8, "noise_model": {"type": "amplitude"}, "solver": solver}
    plan = plan_for(path, [engine], backend=backend, seed=2, slices={"n": 2, "slice_thickness": 10.0})
    return run_plan(validate_plan(plan))


@pytest.mark.parametrize("backend", OTHER_BACKENDS)
@pytest.mark.parametrize("solver", [{"type": "epie", "beta_object": 0.3}, {"type": "lsqml"}], ids=["epie", "lsqml"])
def test_conventional_engines_agree_with_numpy(backend: str, solver: dict, data_path) -> None:
    reference = _run(data_path, "numpy", solver)
    other = _run(data_path, backend, solver)
    np.testing.assert_allclose(to_numpy(other.object_slices), to_numpy(reference.object_slices), atol=1e-4)
    np.testing.assert_allclose(
        to_numpy(other.probe_modes),
        to_numpy(reference.probe_modes),
        atol=1e-4 * float(np.abs(to_numpy(reference.probe_modes)).max()),
    )
    np.testing.assert_allclose(other.error_history, reference.error_history, rtol=1e-4)


@pytest.mark.parametrize("backend", OTHER_BACKENDS)
def test_forward_model_agrees_with_numpy(backend: str) -> None:
    rng = np.random.default_rng(0)
    probe = (rng.normal(size=(2, 16, 16)) + 1j * rng.normal(size=(2, 16, 16))).astype(np.complex64)
    obj = np.exp(1j * rng.normal(scale=0.3, size=(2, 40, 40))).astype(np.complex64)
    positions = rng.uniform(10, 30, size=(5, 2)).astype(np.float32)
    props = np.exp(1j * rng.normal(size=(1, 16, 16))).astype(np.complex64)
    expected = forward_intensity(np, probe, obj, positions, props)
    xp = get_backend(backend).xp
    got = forward_intensity(xp, xp.asarray(probe), xp.asarray(obj), xp.asarray(positions), xp.asarray(props))
    np.testing.assert_allclose(to_numpy(got), expected, rtol=1e-5, atol=1e-5 * float(expected.max()))


def test_gradient_engine_refuses_numpy_with_a_clear_message(data_path) -> None:
    from phaser.plan import PlanError

    with pytest.raises(PlanError, match="jax backend"):
        validate_plan(
            {
                "name": "g",
                "backend": "numpy",
                "raw_data": {"type": "manual", "path": str(data_path)},
                "init": {"probe": {"type": "focused", "conv_angle": 20.0}},
                "engines": [
                    {
                        "type": "gradient",
                        "noise_model": "amplitude",
                        "solvers": {
                            "object": {"type": "adam", "learning_rate": 0.01},
                            "probe": {"type": "adam", "learning_rate": 0.01},
                        },
                    }
                ],
            }
        )
