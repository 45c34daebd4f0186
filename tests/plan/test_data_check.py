"""``phaser validate`` against the data's metadata: what it refuses, ``run`` refuses too, and the reverse."""

from __future__ import annotations

import copy
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from phaser.backend import make_rng
from phaser.cli import main
from phaser.io.state_file import save_state
from phaser.plan import validate_plan
from phaser.plan.data_check import check_against_data, fill_from_data
from phaser.run import initial_state, load_data, run_plan

PROBE = {"type": "focused", "conv_angle": 20.0, "defocus": 50.0}
ENGINE = {"type": "conventional", "niter": 1, "noise_model": "amplitude", "solver": "epie"}


def _h5(path: Path, shape=(4, 4, 16, 16), **attrs) -> Path:
    attrs = {"kv": 200.0, "diff_step_mrad": 2.0, "scan_step_A": 0.5, **attrs}
    with h5py.File(path, "w") as f:
        f["patterns"] = np.ones(shape, np.float32)
        f["patterns"].attrs.update({k: v for k, v in attrs.items() if v is not None})
    return path


def _plan(data: Path, **fields) -> dict:
    plan = {"name": "t", "backend": "numpy", "raw_data": {"type": "manual", "path": str(data)}}
    plan.update({"init": {"probe": dict(PROBE)}, "engines": [dict(ENGINE)]})
    for key, value in fields.items():
        target = plan
        *parents, last = key.split(".")
        for part in parents:
            target = target.setdefault(part, {})
        target[last] = value
    return plan


def _run_fails(plan) -> str:
    """The message ``phaser run`` stops with (all these plans run one ePIE iteration on numpy)."""
    with pytest.raises(ValueError) as info:
        run_plan(plan)
    return str(info.value)


def _npy(path: Path, shape=(16, 16, 16)) -> Path:
    np.save(path, np.ones(shape, np.float32))
    return path


def _truncated_npy(path: Path) -> Path:
    path = _npy(path.with_suffix(".npy"))
    path.write_bytes(path.read_bytes()[:300])
    return path


