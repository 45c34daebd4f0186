"""Running plans end to end: outputs, checkpoints, resume, interruption, divergence, CLI."""

from __future__ import annotations

import copy
import io
from pathlib import Path

import numpy as np
import pytest
import yaml

from phaser.cli import main
from phaser.io.state_file import StateFileError, load_state, read_plan_yaml, read_state_header, save_state
from phaser.observers import CallbackObserver, EarlyTermination, Observer, ProgressObserver
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


# --- resume: the iteration count, schedules and engine continue where the state stopped ----------


def epie_plan(data_path: Path, niters: tuple[int, ...] = (6,), **fields) -> dict:
    """Deterministic ePIE (no shuffling) whose probe update switches on at iteration 4 of each engine."""
    engine = {
        "type": "conventional",
        "grouping": 16,
        "shuffle_groups": False,
        "noise_model": "amplitude",
        "solver": {"type": "epie", "beta_object": {"type": "piecewise", "init": 0.5, "steps": {4: 0.2}}},
        "update_probe": {"after": 3},
    }
    engines = [{**engine, "niter": n} for n in niters]
    if len(engines) > 1:
        engines[1]["sim_shape"] = [24, 24]  # the resumed engine's grid is not the data's
    return plan_for(data_path, engines, name="resumable", backend="numpy", **fields)


class Recorder(Observer):
    def __init__(self):
        self.calls: list[str] = []

    def engine_started(self, index, engine, state):
        self.calls.append(f"engine{index}")

    def engine_resumed(self, index, engine, state, first_iteration):
        self.calls.append(f"resumed{index}@{first_iteration}")

    def iteration_done(self, state, sync, i, niter):
        self.calls.append(f"it{i}")
        return False


def interrupted(plan, out: Path, at_engine: int, at_iteration: int) -> Path:
    """Run ``plan`` with outputs in ``out`` and Ctrl-C after iteration ``at_iteration`` of ``at_engine``."""
    engine = {"index": -1}

    class Stop(Observer):
        def engine_started(self, index, engine_plan, state):
            engine["index"] = index

        def iteration_done(self, state, sync, i, niter):
            if engine["index"] == at_engine and i == at_iteration:
                raise KeyboardInterrupt
            return False

    with pytest.raises(KeyboardInterrupt):
        run_plan(plan, [OutputObserver(plan, out), Stop()])
    return out / "interrupted.h5"


@pytest.mark.parametrize("niters, at", [((6,), (0, 3)), ((2, 4), (1, 2)), ((2, 4), (0, 2))])
def test_resume_runs_the_remaining_iterations_with_their_schedules(dataset: Path, tmp_path: Path, niters, at):
    plan = validate_plan(epie_plan(dataset, niters))
    whole = run_plan(plan)
    state_path = interrupted(plan, tmp_path / "out", *at)
    data = epie_plan(dataset, niters, init={"state": str(state_path), "resume": True})
    recorder = Recorder()
    resumed = run_plan(validate_plan(data), [recorder])
    assert resumed.iteration == whole.iteration == sum(niters)
    assert resumed.error_history == pytest.approx(whole.error_history, rel=1e-4)
    np.testing.assert_allclose(resumed.object_slices, whole.object_slices, rtol=1e-4, atol=1e-5)
    engine, done = at
    if done == niters[engine]:  # the state is the end of an engine: the next one starts afresh
        engine, done = engine + 1, 0
    expected = [f"engine{engine}"] + ([f"resumed{engine}@{done + 1}"] if done else [])
    expected += [f"it{i}" for i in range(done + 1, niters[engine] + 1)]
    for later in range(engine + 1, len(niters)):
        expected += [f"engine{later}"] + [f"it{i}" for i in range(1, niters[later] + 1)]
    assert recorder.calls == expected


def test_a_state_file_records_where_it_stopped(dataset: Path, tmp_path: Path) -> None:
    plan = validate_plan(epie_plan(dataset, (2, 4)))
    header = read_state_header(interrupted(plan, tmp_path / "out", 1, 3))
    assert (header.iteration, header.engine_index, header.engine_iteration) == (5, 1, 3)
    assert header.probe_shape == (24, 24) and header.n_positions == 64


