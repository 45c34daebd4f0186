"""Datasets simulated from specimen YAML: dose, ground-truth potential, files, CLI, frozen phonons."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import yaml

pytest.importorskip("ase")

from phaser.io.manual import ManualProps, load_manual  # noqa: E402
from phaser.io.state_file import save_state  # noqa: E402
from phaser.metrics.cli import score_files  # noqa: E402
from phaser.physics.constants import electron_wavelength_A, interaction_constant  # noqa: E402
from phaser.simulate.cli import add_parser  # noqa: E402
from phaser.simulate.files import read_truth  # noqa: E402
from phaser.simulate.from_specimen import (  # noqa: E402
    periodic_on_grid,
    read_potential,
    simulate_specimen_dataset,
    write_specimen_dataset,
)
from phaser.simulate.kirkland import projected_potential_integral  # noqa: E402
from phaser.simulate.specimen import Specimen, build_atoms, specimen_potential  # noqa: E402
from phaser.state import ReconsState  # noqa: E402

A_STO = 3.905
STO_2X2 = {
    "name": "STO_2x2",
    "structure": {
        "type": "spacegroup",
        "spacegroup": 221,
        "cellpar": [A_STO, A_STO, A_STO, 90, 90, 90],
        "symbols": ["Sr", "Ti", "O"],
        "basis": [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0]],
    },
    "zone_axis": [0, 0, 1],
    "supercell": [2, 2],
    "thickness": 3 * A_STO,
    "debye_waller": {"Sr": 0.6, "Ti": 0.4, "O": 0.7},
}
SMALL = dict(
    kv=200.0,
    conv_angle_mrad=20.0,
    defocus_A=-20.0,
    pattern_shape=(32, 32),
    diff_step_mrad=2.0,
    scan_shape=(4, 4),
    scan_step_A=0.5,
    slice_thickness_A=2.0,
)


@pytest.fixture(scope="module")
def specimen() -> Specimen:
    return Specimen.model_validate(STO_2X2)


def test_patterns_finite_and_counts_match_dose(specimen):
    noiseless = simulate_specimen_dataset(specimen, **SMALL).dataset
    assert noiseless.patterns.shape == (4, 4, 32, 32) and np.isfinite(noiseless.patterns).all()
    # A pure phase object and no bandwidth limit: every pattern holds the probe's intensity 1.
    np.testing.assert_allclose(noiseless.patterns.sum(axis=(-2, -1)), 1.0, rtol=1e-4)
    assert not np.allclose(noiseless.patterns[0, 0], noiseless.patterns[2, 1])  # the atoms scatter

    dose = 1e4
    noisy = simulate_specimen_dataset(specimen, **SMALL, dose_per_pattern=dose, seed=3).dataset
    totals = noisy.patterns.sum(axis=(-2, -1))
    assert np.isfinite(noisy.patterns).all() and np.all(noisy.patterns == np.round(noisy.patterns))
    assert totals.mean() == pytest.approx(dose, abs=4 * np.sqrt(dose / totals.size))  # Poisson, 4 sigma
    assert np.sum(np.abs(noisy.probe_modes.astype(np.complex128)) ** 2) == pytest.approx(dose, rel=1e-5)

    per_area = simulate_specimen_dataset(specimen, **SMALL, dose_per_A2=4e4).dataset
    assert per_area.dose_per_pattern == pytest.approx(4e4 * 0.5**2)
    with pytest.raises(ValueError, match="not both"):
        simulate_specimen_dataset(specimen, **SMALL, dose_per_A2=1.0, dose_per_pattern=1.0)


def test_potential_integrates_to_the_atoms(specimen):
    # Sampling a / 10: one cell of the periodic object spans exactly 20 x 20 pixels.
    cell_px = 20
    sampling = 2 * A_STO / cell_px
    diff_step = electron_wavelength_A(200.0) / (32 * sampling) * 1e3
    sd = simulate_specimen_dataset(
        specimen, **{**SMALL, "diff_step_mrad": diff_step, "slice_thickness_A": 1.0}, recon_slice_thickness_A=4.0
    )
    assert sd.dataset.sampling_A == pytest.approx((sampling, sampling))
    assert sd.potential_VA.shape[0] == 3 and sd.recon_slice_thickness_A == 4.0  # ceil(11.715 / 4)
    expected = sum(projected_potential_integral(z) for z in build_atoms(specimen).numbers)
    potential = sd.potential_VA.astype(np.float64)
    for top, left in [(0, 0), (5, 11), (13, 2)]:  # any window of one period holds the cell's integral
        window = potential[:, top : top + cell_px, left : left + cell_px]
        assert window.sum() * sampling**2 == pytest.approx(expected, rel=1e-6)
    # The truth is band-limited at Nyquist, the simulation's potential rolled off from half of it
    # (phaser.simulate.potentials.nyquist_taper): on one period, their Fourier coefficients agree below
    # half the Nyquist frequency and the truth holds more above it.
    sigma = interaction_constant(200.0)
    fine_phase = np.angle(sd.dataset.object.astype(np.complex128))
    simulated = np.stack([fine_phase[:4].sum(axis=0), fine_phase.sum(axis=0)]) / sigma
    truth = np.stack([potential[0], potential.sum(axis=0)])
    truth_k = np.fft.fft2(truth[:, :cell_px, :cell_px])
    simulated_k = np.fft.fft2(simulated[:, :cell_px, :cell_px])
    f = np.abs(np.fft.fftfreq(cell_px))
    low = np.hypot(f[:, None], f[None, :]) < 0.25  # the roll-off is isotropic
    np.testing.assert_allclose(truth_k[:, low], simulated_k[:, low], rtol=0, atol=1e-4 * np.abs(truth_k).max())
    high = ~low & (np.maximum(f[:, None], f[None, :]) < 0.5)
    assert np.sum(np.abs(truth_k[:, high]) ** 2) > 1.5 * np.sum(np.abs(simulated_k[:, high]) ** 2)


def test_periodic_evaluation_matches_the_cell_grid(specimen):
    cell_slices, (lx, ly, _) = specimen_potential(specimen, 2 * A_STO / 24, 2.0)
    step = (ly / 24, lx / 24)
    moved = periodic_on_grid(cell_slices, (ly, lx), (30, 30), step, (-3 * step[0], 5 * step[1]))
    rolled = np.roll(np.tile(cell_slices, (1, 2, 2)), (3, -5), axis=(1, 2))[:, :30, :30]
    np.testing.assert_allclose(moved, rolled, atol=1e-3 * np.abs(cell_slices).max())


def test_frozen_phonons_reproducible_with_a_seed(specimen):
    def patterns(**kwargs):
        return simulate_specimen_dataset(specimen, **{**SMALL, "scan_shape": (2, 2)}, **kwargs).dataset.patterns

    a = patterns(frozen_phonons=2, seed=1)
    np.testing.assert_array_equal(a, patterns(frozen_phonons=2, seed=1))
    assert not np.array_equal(a, patterns(frozen_phonons=2, seed=2))
    smeared = patterns(frozen_phonons=0)
    assert not np.allclose(a, smeared, atol=1e-7)
    np.testing.assert_allclose(a.sum(axis=(-2, -1)), 1.0, rtol=1e-4)
    # Thermal averaging and Debye-Waller smearing describe the same specimen: close, not equal.
    assert np.abs(a - smeared).sum() < 0.2 * smeared.sum()


def test_file_holds_potential_and_scores(specimen, tmp_path):
    sd = simulate_specimen_dataset(specimen, **SMALL, recon_slice_thickness_A=6.0, dose_per_pattern=1e5)
    path = write_specimen_dataset(sd, tmp_path / "sto.h5")
    truth = read_truth(path)
    np.testing.assert_array_equal(truth["potential_VA"], sd.potential_VA)
    assert truth["slice_thickness_A"] == 2.0 and truth["object"].shape[0] == 6
    potential, attrs = read_potential(path)
    assert potential.shape == (2, *sd.dataset.object.shape[-2:])
    assert attrs["unit"] == "V*A" and attrs["slice_thickness_A"] == 6.0
    np.testing.assert_allclose(attrs["slice_z_A"], [0.0, 6.0])
    assert yaml.safe_load(attrs["specimen_yaml"])["name"] == "STO_2x2"
    assert attrs["origin_A"] == pytest.approx(sd.origin_A)
    assert attrs["fourier_crop_factor"] == sd.fourier_crop_factor >= 4

    # A "reconstruction" that is exactly the truth potential, in its two slices, scores perfectly.
    ds = sd.dataset
    recon = ReconsState(
        kv=ds.kv,
        wavelength_A=ds.wavelength_A,
        sampling_A=ds.sampling_A,
        probe_modes=ds.probe_modes,
        object_slices=np.exp(1j * interaction_constant(ds.kv) * sd.potential_VA).astype(np.complex64),
        slice_thicknesses_A=np.array([6.0, 6.0]),
        positions_A=ds.positions_A,
        initial_positions_A=ds.positions_A.copy(),
        tilt_mrad=np.zeros_like(ds.positions_A),
    )
    scores = score_files(save_state(tmp_path / "recon.h5", recon), path)
    assert scores["rmse_rad"] < 1e-3 and scores["ssim"] > 0.999


def test_cli_specimen_file_loads_as_manual_raw_data(specimen, tmp_path, capsys):
    spec_path = tmp_path / "sto.yaml"
    spec_path.write_text(yaml.safe_dump(STO_2X2))
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    out = tmp_path / "cli.h5"
    argv = ["simulate", str(spec_path), "--out", str(out), "--scan", "4", "4", "--step", "0.5"]
    args = parser.parse_args([*argv, "--dose-per-area", "1e4", "--recon-slice-thickness", "4", "--frozen-phonons", "1"])
    assert args.handler(args) == 0
    assert "STO_2x2" in capsys.readouterr().out

    raw = load_manual(ManualProps(path=out))
    assert raw.patterns.shape == (4, 4, 32, 32) and np.isfinite(raw.patterns).all()
    assert raw.kv == 200.0 and raw.diff_step_mrad == 2.0 and raw.scan_step_A == 0.5
    assert raw.patterns.sum(axis=(-2, -1)).mean() == pytest.approx(2500, rel=0.05)
    potential, attrs = read_potential(out)
    assert potential.shape[0] == 3 and attrs["frozen_phonons"] == 1
    assert attrs["specimen_yaml"] == spec_path.read_text()

    with pytest.raises(SystemExit, match="--jitter"):
        args = parser.parse_args([*argv, "--jitter", "0.1"])
        args.handler(args)
    with pytest.raises(SystemExit, match="--frozen-phonons"):
        args = parser.parse_args(["simulate", "--out", str(out), "--frozen-phonons", "2"])
        args.handler(args)
