"""Tests of phaser.simulate: dose, intensity conservation, determinism, files, multislice."""

from __future__ import annotations

import argparse

import h5py
import numpy as np
import pytest

from phaser.simulate import (
    gaussian_atom_phase,
    read_truth,
    required_object_shape,
    simulate_dataset,
    transmission,
    write_dataset,
)
from phaser.simulate.cli import add_parser

SMALL = dict(
    kv=200.0,
    conv_angle_mrad=20.0,
    defocus_A=100.0,
    diff_step_mrad=2.0,
    scan_step_A=0.6,
    pattern_shape=(32, 32),
    scan_shape=(8, 8),
)
OBJECT_SHAPE = (64, 64)  # holds an 8x8 scan of 0.6 A steps with 32 px patterns of ~0.39 A


def _centred_far_field_intensity(probe_modes: np.ndarray) -> np.ndarray:
    far = np.fft.fft2(probe_modes.astype(np.complex128), norm="ortho")
    return np.fft.fftshift(np.sum(np.abs(far) ** 2, axis=0))


def test_vacuum_gives_probe_diffraction():
    ds = simulate_dataset(**SMALL, object_phase=np.zeros((1, *OBJECT_SHAPE)))
    expected = _centred_far_field_intensity(ds.probe_modes)
    assert ds.patterns.shape == (8, 8, 32, 32) and ds.patterns.dtype == np.float32
    np.testing.assert_allclose(ds.patterns, np.broadcast_to(expected, ds.patterns.shape), atol=1e-6)
    assert ds.patterns.sum(axis=(-2, -1)) == pytest.approx(1.0, rel=1e-5)


def test_counts_match_dose_on_average():
    dose = 1e4
    ds = simulate_dataset(**SMALL, dose_per_pattern=dose, seed=3)
    totals = ds.patterns.sum(axis=(-2, -1))
    assert np.all(ds.patterns == np.round(ds.patterns))
    # Poisson: the mean over 64 patterns has std sqrt(dose / 64) = 12.5 electrons.
    assert totals.mean() == pytest.approx(dose, abs=60)
    assert np.sum(np.abs(ds.probe_modes) ** 2) == pytest.approx(dose, rel=1e-5)


@pytest.mark.parametrize("n_slices", [1, 2])
def test_phase_object_conserves_intensity(n_slices):
    ds = simulate_dataset(**SMALL, n_slices=n_slices, slice_thickness_A=20.0, probe_modes_weights=[1.0, 0.3])
    probe_intensity = np.sum(np.abs(ds.probe_modes.astype(np.complex128)) ** 2)
    np.testing.assert_allclose(ds.patterns.sum(axis=(-2, -1)), probe_intensity, rtol=1e-4)
    assert probe_intensity == pytest.approx(1.0, rel=1e-5)
    assert not np.allclose(ds.patterns[0, 0], ds.patterns[4, 5])  # the atoms scatter


def test_noiseless_deterministic_and_noise_seeded():
    a = simulate_dataset(**SMALL, position_jitter_A=0.1, seed=5)
    b = simulate_dataset(**SMALL, position_jitter_A=0.1, seed=5)
    np.testing.assert_array_equal(a.patterns, b.patterns)
    noisy = [simulate_dataset(**SMALL, dose_per_pattern=1e3, seed=s) for s in (1, 1, 2)]
    np.testing.assert_array_equal(noisy[0].patterns, noisy[1].patterns)
    assert not np.array_equal(noisy[0].patterns, noisy[2].patterns)


def test_positions_jitter_and_margins():
    ds = simulate_dataset(**SMALL, position_jitter_A=0.2, seed=1)
    error = ds.positions_A - ds.nominal_positions_A
    assert 0.1 < error.std() < 0.3
    step = np.diff(ds.nominal_positions_A[:2], axis=0)
    np.testing.assert_allclose(step, [[0.0, 0.6]])  # fast axis x
    centre_A = np.array(ds.object.shape[-2:]) // 2 * np.array(ds.sampling_A)
    np.testing.assert_allclose(ds.nominal_positions_A.mean(axis=0), centre_A, atol=1e-9)
    positions_px = ds.positions_A / np.array(ds.sampling_A)
    margin = 32 // 2 + 4
    assert positions_px.min() >= margin - 0.5
    assert (np.array(ds.object.shape[-2:]) - positions_px.max(axis=0) >= margin - 0.5).all()


