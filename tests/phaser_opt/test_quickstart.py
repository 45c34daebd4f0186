"""The README's main job, `phaser-opt studies/quickstart.yaml`, at a reduced trial count."""

from __future__ import annotations

import shutil
from pathlib import Path

import optuna
from optuna.trial import TrialState

from phaser_opt.cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_quickstart_study_runs_from_a_fresh_copy(tmp_path, capsys):
    for relative in ("studies/quickstart.yaml", "plans/templates/quickstart.yaml", "ground_truth/SrTiO3_001.yaml"):
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / relative, tmp_path / relative)
    study_file = tmp_path / "studies/quickstart.yaml"
    assert main(["validate", str(study_file)]) == 0
    assert main([str(study_file), "--n-trials", "3"]) == 0
    captured = capsys.readouterr()
    assert "dataset made" in captured.err and "Top " in captured.out and "phaser-opt best" in captured.out
    assert (tmp_path / "data/quickstart_sto.h5").is_file()
    study = optuna.load_study(study_name="quickstart", storage=f"sqlite:///{tmp_path / 'studies/quickstart.db'}")
    trials = study.get_trials()
    assert len(trials) == 3 and trials[0].user_attrs["enqueued"]
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    assert trials[0].state == TrialState.COMPLETE and 0 < trials[0].value < 2000  # V*A
    assert (tmp_path / "studies/quickstart_artifacts").is_dir()
