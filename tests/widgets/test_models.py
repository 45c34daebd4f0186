"""Widget models without a browser: changing a trait gives the expected arrays; bad files give messages."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("traitlets", reason="the widget models need traitlets (pip install 'phaser[widgets]')")

from phaser.io.state_file import save_state  # noqa: E402
from phaser.state import ReconsState  # noqa: E402
from phaser.widgets.models import RawDataModel, ReconstructionModel, diagnostics_for  # noqa: E402
from tests.helpers import simulated_file  # noqa: E402


def ring_patterns() -> np.ndarray:
    """(2, 3, 9, 9) patterns, 1 mrad pixels, centre (4, 4): position (y, x) has y*10 + x + 1
    electrons in the centre pixel (angle 0) and 100 electrons in each of the 4 pixels at 3 mrad."""
    patterns = np.zeros((2, 3, 9, 9), dtype=np.float32)
    for y in range(2):
        for x in range(3):
            patterns[y, x, 4, 4] = 10 * y + x + 1
    for ky, kx in ((1, 4), (7, 4), (4, 1), (4, 7)):
        patterns[:, :, ky, kx] = 100.0
    return patterns


def test_virtual_images_follow_the_radii():
    model = RawDataModel(ring_patterns(), diff_step_mrad=1.0, bf_outer_mrad=0.5, adf_inner_mrad=2.5, adf_outer_mrad=3.5)
    # bright field inside 0.5 mrad = the centre pixel only: 10 y + x + 1
    np.testing.assert_allclose(model.bright_field(), [[1, 2, 3], [11, 12, 13]])
    # the annulus 2.5..3.5 mrad holds the 4 ring pixels: 400 everywhere
    np.testing.assert_allclose(model.annular_dark_field(), np.full((2, 3), 400.0))
    # moving the outer BF radius past 3 mrad takes in the ring: 400 more
    model.bf_outer_mrad = 3.5
    np.testing.assert_allclose(model.bright_field(), [[401, 402, 403], [411, 412, 413]])
    model.adf_inner_mrad = 3.1  # the ring (exactly 3 mrad) is now inside the inner radius
    np.testing.assert_allclose(model.annular_dark_field(), 0.0)


def test_cbed_follows_the_position_and_scale():
    model = RawDataModel(ring_patterns(), diff_step_mrad=1.0, log_scale=False)
    model.scan_y, model.scan_x = 1, 2
    assert model.cbed()[4, 4] == 13.0
    # log10(1 + 13) with the log scale on
    model.log_scale = True
    assert model.cbed()[4, 4] == pytest.approx(np.log10(14.0))
    # positions are clipped to the scan; a click at fractions (0.9, 0.1) is position (1, 0)
    model.scan_x = 99
    assert model.scan_x == 2
    model.pick(0.9, 0.1)
    assert (model.scan_y, model.scan_x) == (1, 0)
    # PACBED: the centre pixel averages (1 + 2 + 3 + 11 + 12 + 13) / 6 = 7
    model.log_scale = False
    assert model.pacbed()[4, 4] == pytest.approx(7.0)


def test_raw_data_from_a_simulated_file(tmp_path):
    _, path = simulated_file(tmp_path / "sim.h5", scan_shape=(3, 4), pattern_shape=(16, 16))
    model = RawDataModel.from_file(path)
    assert model.scan_shape == (3, 4) and model.diff_step_mrad == 2.0
    # all electrons (1e5 per pattern, Poisson) fall on the detector inside its corner angle
    np.testing.assert_allclose(model.virtual_image(0, 1e9), 1e5, rtol=0.02)
    found, message = diagnostics_for(path)
    assert message == "" and found.sampling_ratio > 1


def test_unreadable_dataset_is_named(tmp_path):
    bad = tmp_path / "broken.h5"
    bad.write_bytes(b"not hdf5")
    with pytest.raises(ValueError, match="broken.h5"):
        RawDataModel.from_file(bad)
    found, message = diagnostics_for(bad)
    assert found is None and "broken.h5" in message


def two_slice_state() -> ReconsState:
    """Two probe modes (intensities 3 and 1 -> powers 0.75 and 0.25) and two object slices of
    uniform phase 0.1 and 0.2 rad, amplitudes 1.0 and 0.9; errors 5, 4, 3 at iterations 1, 2, 3."""
    probe = np.zeros((2, 8, 8), dtype=np.complex64)
    probe[0, 4, 4] = np.sqrt(3.0)
    probe[1, 4, 4] = 1.0
    obj = np.stack([np.full((12, 12), np.exp(0.1j)), np.full((12, 12), 0.9 * np.exp(0.2j))]).astype(np.complex64)
    return ReconsState(
        kv=200.0,
        wavelength_A=0.0251,
        sampling_A=(0.4, 0.4),
        probe_modes=probe,
        object_slices=obj,
        slice_thicknesses_A=np.array([10.0, 10.0]),
        positions_A=np.zeros((4, 2)),
        initial_positions_A=np.zeros((4, 2)),
        tilt_mrad=np.zeros((4, 2)),
        scan_shape=(2, 2),
        iteration=3,
        error_history=[5.0, 4.0, 3.0],
        error_iterations=[1, 2, 3],
    )


def test_reconstruction_model_from_a_state_file(tmp_path):
    path = save_state(tmp_path / "final.h5", two_slice_state())
    model = ReconstructionModel.from_file(path)
    np.testing.assert_allclose(model.probe_powers(), [0.75, 0.25])
    # a delta at the centre: |psi| = sqrt(3) there; its far field is flat, sqrt(3) / 8 (ortho FFT, 64 px)
    assert model.probe_real()[4, 4] == pytest.approx(np.sqrt(3.0))
    np.testing.assert_allclose(model.probe_reciprocal(), np.sqrt(3.0) / 8, rtol=1e-6)
    model.probe_mode = 1
    np.testing.assert_allclose(model.probe_reciprocal(), 1.0 / 8, rtol=1e-6)
    np.testing.assert_allclose(model.object_phase(), 0.1, rtol=1e-6)
    model.slice_index = 1
    np.testing.assert_allclose(model.object_phase(), 0.2, rtol=1e-6)
    np.testing.assert_allclose(model.object_amplitude(), 0.9, rtol=1e-6)
    model.slice_index = 7  # clipped to the last slice
    assert model.slice_index == 1
    # summed phase 0.1 + 0.2 = 0.3 rad
    np.testing.assert_allclose(model.summed_phase(), 0.3, rtol=1e-6)
    iterations, errors = model.error_history()
    assert iterations.tolist() == [1, 2, 3] and errors.tolist() == [5.0, 4.0, 3.0]


def test_unreadable_state_file_is_named(tmp_path):
    with pytest.raises(ValueError, match="missing.h5"):
        ReconstructionModel.from_file(tmp_path / "missing.h5")