def test_too_small_object_is_rejected():
    with pytest.raises(ValueError, match="too small"):
        simulate_dataset(**SMALL, object_phase=np.zeros((1, 40, 40)))
    needed = required_object_shape(np.zeros((1, 2)), (32, 32), (0.4, 0.4))
    assert needed == (40, 40)


def test_probe_modes_orthogonal_with_weights():
    ds = simulate_dataset(**SMALL, probe_modes_weights=[3.0, 1.0])
    modes = ds.probe_modes.reshape(2, -1).astype(np.complex128)
    gram = modes.conj() @ modes.T
    np.testing.assert_allclose(np.diag(gram).real, [0.75, 0.25], rtol=1e-5)
    assert abs(gram[0, 1]) < 1e-6


def test_file_round_trip(tmp_path):
    ds = simulate_dataset(**SMALL, n_slices=2, dose_per_pattern=500.0, position_jitter_A=0.05)
    path = write_dataset(ds, tmp_path / "sim.h5")
    truth = read_truth(path)
    np.testing.assert_array_equal(truth["object"], ds.object)
    np.testing.assert_array_equal(truth["probe"], ds.probe_modes)
    np.testing.assert_array_equal(truth["positions_A"], ds.positions_A)
    np.testing.assert_array_equal(truth["nominal_positions_A"], ds.nominal_positions_A)
    assert truth["object"].dtype == np.complex64 and truth["probe"].dtype == np.complex64
    assert truth["sampling_A"] == ds.sampling_A
    assert truth["dose_per_pattern"] == 500.0
    assert truth["wavelength_A"] == pytest.approx(0.025079, rel=1e-4)
    for key in ("slice_thickness_A", "conv_angle_mrad", "defocus_A"):
        assert truth[key] == getattr(ds, key)
    with h5py.File(path, "r") as f:
        patterns = f["patterns"]
        np.testing.assert_array_equal(patterns[()], ds.patterns)
        assert patterns.dtype == np.float32
        assert patterns.attrs["kv"] == 200.0
        assert patterns.attrs["diff_step_mrad"] == 2.0
        assert patterns.attrs["scan_step_A"] == 0.6
        assert tuple(patterns.attrs["scan_shape"]) == (8, 8)
        assert bool(patterns.attrs["centred"])


def test_noiseless_file_has_nan_dose(tmp_path):
    path = write_dataset(simulate_dataset(**SMALL), tmp_path / "clean.h5")
    assert np.isnan(read_truth(path)["dose_per_pattern"])


def test_multislice_thickness_limit():
    slices = gaussian_atom_phase(OBJECT_SHAPE, 0.39, n_slices=2, rng=4)
    assert not np.allclose(slices[0], slices[1])
    projected = slices.sum(axis=0, keepdims=True)

    def patterns(phase, thickness):
        return simulate_dataset(**SMALL, object_phase=phase, slice_thickness_A=thickness).patterns

    single = patterns(projected, 50.0)
    np.testing.assert_allclose(patterns(slices, 1e-6), single, atol=1e-6)
    assert np.abs(patterns(slices, 50.0) - single).max() > 0.1 * single.max()


def test_gaussian_atoms_and_transmission():
    phase = gaussian_atom_phase((70, 70), (0.2, 0.2), n_slices=3, rng=0)
    assert phase.shape == (3, 70, 70) and phase.dtype == np.float32
    assert phase.sum(axis=0).max() == pytest.approx(0.8, rel=0.05)
    assert all(s.max() > 0.5 for s in phase)  # every slice holds atoms
    np.testing.assert_array_equal(phase, gaussian_atom_phase((70, 70), 0.2, n_slices=3, rng=0))
    trans = transmission(phase, amplitude=0.9)
    assert trans.dtype == np.complex64
    np.testing.assert_allclose(np.abs(trans), 0.9, rtol=1e-6)
    np.testing.assert_allclose(np.angle(trans), phase, atol=1e-6)


def test_cli_writes_file(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    out = tmp_path / "cli.h5"
    args = parser.parse_args(["simulate", "--out", str(out), "--scan", "4", "6", "--dose", "0", "--probe-modes", "2"])
    assert args.handler(args) == 0
    assert str(out) in capsys.readouterr().out
    with h5py.File(out, "r") as f:
        assert f["patterns"].shape == (4, 6, 32, 32)
        assert f["truth/probe"].shape == (2, 32, 32)