def test_init_state_resumes_an_unfinished_run_of_the_same_plan_only(dataset: Path, tmp_path: Path) -> None:
    plan = validate_plan(epie_plan(dataset))
    state_path = interrupted(plan, tmp_path / "out", 0, 3)
    same = run_plan(validate_plan(epie_plan(dataset, init={"state": str(state_path)})))
    assert same.iteration == 6  # resumed: 3 more
    fresh = run_plan(validate_plan(epie_plan(dataset, init={"state": str(state_path), "resume": False})))
    assert fresh.iteration == 9  # every engine from its first iteration
    other = run_plan(validate_plan(epie_plan(dataset, (5,), init={"state": str(state_path)})))
    assert other.iteration == 8  # another plan: a warm start


def test_resuming_a_finished_run_says_nothing_is_left(dataset: Path, tmp_path: Path) -> None:
    plan = validate_plan(epie_plan(dataset, (2,)))
    run_plan(plan, [OutputObserver(plan, tmp_path / "out")])
    final = tmp_path / "out" / "final.h5"
    with pytest.raises(StateFileError, match="final.h5 is the end of the run .* nothing is left to resume"):
        run_plan(validate_plan(epie_plan(dataset, (2,), init={"state": str(final), "resume": True})))
    assert run_plan(validate_plan(epie_plan(dataset, (2,), init={"state": str(final)}))).iteration == 4


def test_a_state_without_its_place_resumes_by_its_iteration_count(dataset: Path, tmp_path: Path) -> None:
    first = run_plan(validate_plan(epie_plan(dataset, (3,))))
    save_state(tmp_path / "old.h5", first)  # as files written before the place in the plan was recorded
    assert read_state_header(tmp_path / "old.h5").engine_iteration is None
    recorder = Recorder()
    plan = validate_plan(epie_plan(dataset, (6,), init={"state": str(tmp_path / "old.h5"), "resume": True}))
    assert run_plan(plan, [recorder]).iteration == 6
    assert recorder.calls == ["engine0", "resumed0@4", "it4", "it5", "it6"]


def test_cli_resume_and_the_progress_bar(dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan_path = tmp_path / "plan.yaml"
    plan_path.write_text(yaml.safe_dump(epie_plan(dataset, (6,))))
    state_path = interrupted(validate_plan(epie_plan(dataset, (6,))), tmp_path / "first", 0, 4)
    stream = io.StringIO()
    progress = ProgressObserver(stream)
    data = epie_plan(dataset, (6,), init={"state": str(state_path), "resume": True})
    run_plan(validate_plan(data), [progress])
    frames = stream.getvalue()
    assert " 4/6 " in frames and " 6/6 " in frames and " 1/6 " not in frames
    capsys.readouterr()
    assert main(["run", str(plan_path), "--resume", str(state_path), "--out-dir", str(tmp_path / "o")]) == 0
    assert "finished: 6 iterations" in capsys.readouterr().out
    assert load_state(tmp_path / "o" / "resumable" / "final.h5").iteration == 6


def test_the_resolved_plan_beside_the_outputs_runs_again(
    dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "plans").mkdir()
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "sim.h5").write_bytes(dataset.read_bytes())
    data = epie_plan("../data/sim.h5", (1,))
    data["init"]["tilt"] = {"type": "custom", "path": "../data/tilt.npy"}
    np.save(tmp_path / "data" / "tilt.npy", np.zeros((64, 2)))
    (tmp_path / "plans" / "p.yaml").write_text(yaml.safe_dump(data))
    monkeypatch.chdir(tmp_path)
    assert main(["run", "plans/p.yaml", "--out-dir", "out"]) == 0
    written = Path("out/resumable/plan.yaml")
    assert main(["validate", str(written)]) == 0
    assert main(["run", str(written), "--out-dir", "again"]) == 0
    assert load_state("again/resumable/final.h5").iteration == 1


def test_the_gradient_engine_resumes_at_its_iteration(dataset: Path, tmp_path: Path) -> None:
    plan = validate_plan(plan_data(dataset, niter=4))
    state_path = interrupted(plan, tmp_path / "out", 0, 2)
    recorder = Recorder()
    data = plan_data(dataset, niter=4)
    data["init"] = {"state": str(state_path)}  # the same plan, unfinished: resumed without asking
    resumed = run_plan(validate_plan(data), [recorder])
    assert recorder.calls == ["engine0", "resumed0@3", "it3", "it4"]
    assert resumed.iteration == 4 and len(resumed.error_history) == 4
