"""Running plans end to end: outputs, checkpoints, resume, interruption, divergence, CLI."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import yaml

from phaser.cli import main
from phaser.io.state_file import StateFileError, load_state, read_plan_yaml, save_state
from phaser.observers import CallbackObserver, EarlyTermination, Observer
from phaser.output import OutputObserver
from phaser.plan import validate_plan
from phaser.run import run_plan
from tests.helpers import plan_for, simulated_file


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return simulated_file(tmp_path_factory.mktemp("data") / "sim.h5")[1]


def plan_data(data_path: Path, niter: int = 4) -> dict:
    engine = {
        "type": "gradient",
        "niter": niter,
        "grouping": 16,
        "noise_model": {"type": "amplitude"},
        "solvers": {
            "object": {"type": "adam", "learning_rate": 0.05},
            "probe": {"type": "adam", "learning_rate": 0.01},
        },
        "save": {"every": 2},
        "save_images": {"every": 4},
    }
    return plan_for(data_path, [engine], name="run", seed=3)


def test_run_writes_checkpoints_images_and_resolved_plan(dataset: Path, tmp_path: Path) -> None:
    plan = validate_plan(plan_data(dataset))
    out = tmp_path / "out"
    state = run_plan(plan, [OutputObserver(plan, out)])
    names = sorted(p.name for p in out.iterdir())
    assert {"plan.yaml", "final.h5", "iter002.h5", "iter004.h5"} <= set(names)
    assert "object_phase_stack_iter004.png" in names  # one figure per image kind
    assert "probe_iter004.png" in names
    assert validate_plan(yaml.safe_load((out / "plan.yaml").read_text())) == plan
    saved = load_state(out / "final.h5")
    assert saved.iteration == 4 and len(saved.error_history) == 4
    np.testing.assert_allclose(saved.object_slices, np.asarray(state.object_slices))
    assert validate_plan(yaml.safe_load(read_plan_yaml(out / "final.h5"))) == plan


def test_resume_from_state_continues_the_history(dataset: Path, tmp_path: Path) -> None:
    first = run_plan(validate_plan(plan_data(dataset, niter=3)))
    save_state(tmp_path / "s.h5", first)
    data = plan_data(dataset, niter=2)
    data["init"] = {"state": str(tmp_path / "s.h5")}
    resumed = run_plan(validate_plan(data))
    assert resumed.iteration == 5
    assert resumed.error_history[:3] == pytest.approx(first.error_history)


def test_same_seed_same_result(dataset: Path) -> None:
    a = run_plan(validate_plan(plan_data(dataset, niter=2)))
    b = run_plan(validate_plan(plan_data(dataset, niter=2)))
    np.testing.assert_array_equal(np.asarray(a.object_slices), np.asarray(b.object_slices))


def test_interrupted_run_keeps_its_last_state(dataset: Path, tmp_path: Path) -> None:
    plan = validate_plan(plan_data(dataset, niter=6))
    out = tmp_path / "out"

    def interrupt(state, i, niter):
        if i == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_plan(plan, [OutputObserver(plan, out), CallbackObserver(interrupt)])
    saved = load_state(out / "interrupted.h5")
    assert saved.iteration == 3 and np.all(np.isfinite(saved.object_slices))


def test_divergence_raises_and_keeps_the_last_finite_iterate(dataset: Path, tmp_path: Path) -> None:
    data = plan_data(dataset, niter=5)
    data["engines"][0]["solvers"]["object"] = {"type": "sgd", "learning_rate": 1e9}
    plan = validate_plan(data)
    out = tmp_path / "out"
    with pytest.raises(FloatingPointError, match="lower the learning rates"):
        run_plan(plan, [OutputObserver(plan, out)])
    saved = load_state(out / "interrupted.h5")
    assert np.all(np.isfinite(saved.object_slices)) and np.all(np.isfinite(saved.error_history))


def test_early_termination_stops_a_stalled_engine(dataset: Path) -> None:
    data = plan_data(dataset, niter=30)
    data["engines"][0]["solvers"] = {"object": {"type": "sgd", "learning_rate": 0.0}}
    data["engines"][0]["update_probe"] = False
    state = run_plan(validate_plan(data), [EarlyTermination(patience=3)])
    assert state.iteration < 30


def test_observers_hear_every_step(dataset: Path) -> None:
    calls: list[str] = []

    class Recorder(Observer):
        def run_started(self, plan, state):
            calls.append("run")

        def engine_started(self, index, engine, state):
            calls.append(f"engine{index}")

        def iteration_done(self, state, sync, i, niter):
            calls.append(f"it{i}")
            return False

        def run_finished(self, state, error):
            calls.append("done")

    data = plan_data(dataset, niter=2)
    data["engines"].append(copy.deepcopy(data["engines"][0]))
    run_plan(validate_plan(data), [Recorder()])
    assert calls == ["run", "engine0", "it1", "it2", "engine1", "it1", "it2", "done"]


def test_truncated_state_file_gives_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "cut.h5"
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 10)
    with pytest.raises(StateFileError, match="cut.h5"):
        load_state(path)


def test_cli_run_and_validate(dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan_path = tmp_path / "plan.yaml"
    plan_path.write_text(yaml.safe_dump(plan_data(dataset, niter=2)))
    assert main(["validate", str(plan_path)]) == 0
    assert main(["run", str(plan_path), "--out-dir", str(tmp_path / "o")]) == 0
    assert (tmp_path / "o" / "run" / "final.h5").exists()
    assert "finished: 2 iterations" in capsys.readouterr().out
    broken = plan_data(dataset)
    broken["engines"][0]["noise_model"] = "poison"
    plan_path.write_text(yaml.safe_dump(broken))
    assert main(["validate", str(plan_path)]) == 2
    assert "engines[0].noise_model.type: 'poison' is not one of" in capsys.readouterr().err


def test_cli_simulate_then_run_example_plan(tmp_path: Path) -> None:
    """The README's main job, on a smaller scan: simulate, then run the single-slice example plan."""
    examples = Path(__file__).resolve().parents[1] / "plans" / "examples"
    data = yaml.safe_load((examples / "gradient_1slice.yaml").read_text())
    data["raw_data"]["path"] = str(tmp_path / "new" / "sim.h5")
    data["engines"][0]["niter"] = 3
    assert main(["simulate", "--out", str(tmp_path / "new" / "sim.h5"), "--scan", "8", "8"]) == 0
    plan_path = tmp_path / "plan.yaml"
    plan_path.write_text(yaml.safe_dump(data))
    assert main(["run", str(plan_path), "--out-dir", str(tmp_path / "o")]) == 0
