"""Known-answer tests of the metrics: FRC against its analytic curve, pixel metrics against
scikit-image, the alignment against a known shift, offset and ramp, and the potential RMSE."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import brentq
from skimage.metrics import mean_squared_error, structural_similarity

from phaser.metrics import (
    FRCResult,
    frc,
    frc_resolution,
    half_bit_threshold,
    mse,
    phase_error_vs_truth,
    rmse,
    ssim,
)
from phaser.physics.constants import interaction_constant
from phaser.physics.shift import fourier_shift

N = 256
CUTOFF = 0.3  # cycles/px: the signal's power spectrum is exp(-(f / CUTOFF)^ORDER)
ORDER = 12  # a steep edge, so that the crossings are sharp (ring noise moves them by about a ring)
NOISE_RMS = 0.35  # white noise of each copy; the signal's white source has rms 1


def radial_frequency(n: int) -> np.ndarray:
    f = np.fft.fftfreq(n)
    return np.hypot(f[:, None], f[None, :])


def gaussian_field(seed: int) -> np.ndarray:
    """A periodic random field: white noise (rms 1) filtered by ``exp(-(f / CUTOFF)^ORDER / 2)``."""
    white = np.random.default_rng(seed).normal(size=(N, N))
    gain = np.exp(-((radial_frequency(N) / CUTOFF) ** ORDER) / 2)
    return np.real(np.fft.ifft2(np.fft.fft2(white) * gain))


def snr(frequency: np.ndarray | float) -> np.ndarray:
    """Signal-to-noise power ratio per frequency [cycles/px] of one noisy copy."""
    return np.exp(-((np.asarray(frequency) / CUTOFF) ** ORDER)) / NOISE_RMS**2


def expected_rings(result: FRCResult, two_noisy: bool) -> np.ndarray:
    """The analytic FRC per ring (ring sums of the model spectra with the FRC's own binning)."""
    ring = np.rint(radial_frequency(N).ravel() / result.frequencies[1]).astype(int)
    inside = ring < len(result.frequencies)
    ratio = snr(radial_frequency(N).ravel()[inside])
    signal = np.bincount(ring[inside], ratio, len(result.frequencies))
    noisy = np.bincount(ring[inside], ratio + 1.0, len(result.frequencies))
    return signal / noisy if two_noisy else np.sqrt(signal / noisy)


def test_frc_of_two_noisy_copies_follows_snr_over_one_plus_snr():
    signal = gaussian_field(0)
    rng = np.random.default_rng(1)
    a = signal + NOISE_RMS * rng.normal(size=(N, N))
    b = signal + NOISE_RMS * rng.normal(size=(N, N))
    result = frc(a, b, window=None)
    expected = expected_rings(result, two_noisy=True)
    # standard error of a ring's correlation ~ (1 - rho^2) / sqrt(independent pixels = n / 2)
    sigma = (1 - expected**2) / np.sqrt(result.n_pixels_per_ring / 2) + 1e-3
    deviation = np.abs(result.curve - expected)[2:] / sigma[2:]
    assert np.max(deviation) < 5 and np.mean(deviation) < 1.2

    # 1/7: SNR / (1 + SNR) = 1/7 at SNR = 1/6, i.e. f = CUTOFF ln(6 / NOISE_RMS^2)^(1 / ORDER)
    f_seventh = CUTOFF * np.log(6 / NOISE_RMS**2) ** (1 / ORDER)
    seventh = frc_resolution(result, "1/7")
    assert seventh.crossed and seventh.frequency == pytest.approx(f_seventh, abs=1.5 / N)

    # half-bit: the threshold of a ring of radius f N px, about 2 pi f N pixels
    def half_bit_margin(f: float) -> float:
        return snr(f) / (1 + snr(f)) - half_bit_threshold(2 * np.pi * f * N)

    f_half_bit = brentq(half_bit_margin, 0.05, 0.5)
    half_bit = frc_resolution(result, "half-bit")
    assert half_bit.crossed and half_bit.frequency == pytest.approx(f_half_bit, abs=1.5 / N)
    # the half-bit threshold (>= 0.1716) lies above 1/7 everywhere: it is the more conservative one
    assert f_half_bit < f_seventh and half_bit.resolution >= seventh.resolution
    assert half_bit.resolution < 1.1 * seventh.resolution


def test_frc_against_a_noise_free_reference_is_the_square_root():
    signal = gaussian_field(2)
    noisy = signal + NOISE_RMS * np.random.default_rng(3).normal(size=(N, N))
    result = frc(noisy, signal, window=None)
    expected = expected_rings(result, two_noisy=False)
    sigma = (1 - expected**2) / np.sqrt(result.n_pixels_per_ring / 2) + 1e-3
    assert np.max(np.abs(result.curve - expected)[2:] / sigma[2:]) < 5
    # sqrt(SNR / (1 + SNR)) = 1/7 at SNR = 1/48
    f_seventh = CUTOFF * np.log(48 / NOISE_RMS**2) ** (1 / ORDER)
    assert frc_resolution(result, "1/7").frequency == pytest.approx(f_seventh, abs=1.5 / N)


def test_frc_resolution_skips_rings_below_the_threshold_before_the_curve_rises():
    # the low-frequency rings of a crystal in a small box: no shared signal, then the curve rises
    frequencies = np.linspace(0.0, 0.5, 11)
    curve = np.array([1.0, -0.24, 0.92, 0.99, 0.99, 0.99, 0.95, 0.8, 0.1, -0.5, -0.6])
    result = FRCResult(frequencies, curve, np.array([1, 8, 12, 16, 32, 28, 40, 40, 48, 68, 56]))
    seventh, half_bit = frc_resolution(result, "1/7"), frc_resolution(result, "half-bit")
    assert 0.35 < seventh.frequency < 0.4 and 0.35 < half_bit.frequency <= seventh.frequency
    never = frc_resolution(FRCResult(frequencies, np.full(11, 0.05), np.full(11, 50)), "1/7")
    assert never.crossed and never.frequency == 0.0 and never.resolution == np.inf
    # an isolated dip is ignored when a drop must last two rings
    dip = FRCResult(frequencies, np.array([1, 0.9, 0.05, 0.9, 0.9, 0.9, 0.9, 0.5, 0.05, 0.0, 0.0]), np.full(11, 99))
    assert frc_resolution(dip, "1/7").frequency < 0.1
    assert frc_resolution(dip, "1/7", min_rings_below=2).frequency > 0.35


@pytest.mark.parametrize("case", ["shifted", "noisy"])
def test_mse_rmse_ssim_match_scikit_image(case):
    reference = gaussian_field(4)[:96, :80]
    noise = 0.05 * np.random.default_rng(5).normal(size=reference.shape)
    image = np.roll(reference, (2, -3), axis=(0, 1)) if case == "shifted" else reference + noise
    data_range = float(reference.max() - reference.min())
    assert mse(image, reference) == pytest.approx(mean_squared_error(reference, image), rel=1e-12)
    assert rmse(image, reference) == pytest.approx(np.sqrt(mean_squared_error(reference, image)), rel=1e-12)
    expected_ssim, ssim_map = structural_similarity(image, reference, data_range=data_range, full=True)
    assert ssim(image, reference) == pytest.approx(expected_ssim, rel=1e-12)
    mask = np.zeros(reference.shape, bool)
    mask[20:70, 10:60] = True
    assert mse(image, reference, mask) == pytest.approx(mean_squared_error(reference[mask], image[mask]), rel=1e-12)
    masked_range = float(reference[mask].max() - reference[mask].min())
    masked_map = structural_similarity(image, reference, data_range=masked_range, full=True)[1]
    assert ssim(image, reference, mask=mask) == pytest.approx(masked_map[mask].mean(), rel=1e-12)


def aligned_case(kv: float | None):
    """A truth phase [rad] and a reconstruction shifted by (0.37, -1.21) px, offset by 0.8 rad and
    tilted by (0.004, -0.0025) rad/px, with the scan region of its middle."""
    truth = 1.5 * gaussian_field(6)[:96, :96] / gaussian_field(6).std()
    shift = np.array([0.37, -1.21])
    y, x = np.indices(truth.shape, dtype=np.float64)
    recon = np.real(fourier_shift(np, truth, shift)) + 0.8 + 0.004 * y - 0.0025 * x
    positions = np.stack(np.meshgrid(np.arange(28, 69, 4.0), np.arange(28, 69, 4.0), indexing="ij"), -1)
    return truth, recon, shift, positions.reshape(-1, 2)


def test_aligned_phase_error_recovers_the_known_shift_offset_and_ramp():
    truth, recon, shift, positions = aligned_case(None)
    scores = phase_error_vs_truth(recon, truth, positions, probe_radius_px=4.0, upsample=100)
    # what is left (0.5% of the rms phase) comes from Fourier-shifting the image faded beyond the mask
    assert scores["rmse_rad"] < 0.01 * truth.std() and scores["ssim"] > 0.999
    np.testing.assert_allclose(scores["shift_px"], -shift, atol=0.01)
    # the reconstruction moved back by -shift carries the plane evaluated at (y + sy, x + sx)
    np.testing.assert_allclose(scores["ramp_rad_per_px"], [0.004, -0.0025], atol=2e-5)
    assert scores["offset_rad"] == pytest.approx(0.8 + 0.004 * shift[0] - 0.0025 * shift[1], abs=2e-3)


def test_potential_rmse_is_the_phase_rmse_over_sigma():
    assert interaction_constant(300.0) == pytest.approx(6.5262e-4, rel=2e-4)  # rad/(V*A)
    truth, _, _, positions = aligned_case(None)
    noise = 0.02 * np.random.default_rng(7).normal(size=truth.shape)
    scores = phase_error_vs_truth(truth + noise, truth, positions, probe_radius_px=4.0, kv=300.0)
    assert scores["rmse_rad"] == pytest.approx(0.02, rel=0.1)
    assert scores["rmse_potential_VA"] == pytest.approx(scores["rmse_rad"] / 6.5262e-4, rel=2e-4)
