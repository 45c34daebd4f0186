"""Tests of ``phaser score`` (phaser.metrics.cli) on a synthetic state file and truth."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from phaser.io.state_file import save_state
from phaser.metrics.cli import add_parser
from phaser.simulate import simulate_dataset, write_dataset
from phaser.state import ReconsState
from tests.helpers import DATASET_GEOMETRY


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="phaser")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A simulated truth file, and state files holding the truth and a degraded copy of it, with
    the state's frame 3 px off the truth's."""
    folder = tmp_path_factory.mktemp("score")
    ds = simulate_dataset(**DATASET_GEOMETRY, n_slices=2, slice_thickness_A=5.0)
    truth_path = write_dataset(ds, folder / "truth.h5")
    frame_shift = np.array([3, 3])
    padded = np.ones((2, ds.object.shape[1] + 6, ds.object.shape[2] + 6), dtype=np.complex64)
    padded[:, 3:-3, 3:-3] = ds.object
    positions = ds.positions_A + frame_shift * np.asarray(ds.sampling_A)

    def state(obj: np.ndarray) -> ReconsState:
        return ReconsState(
            kv=ds.kv,
            wavelength_A=ds.wavelength_A,
            sampling_A=ds.sampling_A,
            probe_modes=ds.probe_modes,
            object_slices=obj,
            slice_thicknesses_A=np.array([5.0, 5.0]),
            positions_A=positions,
            initial_positions_A=positions.copy(),
            tilt_mrad=np.zeros_like(positions),
        )

    noise = 0.1 * np.random.default_rng(0).normal(size=padded.shape)
    exact = save_state(folder / "exact.h5", state(padded))
    degraded = save_state(folder / "degraded.h5", state(padded * np.exp(1j * noise)))
    return truth_path, exact, degraded


def run(argv: list[str], capsys) -> str:
    args = parse(argv)
    assert args.handler(args) == 0
    return capsys.readouterr().out


def test_score_json_of_the_truth_itself(files, capsys):
    truth, exact, _ = files
    scores = json.loads(run(["score", str(exact), "--truth", str(truth), "--json"], capsys))
    assert scores["rmse_rad"] < 1e-5
    assert scores["ssim"] == pytest.approx(1.0, abs=1e-6)
    assert scores["rmse_potential_VA"] < 1e-2
    assert scores["frc_resolution_A"] > 0
    np.testing.assert_allclose(scores["shift_px"], 0.0, atol=0.05)
    assert len(scores["per_slice"]) == 2


def test_score_degrades_for_a_noisy_reconstruction(files, capsys):
    truth, exact, degraded = files
    good = json.loads(run(["score", str(exact), "--truth", str(truth), "--json"], capsys))
    bad = json.loads(run(["score", str(degraded), "--truth", str(truth), "--json"], capsys))
    assert bad["rmse_rad"] > 0.05 > good["rmse_rad"]
    assert bad["ssim"] < good["ssim"]


def test_score_table_and_metric_selection(files, capsys):
    truth, _, degraded = files
    table = run(["score", str(degraded), "--truth", str(truth), "--metric", "ssim"], capsys)
    assert "ssim" in table and "higher" in table and "rmse_rad" not in table
    assert "shift_px" in table and "slice 1:" in table
    frc_only = json.loads(run(["score", str(degraded), "--truth", str(truth), "--metric", "frc", "--json"], capsys))
    assert set(frc_only) >= {"frc_resolution_A", "frc_half_bit_resolution_A"}
    assert "ssim" not in frc_only and "per_slice" not in frc_only


def test_score_without_a_truth_is_an_error(files):
    _, exact, degraded = files
    args = parse(["score", str(exact), "--truth", str(degraded)])
    with pytest.raises(ValueError, match="no simulated truth"):
        args.handler(args)
