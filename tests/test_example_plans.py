"""Every plan in plans/examples runs end to end on small simulated data with a falling error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from phaser.plan import validate_plan
from phaser.run import run_plan
from tests.helpers import simulated_file

EXAMPLES = Path(__file__).resolve().parents[1] / "plans" / "examples"


@pytest.fixture(scope="module")
def data_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The two datasets the example plans name, on an 8x8 scan to keep the test fast."""
    folder = tmp_path_factory.mktemp("examples")
    simulated_file(folder / "sim_1slice.h5")
    simulated_file(
        folder / "sim_4slice.h5",
        n_slices=4,
        slice_thickness_A=10.0,
        probe_modes_weights=[1.0, 0.5],
        position_jitter_A=0.1,
    )
    return folder


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.stem)
def test_example_plan_runs(path: Path, data_folder: Path) -> None:
    data = yaml.safe_load(path.read_text())
    data["raw_data"]["path"] = str(data_folder / Path(data["raw_data"]["path"]).name)
    for engine in data["engines"]:
        engine["niter"] = min(engine["niter"], 8)
        engine["save"] = engine["save_images"] = False
    state = run_plan(validate_plan(data))
    history = state.error_history
    assert all(np.isfinite(history)) and history[-1] < history[0]
    assert state.n_slices == len(np.atleast_1d(state.slice_thicknesses_A))
    last = data["engines"][-1]
    assert np.asarray(state.probe_modes).shape[0] == last.get("probe_modes", 1)
