"""Study files and commands: every bad input gets a message naming its field or file, no traceback."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import yaml

from phaser_opt.cli import main
from phaser_opt.spec import StudyError
from phaser_opt.storage import StorageError, masked_url, open_storage
from phaser_opt.study import load_study
from phaser_opt.validate import validate_study
from tests.phaser_opt.conftest import TEMPLATE, write_study


def problems_of(path: Path) -> list[tuple[str, str]]:
    with pytest.raises(StudyError) as info:
        validate_study(load_study(path))
    return info.value.problems


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"n_trails": 3}, "n_trails", "unknown key"),
        ({"n_trials": "many"}, "n_trials", "integer"),
        ({"objectives": [{"metric": "msee"}]}, "objectives[0]", "not one of mse"),
        ({"objectives": []}, "objectives", "at least 1"),
        ({"truth": None}, "(study)", "compares with a ground truth"),
        ({"sampler": {"type": "annealing"}}, "sampler.type", "tpe"),
        ({"pruner": {"type": "median", "options": {"n_warmup": 3}}}, "pruner", "n_warmup"),
        ({"sampler": {"type": "tpe", "options": {"n_startup": 3}}}, "sampler", "n_startup"),
        (
            {"objectives": [{"metric": "mse"}, {"metric": "wall_time"}], "pruner": {"type": "median"}},
            ("pruner", "(study)"),
            "cannot prune",
        ),
        ({"objectives": [{"metric": "my.module:score"}]}, "objectives[0]", "needs a direction"),
        ({"truth": {"file": "data.h5", "specimen": "x.yaml"}}, "truth", "exactly one"),
        ({"template": "missing.yaml"}, "template", "file not found"),
        ({"truth": {"file": "nothing.h5"}}, "truth.file", "file not found"),
        ({"storage": "sqlite:////no/such/folder/x.db"}, "storage", "does not exist"),
        ({"storage": "not a url"}, "storage", "not a database URL"),
        ({"enqueue": [{"learning_rate": 0.1}]}, "enqueue[0].learning_rate", "not a parameter"),
        ({"enqueue": [{"lr": 5.0}]}, "enqueue[0].lr", "outside"),
        ({"n_trials": None}, "(study)", "so the study ends"),
        ({"report": {"value": "objective"}}, ("report", "(study)"), "feeds the pruner"),
    ],
)
def test_each_bad_study_field_is_named(tmp_path, dataset_file, fields, field, words):
    path = write_study(tmp_path, dataset_file, **fields)
    with pytest.raises(StudyError) as info:
        validate_study(load_study(path))
    text = str(info.value)
    assert str(path) in text or "template" in text
    fields = field if isinstance(field, tuple) else (field,)
    paths = [p for p, _ in info.value.problems]
    assert any(p.startswith(f) or (f == "(study)" and p == "") for p in paths for f in fields), text
    assert words in text


def test_bad_annotation_in_the_template_is_reported_with_its_path(tmp_path, dataset_file):
    template = TEMPLATE.replace("low: 1.0e-3, high: 0.2, log: true", "low: 0.2, high: 0.1, log: true")
    path = write_study(tmp_path, dataset_file, template_text=template)
    problems = problems_of(path)
    assert problems[0][0] == "engines[0].solvers.object.learning_rate"
    assert "low" in problems[0][1] and "high" in problems[0][1]


def test_a_corner_of_the_space_that_makes_an_invalid_plan_is_caught_before_any_trial(tmp_path, dataset_file):
    template = TEMPLATE.replace("grouping: 16", "grouping: !int {low: 0, high: 16, name: grouping}")
    path = write_study(tmp_path, dataset_file, template_text=template)
    problems = problems_of(path)
    assert any("low point" in p and "engines[0].grouping" in p for p, _ in problems), problems
    assert not (tmp_path / "tiny.db").exists()  # validation touched no storage


def test_validate_command_describes_a_good_study(tmp_path, dataset_file, capsys):
    path = write_study(tmp_path, dataset_file)
    assert main(["validate", str(path)]) == 0
    out = capsys.readouterr().out
    assert "1 parameter(s): lr" in out and "3 concrete plan(s) valid" in out and "mse (minimize)" in out


def test_commands_print_one_message_and_exit_2(tmp_path, dataset_file, capsys):
    path = write_study(tmp_path, dataset_file, objectives=[{"metric": "msee"}])
    assert main([str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "objectives[0]" in err and "Traceback" not in err
    assert main(["validate", str(tmp_path / "absent.yaml")]) == 2
    assert "file not found" in capsys.readouterr().err
    good = write_study(tmp_path / "good", dataset_file)
    assert main(["best", str(good)]) == 2  # never run: nothing to export
    assert "does not exist" in capsys.readouterr().err


def test_study_file_with_a_duplicate_key_is_refused(tmp_path, dataset_file):
    path = write_study(tmp_path, dataset_file)
    path.write_text(path.read_text() + "n_trials: 9\n")
    with pytest.raises(StudyError, match="n_trials"):
        load_study(path)


def test_inline_template_works_like_a_file(tmp_path, dataset_file):
    path = write_study(tmp_path, dataset_file)
    data = yaml.safe_load(path.read_text())
    text = yaml.safe_dump({**data, "template": "__T__"}, sort_keys=False)
    inline = "\n".join("  " + line for line in TEMPLATE.replace("path: data.h5", "path: data.h5").splitlines())
    path.write_text(text.replace("template: __T__", "template:\n" + inline))
    loaded = load_study(path)
    assert list(loaded.space.params) == ["lr"]
    assert validate_study(loaded)


def test_storage_messages_mask_the_password():
    url = "postgresql+psycopg://user:secret@127.0.0.1:1/nowhere"
    assert masked_url(url) == "postgresql+psycopg://user:***@127.0.0.1:1/nowhere"
    with pytest.raises(StorageError) as info:
        open_storage(url)
    assert "secret" not in str(info.value) and "***" in str(info.value)


def test_sqlite_storage_is_in_wal_mode(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path / 's.db'}")
    with storage.engine.connect() as connection:
        mode = connection.exec_driver_sql("PRAGMA journal_mode").scalar()
    assert mode == "wal"


def test_a_custom_metric_runs_only_from_an_allowed_module(tmp_path, dataset_file, monkeypatch, capsys):
    marker = tmp_path / "imported"
    (tmp_path / "lab_metrics.py").write_text(
        f"open({str(marker)!r}, 'w').close()\n\n"
        "def score(state, context):\n    return float(len(state.error_history))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("PHASER_ALLOW_HOOKS", raising=False)
    objectives = [{"metric": "lab_metrics:score", "direction": "minimize"}]
    path = write_study(tmp_path / "s", dataset_file, objectives=objectives, truth=None, n_trials=1)
    problems = problems_of(path)
    assert problems[0][0] == "objectives[0].metric" and "--allow-hooks lab_metrics" in problems[0][1]
    assert not marker.exists()  # refused without importing it
    assert main(["validate", str(path), "--allow-hooks", "lab_metrics"]) == 0
    assert not marker.exists()  # validation trusts it but still does not run it
    assert main([str(path), "--allow-hooks", "lab_metrics"]) == 0
    assert marker.exists()
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path / 's' / 'tiny.db'}")
    assert study.best_value == 6.0  # the metric's value: six iterations recorded


def test_a_binary_file_given_as_a_study_gets_a_message_naming_it(tmp_path):
    path = tmp_path / "study.yaml"
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(64))
    with pytest.raises(StudyError, match="HDF5 file, not a plan") as info:
        load_study(path)
    assert str(path) in str(info.value)
