"""The views without a browser: they build, forward control changes to the model, and show bad input
as a message naming the file."""

from __future__ import annotations

import pytest

pytest.importorskip("ipywidgets", reason="the widget views need ipywidgets (pip install 'phaser[widgets]')")
pytest.importorskip("anywidget", reason="the widget views need anywidget (pip install 'phaser[widgets]')")

from phaser.io.state_file import save_state  # noqa: E402
from phaser.widgets import raw_data_explorer, reconstruction_viewer  # noqa: E402
from tests.helpers import simulated_file  # noqa: E402
from tests.widgets.test_models import two_slice_state  # noqa: E402


def test_raw_data_explorer_forwards_controls(tmp_path):
    _, path = simulated_file(tmp_path / "sim.h5", scan_shape=(4, 4), pattern_shape=(16, 16))
    explorer = raw_data_explorer(path)
    before = bytes(explorer.cbed.value)
    explorer.bright_field.clicked = [0.9, 0.6]  # what a click in the browser sends
    assert (explorer.model.scan_y, explorer.model.scan_x) == (3, 2)
    assert bytes(explorer.cbed.value) != before and "(3, 2)" in explorer.position.value
    explorer.bf_outer.value = 5.0
    assert explorer.model.bf_outer_mrad == 5.0
    explorer.adf_range.value = (10.0, 20.0)
    assert (explorer.model.adf_inner_mrad, explorer.model.adf_outer_mrad) == (10.0, 20.0)
    explorer.log_scale.value = False
    assert explorer.model.log_scale is False
    assert "sampling ratio" in explorer.widget.children[-1].children[1].children[0].value


def test_reconstruction_viewer_forwards_sliders(tmp_path):
    state = two_slice_state()
    state.object_slices[1, 0, 0] = 1.0  # slice 1 is no longer uniform, so its image differs from slice 0's
    viewer = reconstruction_viewer(save_state(tmp_path / "final.h5", state))
    first = bytes(viewer.phase.value)
    viewer.slice_slider.value = 1
    assert viewer.model.slice_index == 1 and bytes(viewer.phase.value) != first
    viewer.mode_slider.value = 1
    assert viewer.model.probe_mode == 1
    assert "75.0%" in viewer.powers.value


@pytest.mark.parametrize("make", [raw_data_explorer, reconstruction_viewer])
def test_bad_files_give_a_message_naming_them(tmp_path, make):
    bad = tmp_path / "garbage.h5"
    bad.write_text("not a file phaser can read")
    widget = make(bad)
    assert "garbage.h5" in widget.value and "Traceback" not in widget.value
