"""Studies end to end on SQLite: trials, values, attributes, artifacts, failures, pruning, export."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.artifacts import get_all_artifact_meta
from optuna.trial import TrialState

from phaser.plan import load_plans
from phaser.run import run_plan
from phaser_opt.cli import main
from phaser_opt.runner import open_study, run_study
from phaser_opt.scoring import TrialRun, metric_value
from phaser_opt.study import load_study
from phaser_opt.truth import load_truth
from tests.phaser_opt.conftest import TEMPLATE, write_study

BASELINE_LR = 0.002  # far too small for 6 iterations: a baseline any sampler should beat


def run_quietly(path: Path, **kwargs) -> optuna.Study:
    return run_study(load_study(path), stream=io.StringIO(), **kwargs)


@pytest.fixture(scope="module")
def tpe_study(tmp_path_factory: pytest.TempPathFactory, dataset_file: Path) -> tuple[Path, optuna.Study]:
    path = write_study(tmp_path_factory.mktemp("tpe"), dataset_file, enqueue=[{"lr": BASELINE_LR}])
    return path, run_quietly(path)


def test_tpe_study_beats_its_enqueued_baseline(tpe_study):
    _, study = tpe_study
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    baseline = trials[0]
    assert baseline.params == {"lr": BASELINE_LR} and baseline.user_attrs["enqueued"]
    assert study.best_value < 0.5 * baseline.value
    assert study.metric_names == ["mse"]
    assert "template" in study.user_attrs and "lr" in study.user_attrs["template"]


def test_every_trial_keeps_its_attributes_and_artifacts(tpe_study):
    _, study = tpe_study
    for trial in study.get_trials():
        attrs = trial.user_attrs
        assert attrs["metric.mse"] == pytest.approx(trial.value)
        # the pair's rmse squared is the mse; the potential error is the rmse over sigma(200 kV)
        assert attrs["metric.potential_error"] == pytest.approx(math.sqrt(trial.value) / 7.2884e-4, rel=1e-3)
        for key in ("metric.ssim", "metric.frc_resolution_A", "metric.final_error", "wall_time_s", "iterations"):
            assert key in attrs, key
        assert attrs["iterations"] == 6
        assert f"learning_rate: {trial.params['lr']}" in attrs["plan_yaml"]
        assert len(attrs["data_fingerprint"]) == 16 and "optuna" in attrs["versions"]
        names = {m.filename for m in get_all_artifact_meta(trial, storage=study._storage)}
        assert {"object_phase.png", "probe.png", "error.png", "frc.png", "difference.png", "plan.yaml"} <= names
        assert "object_phase.npy" in names


def test_the_same_command_resumes_up_to_the_trial_count(tpe_study):
    path, study = tpe_study
    again = run_quietly(path)  # already complete: nothing runs
    assert len(again.get_trials()) == 4
    more = run_quietly(path, n_trials=5)
    assert [t.number for t in more.get_trials()] == [0, 1, 2, 3, 4]
    assert more.get_trials()[0].params == {"lr": BASELINE_LR}  # the enqueued point ran only once


def test_best_plan_runs_and_reproduces_the_trials_value(tpe_study, tmp_path):
    path, study = tpe_study
    out = tmp_path / "best.yaml"
    assert main(["best", str(path), "-o", str(out)]) == 0
    text = out.read_text()
    best = study.best_trial
    assert f"trial {best.number} (best)" in text.splitlines()[0]
    assert "!float" not in text and "$float" not in text
    (plan,) = load_plans(out)
    state = run_plan(plan)
    loaded = load_study(path)
    value = metric_value("mse", TrialRun(state, plan, 0.0, 0.0), load_truth(loaded.spec.truth, loaded.resolve), {})
    assert value == pytest.approx(best.value, rel=1e-4)


def test_report_and_status(tpe_study, tmp_path, capsys):
    path, study = tpe_study
    report = tmp_path / "report.html"
    assert main(["report", str(path), "-o", str(report)]) == 0
    page = report.read_text()
    assert "phaser-opt study tiny" in page and "Top " in page and "Optimization history" in page
    assert "Gallery" in page and "Parameter importances" in page
    # self-contained: plotly's JavaScript is inside the page, no script is fetched
    assert 'src="http' not in page and page.count("Plotly.newPlot") >= 3 and len(page) > 1_000_000
    assert main(["status", str(path)]) == 0
    out = capsys.readouterr().out
    assert "enqueued" in out and out.count("complete") >= 4


def test_gp_study_is_deterministic_and_beats_the_baseline(tmp_path, dataset_file):
    pytest.importorskip("torch", reason="the GP sampler needs torch (the `gp` extra)")
    values = []
    for run in ("a", "b"):
        path = write_study(
            tmp_path / run,
            dataset_file,
            sampler={"type": "gp", "seed": 1, "options": {"n_startup_trials": 2}},
            enqueue=[{"lr": BASELINE_LR}],
            artifacts={"enabled": False},
        )
        study = run_quietly(path)
        values.append([round(t.params["lr"], 12) for t in study.get_trials()])
        assert study.best_value < 0.5 * study.get_trials()[0].value
    assert values[0] == values[1]


def test_an_invalid_sampled_plan_fails_only_its_trial(tmp_path, dataset_file):
    template = TEMPLATE.replace("grouping: 16", "grouping: !choice {options: [16, 0], name: grouping}")
    path = write_study(
        tmp_path,
        dataset_file,
        template_text=template,
        enqueue=[{"grouping": 0, "lr": 0.05}, {"grouping": 16, "lr": 0.05}],
        n_trials=2,
        artifacts={"enabled": False},
    )
    study = run_quietly(path)
    failed, complete = study.get_trials()
    assert failed.state == TrialState.FAIL and complete.state == TrialState.COMPLETE
    reason = failed.user_attrs["fail_reason"]
    assert "engines[0].grouping" in reason and "invalid" in reason
    assert "grouping: 0" in failed.user_attrs["plan_yaml"]  # the plan that failed is kept


def test_a_diverging_trial_is_pruned_with_its_reason(tmp_path, dataset_file):
    template = TEMPLATE.replace("type: adam, learning_rate: !float", "type: sgd, learning_rate: !float").replace(
        "high: 0.2", "high: 1.0e+12"
    )
    path = write_study(
        tmp_path, dataset_file, template_text=template, enqueue=[{"lr": 1e12}], n_trials=1, artifacts={"enabled": False}
    )
    (trial,) = run_quietly(path).get_trials()
    assert trial.state == TrialState.PRUNED
    assert trial.user_attrs["prune_reason"].startswith("diverged")


def test_pruner_stops_a_poor_trial_at_a_report(tmp_path, dataset_file):
    path = write_study(
        tmp_path,
        dataset_file,
        pruner={"type": "threshold", "options": {"upper": 1e-9}},  # every report is above it
        n_trials=1,
        artifacts={"enabled": False},
    )
    (trial,) = run_quietly(path).get_trials()
    assert trial.state == TrialState.PRUNED
    assert trial.user_attrs["prune_reason"] == f"pruned at iteration 2 (value {trial.intermediate_values[2]:.5g})"


def test_heldout_study_never_shows_the_held_out_patterns_to_the_reconstruction(tmp_path, dataset_file):
    path = write_study(
        tmp_path,
        dataset_file,
        truth=None,
        objectives=[{"metric": "heldout_loss", "options": {"fraction": 0.25, "seed": 0}}, {"metric": "wall_time"}],
        sampler={"type": "nsga2", "seed": 0},
        enqueue=[{"lr": 0.05}],
        n_trials=1,
        artifacts={"enabled": False},
    )
    (trial,) = run_quietly(path).get_trials()
    assert trial.state == TrialState.COMPLETE and len(trial.values) == 2
    assert trial.values[0] == trial.user_attrs["metric.heldout_loss"] > 0


def test_holdout_patterns_do_not_change_the_reconstruction(dataset_file):
    from phaser.metrics import split_holdout
    from phaser.plan import validate_plan
    from phaser.run import load_data
    from tests.helpers import plan_for

    engine = {
        "type": "gradient",
        "niter": 3,
        "grouping": 16,
        "noise_model": {"type": "poisson", "eps": 0.1},
        "solvers": {"object": {"type": "adam", "learning_rate": 0.05}},
        "update_probe": False,
    }
    plan = validate_plan(plan_for(dataset_file, [engine], name="h", seed=1))
    data = load_data(plan, np.random.default_rng(0))
    heldout = split_holdout(64, 0.25, seed=0)[1]
    first = run_plan(plan, data=data, holdout=heldout)
    data.patterns[heldout] = 1e6  # nonsense where nobody may look
    second = run_plan(plan, data=data, holdout=heldout)
    np.testing.assert_array_equal(np.asarray(first.object_slices), np.asarray(second.object_slices))
    assert first.n_positions == 64  # every position back, the held-out ones at their initial place
    np.testing.assert_allclose(first.positions_A[heldout], first.initial_positions_A[heldout])
    data.patterns[np.setdiff1d(np.arange(64), heldout)[0]] *= 2  # a training pattern does matter
    third = run_plan(plan, data=data, holdout=heldout)
    assert not np.array_equal(np.asarray(first.object_slices), np.asarray(third.object_slices))


def test_worker_load_without_the_study_is_a_clear_error(tmp_path, dataset_file):
    loaded = load_study(write_study(tmp_path, dataset_file))
    with pytest.raises(ValueError, match="does not exist"):
        open_study(loaded, create=False)


def test_every_builtin_metric_as_an_objective(tmp_path, dataset_file):
    objectives = [
        {"metric": "frc", "options": {"threshold": "half-bit"}},
        {"metric": "frc", "options": {"mode": "auc"}},
        {"metric": "ssim"},
        {"metric": "two_half_frc"},
        {"metric": "final_error"},
        {"metric": "wall_time"},
        {"metric": "peak_memory"},
    ]
    path = write_study(tmp_path / "twice", dataset_file, objectives=objectives, sampler={"type": "nsga2", "seed": 0})
    with pytest.raises(Exception, match="a metric appears twice"):
        load_study(path)
    del objectives[1]
    path = write_study(
        tmp_path / "all", dataset_file, objectives=objectives, sampler={"type": "nsga2", "seed": 0}, n_trials=1
    )
    (trial,) = run_quietly(path).get_trials()
    assert trial.state == TrialState.COMPLETE, trial.user_attrs.get("fail_reason")
    frc_half_bit, ssim, two_half, final_error, wall_time, peak_memory = trial.values
    assert frc_half_bit == pytest.approx(trial.user_attrs["metric.frc_half_bit_resolution_A"])
    assert 0 < ssim <= 1 and ssim == trial.user_attrs["metric.ssim"]
    assert 0.3 < two_half < 50  # A: two reconstructions of 32 patterns each resolve something
    assert final_error > 0 and wall_time == pytest.approx(trial.user_attrs["wall_time_s"], abs=0.01)
    assert peak_memory > 100  # MB: a Python process with JAX loaded
    assert load_study(path).spec.directions == ["minimize", "maximize", "minimize", "minimize", "minimize", "minimize"]


def test_frc_area_under_the_curve_is_maximised_and_rises_with_quality(tmp_path, dataset_file):
    path = write_study(
        tmp_path,
        dataset_file,
        objectives=[{"metric": "frc", "options": {"mode": "auc"}}],
        enqueue=[{"lr": 0.002}, {"lr": 0.05}],
        n_trials=2,
        artifacts={"enabled": False},
    )
    study = run_quietly(path)
    poor, good = study.get_trials()
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE
    assert 0 < poor.value < good.value <= 1
    assert good.user_attrs["metric.mse"] < poor.user_attrs["metric.mse"]
