"""The study viewer's model on a tiny study run here: rows sorted by any metric, a trial's
parameters, metrics and figures; a study that does not exist is a message naming it and its storage."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

pytest.importorskip("optuna", reason="the study viewer needs optuna (pip install phaser-opt)")
pytest.importorskip("phaser_opt", reason="the study viewer needs phaser-opt")

from phaser.widgets.studies import StudyError, StudyModel, study_viewer  # noqa: E402
from tests.helpers import simulated_file  # noqa: E402
from tests.phaser_opt.conftest import write_study  # noqa: E402


@pytest.fixture(scope="module")
def study_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A study of 3 finished trials (6 gradient iterations each on an 8x8 scan), figures uploaded."""
    from phaser_opt.runner import run_study
    from phaser_opt.study import load_study

    root = tmp_path_factory.mktemp("study_widget")
    _, data = simulated_file(root / "sim.h5")
    path = write_study(root / "study", data, n_trials=3)
    run_study(load_study(path), stream=io.StringIO())
    return path


def test_rows_follow_sort_by_and_descending(study_file):
    model = StudyModel.from_file(study_file)
    assert len(model.rows()) == 3 and {"mse", "ssim", "param.lr"} <= set(model.columns())
    model.sort_by = "mse"
    mse = [row["mse"] for row in model.rows()]
    assert mse == sorted(mse)
    model.descending = True
    assert [row["mse"] for row in model.rows()] == sorted(mse, reverse=True)
    model.sort_by = "param.lr"
    lrs = [row["param.lr"] for row in model.rows()]
    assert lrs == sorted(lrs, reverse=True)
    with pytest.raises(Exception, match="nonsense"):
        model.sort_by = "nonsense"


def test_a_trial_has_parameters_metrics_plan_and_figures(study_file):
    model = StudyModel.from_file(study_file)
    assert sorted(model.selected_pair()) == [0, 1]  # the first two trials by number, side by side
    model.compare = 2
    assert model.selected_pair() == [0, 2]
    assert set(model.parameters(2)) == {"lr"} and "mse" in model.metrics(2)
    assert "gradient" in model.plan_yaml(2)
    images = model.images(2)
    assert next(iter(images)) == "object_phase.png" and all(png.startswith(b"\x89PNG") for png in images.values())


def test_the_viewer_forwards_its_controls(study_file):
    pytest.importorskip("ipywidgets", reason="the views need ipywidgets")
    viewer = study_viewer(study_file)
    viewer.sort_by.value = "ssim"
    assert viewer.model.sort_by == "ssim" and "ssim &#9650;" in viewer.table.value
    viewer.compare.value = 2
    assert viewer.model.compare == 2 and len(viewer.panels.children) == 2
    assert "trial 2" in viewer.panels.children[1].children[0].value
    viewer.model.sort_by, viewer.model.selected = "mse", 1  # code changing the model moves the controls
    assert (viewer.sort_by.value, viewer.selected.value) == ("mse", 1)
    assert "trial 1" in viewer.panels.children[0].children[0].value


def test_a_study_that_does_not_exist_names_the_study_and_storage(study_file, tmp_path):
    storage = f"sqlite:///{study_file.parent / 'tiny.db'}"
    with pytest.raises(StudyError, match="'absent'.*tiny.db"):
        StudyModel.from_storage("absent", storage)
    missing = f"sqlite:///{tmp_path / 'nowhere.db'}"
    widget = study_viewer("absent", storage=missing)
    assert "absent" in widget.value and "nowhere.db" in widget.value and "Traceback" not in widget.value
    assert not (tmp_path / "nowhere.db").exists()  # looking did not create a database
    widget = study_viewer(tmp_path / "no_study.yaml")
    assert "no_study.yaml" in widget.value
