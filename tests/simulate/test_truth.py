"""Tests of phaser.simulate.truth: Fourier cropping and the band-limited truth potential."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("ase")

from phaser.simulate.from_specimen import _specimen_slices  # noqa: E402
from phaser.simulate.kirkland import projected_potential_integral  # noqa: E402
from phaser.simulate.specimen import Specimen, build_atoms  # noqa: E402
from phaser.simulate.truth import band_limited_potential, fourier_crop, specimen_truth  # noqa: E402

A_STO = 3.905
STO_2X2_THIN = {
    "name": "STO_2x2_thin",
    "structure": {
        "type": "spacegroup",
        "spacegroup": 221,
        "cellpar": [A_STO, A_STO, A_STO, 90, 90, 90],
        "symbols": ["Sr", "Ti", "O"],
        "basis": [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0]],
    },
    "zone_axis": [0, 0, 1],
    "supercell": [2, 2],
    "thickness": A_STO,
    "debye_waller": {"Sr": 0.6, "Ti": 0.4, "O": 0.7},
}
CELL_A = 2 * A_STO


@pytest.fixture(scope="module")
def specimen() -> Specimen:
    return Specimen.model_validate(STO_2X2_THIN)


def ncc(a: np.ndarray, b: np.ndarray) -> float:
    """Normalised cross-correlation of the mean-free images (1: equal up to offset and gain)."""
    a, b = a - a.mean(), b - b.mean()
    return float(np.sum(a * b) / np.sqrt(np.sum(a * a) * np.sum(b * b)))


def band_limited_image(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """A real random image of odd ``shape`` holding every frequency of its grid (none at Nyquist)."""
    return np.random.default_rng(seed).normal(size=shape)


def zero_padded(image: np.ndarray, factor: int) -> np.ndarray:
    """``image`` (odd sides) interpolated on a grid ``factor`` times finer by zero-padding its spectrum."""
    shape = np.array(image.shape)
    spectrum = np.fft.fftshift(np.fft.fft2(image))
    padded = np.zeros(tuple(shape * factor), dtype=complex)
    start = shape * factor // 2 - shape // 2
    padded[start[0] : start[0] + shape[0], start[1] : start[1] + shape[1]] = spectrum
    return np.real(np.fft.ifft2(np.fft.ifftshift(padded))) * factor**2


def test_fourier_crop_reproduces_a_band_limited_image():
    coarse = band_limited_image((33, 35))
    fine = zero_padded(coarse, 3)
    np.testing.assert_allclose(fine[::3, ::3], coarse, atol=1e-12)  # the padding interpolates
    np.testing.assert_allclose(fourier_crop(fine, coarse.shape), coarse, atol=1e-12)
    stack = np.stack([fine, 2 * fine])
    np.testing.assert_allclose(fourier_crop(stack, coarse.shape), np.stack([coarse, 2 * coarse]), atol=1e-12)
    with pytest.raises(ValueError, match="shrinks"):
        fourier_crop(coarse, (40, 40))


def test_fourier_crop_keeps_the_mean_and_the_amplitude_of_a_cosine():
    image = np.random.default_rng(1).normal(size=(64, 48)) + 3.0
    assert fourier_crop(image, (20, 17)).mean() == pytest.approx(image.mean(), rel=1e-12)
    y, x = np.indices((64, 64))
    cosine = 0.7 * np.cos(2 * np.pi * (5 * x + 3 * y) / 64 + 0.4)
    y2, x2 = np.indices((32, 32))
    expected = 0.7 * np.cos(2 * np.pi * (5 * x2 + 3 * y2) / 32 + 0.4)
    np.testing.assert_allclose(fourier_crop(cosine, (32, 32)), expected, atol=1e-12)


def test_band_limited_differs_from_the_direct_potential_only_near_nyquist(specimen):
    atoms = build_atoms(specimen)
    step = CELL_A / 35  # one period is exactly 35 px: periodic, odd (no Nyquist bin)
    sampling = (step, step)
    band = band_limited_potential(specimen, sampling, (35, 35), atoms=atoms)[0]
    direct = _specimen_slices(atoms, specimen, A_STO, (35, 35), sampling, (0.0, 0.0))[0]
    f = np.abs(np.fft.fftfreq(35))
    radius = np.hypot(f[:, None], f[None, :])
    band_k, direct_k = np.fft.fft2(band), np.fft.fft2(direct)
    low = radius < 0.25  # below half the Nyquist frequency the direct potential is not rolled off
    np.testing.assert_allclose(band_k[low], direct_k[low], atol=1e-9 * np.abs(band_k).max())
    difference = np.abs(band_k - direct_k) ** 2
    assert difference[radius >= 0.25].sum() > 0.05 * (np.abs(band_k[radius >= 0.25]) ** 2).sum()
    # the mean potential: the atoms' integrals over the cell's area
    expected = sum(projected_potential_integral(z) for z in atoms.numbers) / CELL_A**2
    assert band.mean() == pytest.approx(expected, rel=1e-9)


def test_band_limited_equals_a_fine_direct_evaluation_cropped(specimen):
    atoms = build_atoms(specimen)
    step = CELL_A / 35
    fine = _specimen_slices(atoms, specimen, A_STO, (140, 140), (step / 4, step / 4), (0.0, 0.0))
    cropped = fourier_crop(fine, (35, 35))
    band = band_limited_potential(specimen, (step, step), (35, 35), atoms=atoms)
    np.testing.assert_allclose(band, cropped, atol=1e-6 * np.abs(band).max())


def test_truth_at_0p2034_converges_and_beats_the_direct_evaluation(specimen):
    sampling = (0.2034, 0.2034)
    truth_4, attrs = specimen_truth(specimen, sampling, None, factor=4)
    truth_8, _ = specimen_truth(specimen, sampling, None, factor=8)
    atoms = build_atoms(specimen)
    direct = _specimen_slices(atoms, specimen, A_STO, truth_4.shape[-2:], sampling, (0.0, 0.0))
    converged = ncc(truth_4.astype(np.float64), truth_8.astype(np.float64))
    direct_ncc = ncc(direct, truth_8.astype(np.float64))
    assert converged > 0.9999
    assert direct_ncc < 0.995 and 1 - direct_ncc > 100 * (1 - converged)
    assert truth_4.shape == (1, 38, 38) and truth_4.dtype == np.float32
    assert attrs["fourier_crop_factor"] == 4 and attrs["sampling_A"] == sampling
    assert attrs["cell_A"] == pytest.approx((CELL_A, CELL_A, A_STO))


def test_specimen_truth_slices_and_default_factor(specimen):
    truth, attrs = specimen_truth(specimen, (0.3, 0.3), 2.0, shape_px=(16, 20))
    assert truth.shape == (2, 16, 20)
    np.testing.assert_allclose(attrs["slice_z_A"], [0.0, 2.0])
    assert attrs["fourier_crop_factor"] == 6  # 0.3 A / 6 = 0.05 A
    whole, _ = specimen_truth(specimen, (0.3, 0.3), None, shape_px=(16, 20))
    np.testing.assert_allclose(truth.sum(axis=0), whole[0], atol=1e-3 * np.abs(whole).max())
