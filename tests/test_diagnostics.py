"""Acquisition diagnostics against hand-computed cases (the arithmetic is in each test's comment)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from phaser import diagnostics as dg
from phaser.physics.constants import electron_wavelength_A
from tests.helpers import plan_for, simulated_file

# The hand-computed acquisition: lambda = 0.025 A (a round number, not a real kV), alpha = 20 mrad,
# defocus 100 A, step 0.5 A, detector pixel 2 mrad, 32 x 32 detector.
GRADIENT_ENGINE = {
    "type": "gradient",
    "niter": 1,
    "noise_model": {"type": "poisson"},
    "solvers": {"object": {"type": "adam", "learning_rate": 0.05}, "probe": {"type": "adam", "learning_rate": 0.01}},
}
HAND = dg.Acquisition(
    wavelength_A=0.025,
    conv_angle_mrad=20.0,
    defocus_A=100.0,
    scan_step_A=0.5,
    diff_step_mrad=2.0,
    pattern_shape=(32, 32),
    scan_shape=(8, 8),
)


def test_sampling_ratio():
    # dk = 2e-3 rad / 0.025 A = 0.08 1/A; 1 / (2 * 0.5 A * 0.08 1/A) = 12.5
    assert dg.detector_pixel_inv_A(0.025, 2.0) == pytest.approx(0.08)
    assert dg.sampling_ratio(0.5, 0.025, 2.0) == pytest.approx(12.5)
    # step 7 A: 1 / (2 * 7 * 0.08) = 0.893 < 1, the condition fails
    assert dg.sampling_ratio(7.0, 0.025, 2.0) == pytest.approx(1 / 1.12)


def test_probe_diameter():
    # 2 * 100 A * 0.020 rad = 4 A geometric; 1.21967 * 0.025 A / 0.020 rad = 1.52458 A Airy; sum 5.52458 A
    assert dg.probe_diameter_A(0.025, 20.0, 100.0) == pytest.approx(5.52458, abs=1e-5)
    # the sign of the defocus does not matter; in focus only the Airy term is left
    assert dg.probe_diameter_A(0.025, 20.0, -100.0) == dg.probe_diameter_A(0.025, 20.0, 100.0)
    assert dg.probe_diameter_A(0.025, 20.0, 0.0) == pytest.approx(1.52458, abs=1e-5)


def test_oversampling():
    # d = 4 A, step 0.5 A: linear 4 / 0.5 = 8; areal pi * 4^2 / 4 / 0.5^2 = 16 pi = 50.265
    assert dg.linear_oversampling(4.0, 0.5) == pytest.approx(8.0)
    assert dg.areal_oversampling(4.0, 0.5) == pytest.approx(16 * math.pi)


def test_disc_overlaps():
    # Bunk: 1 - 1 / 4 = 0.75; apart: 0
    assert dg.disc_overlap(4.0, 1.0) == pytest.approx(0.75)
    assert dg.disc_overlap(4.0, 5.0) == 0.0
    # R = 1, s = 1: lens = 2 acos(1/2) - (1/2) sqrt(3) = 2.0944 - 0.8660 = 1.2284; / pi = 0.39100
    assert dg.disc_area_overlap(2.0, 1.0) == pytest.approx(0.39100, abs=1e-5)
    assert dg.disc_area_overlap(2.0, 0.0) == pytest.approx(1.0)
    assert dg.disc_area_overlap(2.0, 2.0) == 0.0


def test_probe_and_detector_sampling():
    # dx = 0.025 A / (32 * 2e-3 rad) = 0.390625 A; bright-field radius 20 / 2 = 10 px
    assert dg.probe_pixel_A(0.025, (32, 32), 2.0) == pytest.approx((0.390625, 0.390625))
    assert dg.bright_field_radius_px(20.0, 2.0) == pytest.approx(10.0)


def test_ronchigram():
    # 100 A * 2e-3 rad = 0.2 A of specimen per detector pixel; L = 100 mm = 1e9 A, 1e9 / 100 = 1e7
    assert dg.ronchigram_pixel_A(100.0, 2.0) == pytest.approx(0.2)
    assert dg.ronchigram_pixel_A(-100.0, 2.0) == pytest.approx(0.2)
    assert dg.ronchigram_pixel_A(0.0, 2.0) == math.inf
    assert dg.ronchigram_magnification(100.0, 100.0) == pytest.approx(1e7)


def test_intensity_overlap_of_a_square():
    # an 8 x 8 block of ones: shifted by 2 px along x it shares 6 of its 8 columns (0.75); by 3 px
    # along y 5 of 8 rows (0.625); by 8 px nothing (the padding keeps it from wrapping around)
    block = np.zeros((16, 16))
    block[4:12, 4:12] = 1.0
    assert dg.intensity_overlap(block, (0.0, 2.0)) == pytest.approx(0.75, abs=1e-9)
    assert dg.intensity_overlap(block, (3.0, 0.0)) == pytest.approx(0.625, abs=1e-9)
    assert dg.intensity_overlap(block, (0.0, 8.0)) == pytest.approx(0.0, abs=1e-9)
    assert dg.intensity_overlap(block, (0.0, 0.0)) == pytest.approx(1.0)


def test_intensity_overlap_of_a_disc_matches_the_lens_area():
    # a uniform disc of radius 20 px shifted by 20 px: the lens fraction of R = s is 0.39100
    # (as in test_disc_overlaps), up to the pixelated edge
    y, x = np.mgrid[:64, :64] - 32
    disc = (y**2 + x**2 <= 20**2).astype(float)
    assert dg.intensity_overlap(disc, (0.0, 20.0)) == pytest.approx(dg.disc_area_overlap(40.0, 20.0), abs=0.01)


def test_illumination_map_by_hand():
    # a 4 x 4 probe whose intensity is one 2 x 2 block of ones at rows/cols 1..2 (the centre is
    # pixel 2, so the block covers offsets -1 and 0 from the centre)
    probe = np.zeros((4, 4))
    probe[1:3, 1:3] = 1.0
    # 3 x 3 centres 2 px apart: the blocks tile the plane, every interior pixel is lit once
    centres = np.array([(y, x) for y in (0, 2, 4) for x in (0, 2, 4)], dtype=float)
    lit, on_grid = dg.illumination_map(probe, centres)
    assert lit.sum() == pytest.approx(9 * 4)
    assert dg.scanned_interior_range(lit, on_grid) == (1.0, 1.0)
    # 1 px apart: pixel p is lit by the centres p and p + 1 (per axis); inside the centres' bounding
    # box the last row/column has only the centre p, so per axis 1 or 2 probes: min 1 * 1, max 2 * 2
    centres = np.array([(y, x) for y in (0, 1, 2) for x in (0, 1, 2)], dtype=float)
    lit, on_grid = dg.illumination_map(probe, centres)
    assert dg.scanned_interior_range(lit, on_grid) == (1.0, 4.0)


def test_illumination_map_on_a_given_grid_clips_at_its_edge():
    # one centre at (0, 0) of a 3 x 3 grid: only the block pixel at offset (0, 0) lands on it
    probe = np.zeros((4, 4))
    probe[1:3, 1:3] = 1.0
    lit, _ = dg.illumination_map(probe, np.array([[0.0, 0.0]]), object_shape=(3, 3))
    assert lit.sum() == 1.0 and lit[0, 0] == 1.0


def test_diagnose_agrees_with_the_parts():
    found = dg.diagnose(HAND)
    assert found.sampling_ratio == pytest.approx(12.5)
    assert found.probe_diameter_A == pytest.approx(5.52458, abs=1e-5)
    assert found.linear_oversampling == pytest.approx(5.52458 / 0.5, abs=1e-4)
    assert found.probe_pixel_A == pytest.approx(0.390625)
    # window 1 / 0.08 = 12.5 A; 5.52458 / 0.390625 = 14.14 px across the probe
    assert found.probe_window_A == pytest.approx(12.5)
    assert found.pixels_across_probe == pytest.approx(14.143, abs=1e-3)
    assert found.bright_field_radius_px == 10.0 and found.ronchigram_pixel_A == pytest.approx(0.2)
    # a 0.5 A step is small against a 5.5 A probe: the simulated intensities overlap strongly, and
    # a probe normalised to 1 summed over ~50 overlapping positions lights the interior many times
    assert 0.8 < found.intensity_overlap < 1.0
    assert 0 < found.illumination_min <= found.illumination_max
    assert found.warnings() == []
    assert set(found.as_dict()) >= {"sampling_ratio", "areal_oversampling", "illumination_max"}


def test_sparse_scan_is_warned_about():
    sparse = dg.Acquisition(**{**HAND.__dict__, "defocus_A": 0.0, "scan_step_A": 7.0})
    found = dg.diagnose(sparse)
    assert found.sampling_ratio < 1 and found.linear_oversampling < 2
    assert len(found.warnings()) == 2
    assert found.intensity_overlap < 0.05


def test_from_kv():
    acq = dg.Acquisition.from_kv(200.0, **{k: v for k, v in HAND.__dict__.items() if k != "wavelength_A"})
    assert acq.wavelength_A == pytest.approx(electron_wavelength_A(200.0))


def test_from_a_simulated_file_and_its_plan(tmp_path):
    from phaser.plan.load import validate_plan

    _, path = simulated_file(tmp_path / "sim.h5", scan_shape=(4, 4), pattern_shape=(16, 16))
    from_file = dg.acquisition_from_file(path)
    assert from_file.wavelength_A == pytest.approx(electron_wavelength_A(200.0))
    assert (from_file.conv_angle_mrad, from_file.defocus_A, from_file.scan_step_A) == (20.0, 100.0, 0.6)
    assert from_file.pattern_shape == (16, 16) and from_file.scan_shape == (4, 4)
    plan = validate_plan(plan_for(path, [GRADIENT_ENGINE]))
    assert dg.acquisition_from_plan(plan) == from_file


def test_unreadable_file_names_itself(tmp_path):
    bad = tmp_path / "not_data.h5"
    bad.write_text("hello")
    with pytest.raises(dg.AcquisitionError, match="not_data.h5"):
        dg.acquisition_from_file(bad)
