"""Images of a state for ``phaser run``: one annotated figure per kind (PNG), raw float32 arrays (TIFF)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest
import tifffile

from phaser.cli import main
from phaser.figures import colorbar_axes, scale_bar_labels, state_figures
from phaser.io.images import state_images, write_state_images
from phaser.state import ReconsState
from tests.helpers import plan_for, simulated_file

ALL_KINDS = (
    "probe",
    "probe_recip",
    "object_phase_stack",
    "object_phase_sum",
    "object_mag_stack",
    "object_mag_sum",
    "scan",
    "tilt",
)


@pytest.fixture
def state() -> ReconsState:
    """Two 60x60 slices at 0.2 A, two 24x24 probe modes, a 5x5 scan over the middle of the object."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[:24, :24] - 12
    probe = np.exp(-(x**2 + y**2) / 20.0).astype(complex)
    positions = (np.mgrid[:5, :5].reshape(2, -1).T * 1.0 + 3.0).astype(float)  # 3..7 A
    return ReconsState(
        kv=200.0,
        wavelength_A=0.0251,
        sampling_A=(0.2, 0.2),
        probe_modes=np.stack([3.0 * probe, probe * np.exp(1j * np.arctan2(y, x))]),
        object_slices=np.exp(1j * 0.1 * rng.standard_normal((2, 60, 60))),
        slice_thicknesses_A=np.array([10.0, 10.0]),
        positions_A=positions + 0.01 * rng.standard_normal(positions.shape),
        initial_positions_A=positions,
        tilt_mrad=rng.standard_normal((25, 2)),
        iteration=7,
    )


def test_state_figures_one_per_kind_with_units(state: ReconsState) -> None:
    figures = state_figures(state, ALL_KINDS)
    assert list(figures) == list(ALL_KINDS)
    for kind, fig in figures.items():
        labels = [ax.get_ylabel() for ax in colorbar_axes(fig)]
        assert labels and all("[" in label for label in labels), kind
        if kind.startswith("object"):
            assert all(label.endswith("Å") for ax in fig.axes for label in scale_bar_labels(ax))


def test_state_figures_crop_to_the_scan(state: ReconsState) -> None:
    cropped = state_figures(state, ("object_phase_sum",))["object_phase_sum"]
    full = state_figures(state, ("object_phase_sum",), crop_roi=False)["object_phase_sum"]
    # positions 3..7 A = 15..35 px, plus a quarter of the 24 px probe on each side
    assert all(33 <= n <= 35 for n in cropped.axes[0].images[0].get_array().shape)
    assert full.axes[0].images[0].get_array().shape == (60, 60)


def test_state_figures_reject_unknown_kinds(state: ReconsState) -> None:
    with pytest.raises(ValueError, match="unknown image kind"):
        state_figures(state, ("histogram",))


def test_write_state_images_png_one_file_per_kind_at_the_dpi(state: ReconsState, tmp_path: Path) -> None:
    kinds = ("probe", "object_phase_stack")
    small = write_state_images(tmp_path / "a", state, kinds, "{type}_iter{iter:03}.{ext}", "png", dpi=100)
    large = write_state_images(tmp_path / "b", state, kinds, "{type}_iter{iter:03}.{ext}", "png", dpi=150)
    assert [p.name for p in small] == ["probe_iter007.png", "object_phase_stack_iter007.png"]
    for a, b in zip(small, large, strict=True):
        shape_a, shape_b = mpimg.imread(a).shape[:2], mpimg.imread(b).shape[:2]
        assert min(shape_a) >= 500
        assert shape_b[0] == pytest.approx(1.5 * shape_a[0], abs=2)


def test_write_state_images_tiff_keeps_raw_float_arrays(state: ReconsState, tmp_path: Path) -> None:
    paths = write_state_images(tmp_path, state, ("object_phase_stack", "probe"), "{type}.{ext}", "tif")
    assert sorted(p.name for p in paths) == sorted(
        ["object_phase_0.tif", "object_phase_1.tif", "probe_mode_0.tif", "probe_mode_1.tif"]
    )
    raw = tifffile.imread(tmp_path / "object_phase_1.tif")
    assert raw.dtype == np.float32
    np.testing.assert_allclose(raw, state_images(state, ("object_phase_stack",))["object_phase_1"], atol=1e-6)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return simulated_file(tmp_path_factory.mktemp("data") / "sim.h5", scan_shape=(4, 4))[1]


def test_phaser_run_writes_figures_at_the_plan_dpi(dataset: Path, tmp_path: Path) -> None:
    import yaml

    shapes = {}
    for dpi in (100, 150):
        engine = {
            "type": "gradient",
            "niter": 1,
            "noise_model": {"type": "amplitude"},
            "solvers": {
                "object": {"type": "adam", "learning_rate": 0.05},
                "probe": {"type": "adam", "learning_rate": 0.01},
            },
            "save_images": True,
            "save_options": {"images": ["probe", "object_phase_sum"], "plot_dpi": dpi},
        }
        plan = plan_for(dataset, [engine], name=f"dpi{dpi}")
        plan_path = tmp_path / f"dpi{dpi}.yaml"
        plan_path.write_text(yaml.safe_dump(plan))
        assert main(["run", str(plan_path), "--out-dir", str(tmp_path / f"out{dpi}")]) == 0
        pngs = sorted((tmp_path / f"out{dpi}").rglob("*.png"))
        assert {p.name for p in pngs} == {"probe_iter001.png", "object_phase_sum_iter001.png"}
        shapes[dpi] = {p.name: mpimg.imread(p).shape[:2] for p in pngs}
    for name, shape in shapes[100].items():
        assert min(shape) >= 500
        assert shapes[150][name][1] == pytest.approx(1.5 * shape[1], abs=2)
