"""Tests of phaser.figures: size, colour bars with units, scale bars, shared and symmetric colour scales."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest
from matplotlib.figure import Figure

from phaser.figures import (
    add_scale_bar,
    colorbar_axes,
    difference_figure,
    error_curve_figure,
    figure_png_bytes,
    frc_figure,
    nice_length,
    object_phase_figure,
    probe_modes_figure,
    save_figure,
    scale_bar_labels,
    scan_figure,
    slice_montage_figure,
    tilt_figure,
)

MIN_SIDE_PX = 500
ROUND_LENGTH = re.compile(r"^([125]0*|0\.0*[125]) (Å|mrad|1/Å)$")


def phase_image(shape: tuple[int, int] = (48, 64)) -> np.ndarray:
    y, x = np.mgrid[: shape[0], : shape[1]]
    return 0.4 * np.sin(x / 3.0) * np.cos(y / 4.0)


def probe_stack(n: int = 32, modes: int = 3) -> np.ndarray:
    """Centred aperture probes: mode m is mode 0 times a vortex of charge m, with falling weights."""
    k = np.fft.fftfreq(n)
    ky, kx = np.meshgrid(k, k, indexing="ij")
    aperture = (np.hypot(ky, kx) < 0.2) * np.exp(1j * 40 * (ky**2 + kx**2))
    weights = [10.0, 4.0, 2.0][:modes]
    return np.stack(
        [
            w * np.fft.fftshift(np.fft.ifft2(aperture * np.exp(1j * m * np.arctan2(ky, kx))))
            for m, w in enumerate(weights)
        ]
    )


def png_shape(fig: Figure, tmp_path: Path, dpi: int | None = None) -> tuple[int, int]:
    return mpimg.imread(save_figure(fig, tmp_path / "fig.png", dpi)).shape[:2]


def colorbar_labels(fig: Figure) -> list[str]:
    return [ax.get_ylabel() for ax in colorbar_axes(fig)]


def image_axes(fig: Figure) -> list:
    return [ax for ax in fig.axes if ax.images and ax not in colorbar_axes(fig)]


def all_scale_bars(fig: Figure) -> list[str]:
    """Every scale-bar label of ``fig``; each must read as a round length (1, 2 or 5 times a power of ten)."""
    labels = [label for ax in fig.axes for label in scale_bar_labels(ax)]
    assert all(ROUND_LENGTH.match(label) for label in labels), labels
    return labels


@pytest.mark.parametrize(
    ("field", "expected"), [(8.0, 1.0), (12.8, 2.0), (30.0, 5.0), (64.0, 10.0), (120.0, 20.0), (1.5, 0.2), (0.0, 1.0)]
)
def test_nice_length_is_a_round_fifth_of_the_field(field: float, expected: float) -> None:
    assert nice_length(field) == expected


def test_object_phase_figure_has_size_units_and_a_round_scale_bar(tmp_path: Path) -> None:
    fig = object_phase_figure(phase_image(), (0.25, 0.25))
    assert min(png_shape(fig, tmp_path)) >= MIN_SIDE_PX
    assert any("rad" in label for label in colorbar_labels(fig))
    bars = all_scale_bars(fig)
    assert bars == ["2 Å"]  # 64 px * 0.25 A = 16 A field: 1/5 is 3.2 A -> 2 A
    assert fig.get_suptitle().startswith("object phase")


def test_object_phase_figure_takes_a_complex_transmission_and_colour_limits() -> None:
    phase = phase_image()
    fig = object_phase_figure(np.exp(1j * phase), 0.3, vmin=-1.0, vmax=1.0)
    (ax,) = image_axes(fig)
    np.testing.assert_allclose(ax.images[0].get_array(), phase, atol=1e-12)
    assert ax.images[0].get_clim() == (-1.0, 1.0)


def test_slice_montage_shares_one_colour_scale_and_titles_depths(tmp_path: Path) -> None:
    slices = np.stack([phase_image() * f for f in (1.0, 0.5, 0.1)])
    fig = slice_montage_figure(slices, (0.25, 0.25), [10.0, 10.0, 20.0])
    axes = image_axes(fig)
    assert len(axes) == 3
    clims = {ax.images[0].get_clim() for ax in axes}
    assert len(clims) == 1
    assert clims.pop() == pytest.approx((slices.min(), slices.max()))
    assert len(colorbar_axes(fig)) == 1 and "rad" in colorbar_labels(fig)[0]
    titles = [ax.get_title() for ax in axes]
    assert "0–10" in titles[0] and "10–20" in titles[1] and "20–40 Å" in titles[2]
    assert all_scale_bars(fig) == ["2 Å"] * 3
    assert min(png_shape(fig, tmp_path)) >= MIN_SIDE_PX


def test_probe_figure_power_fractions_sum_to_100_percent_and_scales_in_A_and_mrad(tmp_path: Path) -> None:
    fig = probe_modes_figure(probe_stack(32, 3), (0.2, 0.2), wavelength_A=0.0251)
    titles = [ax.get_title() for ax in image_axes(fig) if ax.get_title().endswith("%")]
    fractions = [float(re.search(r"([\d.]+) %", t).group(1)) for t in titles]
    assert len(fractions) == 3 and sum(fractions) == pytest.approx(100.0, abs=0.15)
    assert fractions == sorted(fractions, reverse=True)
    bars = all_scale_bars(fig)
    # real space: 32 * 0.2 A = 6.4 A -> 1 A; reciprocal: 1e3 * 0.0251 / 6.4 = 3.92 mrad/px * 32 = 125 mrad -> 20 mrad
    assert bars.count("1 Å") == 3 and bars.count("20 mrad") == 3
    labels = colorbar_labels(fig)
    assert len(labels) == 2 and all("e/px" in label for label in labels)
    assert min(png_shape(fig, tmp_path)) >= MIN_SIDE_PX


def test_single_mode_probe_figure_is_large_enough(tmp_path: Path) -> None:
    fig = probe_modes_figure(probe_stack(32, 1), 0.2, wavelength_A=0.0251)
    assert min(png_shape(fig, tmp_path)) >= MIN_SIDE_PX
    assert any(ax.get_title() == "mode 1: 100.0 %" for ax in fig.axes)


def test_difference_figure_is_symmetric_about_zero_with_rmse_in_the_title(tmp_path: Path) -> None:
    truth = phase_image()
    recon = truth + 0.05 * np.random.default_rng(0).standard_normal(truth.shape)
    mask = np.zeros(truth.shape, dtype=bool)
    mask[8:40, 8:56] = True
    fig = difference_figure(recon, truth, 0.25, mask=mask)
    truth_ax, recon_ax, diff_ax = image_axes(fig)
    assert truth_ax.images[0].get_clim() == recon_ax.images[0].get_clim()
    lo, hi = diff_ax.images[0].get_clim()
    assert lo == -hi and hi > 0
    rmse = np.sqrt(np.mean((recon - truth)[mask] ** 2))
    assert f"RMSE {rmse:.3g} rad" in fig.get_suptitle()
    assert all(ax.collections for ax in (truth_ax, recon_ax, diff_ax))  # the mask outline
    assert any("difference [rad]" == label for label in colorbar_labels(fig))
    assert min(png_shape(fig, tmp_path)) >= MIN_SIDE_PX


def test_difference_figure_rejects_different_shapes() -> None:
    with pytest.raises(ValueError, match="shape"):
        difference_figure(np.zeros((4, 4)), np.zeros((4, 5)), 1.0)


def test_error_curve_is_log_scaled_with_engine_boundaries(tmp_path: Path) -> None:
    fig = error_curve_figure([5.0, 3.0, 2.0, 1.5, 1.2, 1.1], engine_boundaries=[3])
    (ax,) = fig.axes
    assert ax.get_yscale() == "log" and ax.get_xlabel() == "iteration"
    assert [line.get_xdata()[0] for line in ax.lines if line.get_linestyle() == "--"] == [3.5]
    assert min(png_shape(fig, tmp_path)) >= MIN_SIDE_PX
    assert error_curve_figure([1.0, -0.5, 0.2]).axes[0].get_yscale() == "linear"


def test_frc_figure_marks_the_crossings(tmp_path: Path) -> None:
    freqs = np.linspace(0.0, 2.0, 40)
    fig = frc_figure(freqs, np.exp(-(freqs**2)), {"1/7": np.full(40, 1 / 7)}, {"1/7": 0.8})
    ax = fig.axes[0]
    assert ax.get_xlabel() == "spatial frequency [1/Å]"
    crossing = [line for line in ax.lines if line.get_linestyle() == ":"]
    assert len(crossing) == 1 and crossing[0].get_xdata()[0] == pytest.approx(1 / 0.8)
    assert any("0.8 Å" in t.get_text() for t in ax.get_legend().get_texts())
    assert min(png_shape(fig, tmp_path)) >= MIN_SIDE_PX


def test_scan_and_tilt_figures_have_units(tmp_path: Path) -> None:
    grid = np.mgrid[:6, :6].reshape(2, -1).T * 0.6
    scan = scan_figure(grid + 0.02, grid)
    assert colorbar_labels(scan) == ["shift from initial [Å]"] and scan.axes[0].get_xlabel() == "x [Å]"
    tilt = tilt_figure(grid, np.random.default_rng(1).standard_normal((36, 2)))
    assert colorbar_labels(tilt) == ["tilt [mrad]"]
    lo, hi = tilt.axes[0].collections[0].get_clim()
    assert lo == -hi
    assert min(png_shape(scan, tmp_path)) >= MIN_SIDE_PX and min(png_shape(tilt, tmp_path)) >= MIN_SIDE_PX


def test_dpi_scales_the_png_and_png_bytes_match(tmp_path: Path) -> None:
    fig = object_phase_figure(phase_image(), 0.25)
    small, large = png_shape(fig, tmp_path, dpi=100), png_shape(fig, tmp_path, dpi=200)
    assert large[0] == pytest.approx(2 * small[0], abs=2)
    data = figure_png_bytes(fig)
    assert data.startswith(b"\x89PNG") and len(data) > 1000


def test_save_figure_creates_folders_and_writes_other_formats(tmp_path: Path) -> None:
    path = save_figure(error_curve_figure([1.0, 0.5]), tmp_path / "a" / "b" / "err.svg")
    assert path.exists() and path.read_text().lstrip().startswith("<?xml")


def test_add_scale_bar_on_any_axes() -> None:
    fig = Figure()
    ax = fig.add_subplot()
    ax.imshow(np.zeros((10, 100)))
    add_scale_bar(ax, sampling=0.5, n_pixels=100)  # 50 A field -> 10 A
    add_scale_bar(ax, sampling=0.01, n_pixels=100, unit="1/Å")  # 1 1/A field -> 0.2 1/A
    assert scale_bar_labels(ax) == ["10 Å", "0.2 1/Å"]


def test_figures_from_threads_do_not_touch_pyplot() -> None:
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    results: list[bytes] = []
    threads = [
        threading.Thread(target=lambda: results.append(figure_png_bytes(object_phase_figure(phase_image(), 0.25))))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 4 and len(set(results)) == 1
    assert plt.get_fignums() == before
