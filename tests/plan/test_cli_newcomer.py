"""The command line a newcomer meets: help everywhere, no silent overwrite, clear refusals."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from phaser.cli import build_parser, fresh_folder, main


def _actions(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                yield f"sub-command {choice.dest}", choice.help
            for name, sub in action.choices.items():
                yield from ((f"{name} {what}", text) for what, text in _actions(sub))
        elif not isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            yield action.dest, action.help


def test_every_sub_command_and_argument_has_one_line_help() -> None:
    missing = [what for what, text in _actions(build_parser()) if not text]
    assert not missing


def test_existing_output_folder_is_not_reused(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert fresh_folder(out) == out
    out.mkdir()
    assert fresh_folder(out) == out  # empty: fine
    (out / "final.h5").write_text("x")
    assert fresh_folder(out) == tmp_path / "run-2"
    (tmp_path / "run-2").mkdir()
    assert fresh_folder(out) == tmp_path / "run-3"


def test_run_has_an_overwrite_flag() -> None:
    args = build_parser().parse_args(["run", "plan.yaml", "--overwrite"])
    assert args.overwrite and not build_parser().parse_args(["run", "plan.yaml"]).overwrite


@pytest.mark.parametrize("command", ["run", "validate"])
def test_an_hdf5_file_given_as_plan_gets_a_message(tmp_path: Path, command: str, capsys) -> None:
    path = tmp_path / "final.h5"
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(range(256)))
    assert main([command, str(path)]) == 2
    err = capsys.readouterr().err
    assert "HDF5 file, not a plan" in err and str(path) in err and "Traceback" not in err