# name: (make data in tmp, plan fields, field the problem is at, words of the message)
CASES = {
    "raw scan_shape vs patterns": (_h5, {"raw_data.scan_shape": [3, 3]}, "raw_data", "has 9 positions"),
    "init.scan.shape vs patterns": (
        _h5,
        {"init.scan": {"type": "raster", "shape": [5, 4]}},
        "init.scan.shape",
        "has 20 positions but",
    ),
    "no kv": (lambda p: _h5(p, kv=None), {}, "raw_data.kv", "neither in the plan nor in"),
    "no diff_step": (lambda p: _h5(p, diff_step_mrad=None), {}, "raw_data.diff_step", "detector pixel size"),
    "no scan step": (lambda p: _h5(p, scan_step_A=None), {}, "init.scan.step_size", "no scan step"),
    "no scan shape": (
        lambda p: _npy(p.with_suffix(".npy")),
        {"raw_data.kv": 200, "raw_data.diff_step": 2, "raw_data.scan_step": 0.5},
        "init.scan.shape",
        "has no scan shape (16 patterns)",
    ),
    "det_shape": (_h5, {"raw_data.det_shape": [8, 8]}, "raw_data", "differs from det_shape"),
    "crop larger": (_h5, {"post_load": [{"type": "crop", "shape": [32, 32]}]}, "post_load[0].shape", "larger"),
    "bin factor": (_h5, {"post_load": [{"type": "bin", "factor": 3}]}, "post_load[0].factor", "not divisible"),
    "scan crop empty": (
        _h5,
        {"post_load": [{"type": "crop_data", "crop": [2, 2, 0, 4]}]},
        "post_load[0]",
        "leaves no positions",
    ),
    "scan crop then scan shape": (
        _h5,
        {"post_load": [{"type": "crop", "scan_crop": [0, 2, 0, 2]}], "init.scan": {"type": "raster", "shape": [4, 4]}},
        "init.scan.shape",
        "holds 4 patterns",
    ),
    "bin keeps diff_step unknown": (
        lambda p: _h5(p, diff_step_mrad=None),
        {"post_load": [{"type": "bin", "factor": 2}]},
        "raw_data.diff_step",
        "detector pixel size",
    ),
    "empty file": (lambda p: p.write_bytes(b"") or p, {}, "raw_data", "is empty (0 bytes)"),
    "pickled npy": (
        lambda p: np.save(p.with_suffix(".npy"), np.array([None], object), allow_pickle=True) or p.with_suffix(".npy"),
        {},
        "raw_data",
        "holds Python objects (pickled)",
    ),
    "truncated npy": (_truncated_npy, {}, "raw_data", "is truncated or damaged"),
    "rank 2": (lambda p: _npy(p.with_suffix(".npy"), (16, 16)), {}, "raw_data", "got shape (16, 16)"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_validate_refuses_what_run_refuses(tmp_path: Path, case: str) -> None:
    make, fields, field, words = CASES[case]
    data = make(tmp_path / "d.h5")
    plan = validate_plan(_plan(data, **copy.deepcopy(fields)))
    problems = check_against_data(plan)
    assert [p for p, m in problems if p == field and words in m], problems
    assert all(str(data) in m or p.startswith(("init.scan", "post_load")) for p, m in problems)
    _run_fails(plan)


def test_a_consistent_plan_passes_and_runs_its_checks(tmp_path: Path) -> None:
    data = _h5(tmp_path / "d.h5")
    plan = validate_plan(_plan(data, post_load=[{"type": "bin", "factor": 2}, {"type": "crop", "shape": [6, 6]}]))
    assert check_against_data(plan) == []
    state = run_plan(plan)
    assert state.probe_shape == (6, 6) and state.n_positions == 16


def test_validate_reads_no_patterns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from phaser.io import manual

    def refuse(*args):
        raise AssertionError("validate read the patterns")

    monkeypatch.setattr(manual, "_read_hdf5", refuse)
    monkeypatch.setattr(manual, "_read_npy", refuse)
    plan = validate_plan(_plan(_h5(tmp_path / "d.h5")))
    assert check_against_data(plan) == []
    plan = validate_plan(_plan(_npy(tmp_path / "d.npy"), **{"init.scan": {"type": "raster", "shape": [4, 4]}}))
    assert [p for p, _ in check_against_data(plan)] == ["raw_data.kv", "raw_data.diff_step", "init.scan.step_size"]


def test_a_starting_state_must_fit_the_data(tmp_path: Path) -> None:
    good = validate_plan(_plan(_h5(tmp_path / "d.h5")))
    rng = make_rng(0)
    state = initial_state(good, load_data(good, rng), rng)
    save_state(tmp_path / "s.h5", state)
    fits = validate_plan(_plan(tmp_path / "d.h5", **{"init.state": str(tmp_path / "s.h5")}))
    assert check_against_data(fits) == []
    for shape, words in (((5, 4, 16, 16), "has 16 positions but"), ((4, 4, 8, 8), "probe but the patterns")):
        other = _plan(_h5(tmp_path / f"{shape[0]}_{shape[2]}.h5", shape), **{"init.state": str(tmp_path / "s.h5")})
        problems = check_against_data(validate_plan(other))
        assert [m for p, m in problems if p == "init.state" and words in m], problems
        _run_fails(validate_plan(other))


def test_a_tilt_file_must_have_one_tilt_per_pattern(tmp_path: Path) -> None:
    np.save(tmp_path / "tilt.npy", np.zeros((15, 2)))
    plan = validate_plan(
        _plan(_h5(tmp_path / "d.h5"), **{"init.tilt": {"type": "custom", "path": str(tmp_path / "tilt.npy")}})
    )
    problems = check_against_data(plan)
    words = "holds 15 tilts (shape (15, 2)) but the scan has 16 positions; expected (16, 2) or (scan_y, scan_x, 2)"
    assert problems == [("init.tilt.path", f"{tmp_path / 'tilt.npy'} {words}")]
    _run_fails(plan)
    np.save(tmp_path / "tilt.npy", np.full((4, 4, 2), 0.5))
    assert check_against_data(plan) == []
    np.testing.assert_array_equal(run_plan(plan).tilt_mrad, np.full((16, 2), 0.5))


def test_cli_validate_names_the_file_it_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _h5(tmp_path / "d.h5")
    plan_path = tmp_path / "plan.yaml"
    plan_path.write_text(yaml.safe_dump(_plan(data)))
    assert main(["validate", str(plan_path)]) == 0
    assert f"1 valid plan; checked against the metadata of {data}" in capsys.readouterr().err
    plan_path.write_text(yaml.safe_dump(_plan(data, **{"raw_data.scan_shape": [2, 2]})))
    assert main(["validate", str(plan_path)]) == 2
    err = capsys.readouterr().err
    assert "1 problem" in err and "raw_data: " in err and "scan_shape (2, 2) has 4 positions" in err
    assert main(["validate", "--no-files", str(plan_path)]) == 0
    assert "data files not checked (--no-files)" in capsys.readouterr().err


def test_resolved_fills_what_the_file_says(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _h5(tmp_path / "d.h5")
    plan_path = tmp_path / "plan.yaml"
    plan_path.write_text(yaml.safe_dump(_plan(data, **{"raw_data.kv": 300.0})))
    assert main(["validate", "--resolved", str(plan_path)]) == 0
    resolved = yaml.safe_load(capsys.readouterr().out)
    raw = resolved["raw_data"]
    assert (raw["kv"], raw["diff_step"], raw["scan_shape"], raw["scan_step"]) == (300.0, 2.0, [4, 4], 0.5)
    assert resolved["init"]["scan"]["type"] == "raster" and resolved["init"]["object"]["type"] == "random"
    # the resolved plan means the same: it loads the same data and starts from the same state
    original, filled = validate_plan(yaml.safe_load(plan_path.read_text())), validate_plan(resolved)
    assert filled == fill_from_data(original)
    states = [initial_state(p, load_data(p, make_rng(0)), make_rng(0)) for p in (original, filled)]
    np.testing.assert_array_equal(states[0].positions_A, states[1].positions_A)
    np.testing.assert_array_equal(states[0].probe_modes, states[1].probe_modes)
    assert states[0].kv == states[1].kv == 300.0
