"""The live view's previews: the summed phase, the slices' montage on one scale, the probe modes side by side."""

from __future__ import annotations

import base64
import io

import numpy as np

from phaser.server.previews import GAP, MAX_MONTAGE_WIDTH, MAX_SIDE, montage_png, state_previews


def _image(data: str) -> np.ndarray:
    from PIL import Image

    image = Image.open(io.BytesIO(base64.b64decode(data)))
    assert image.mode == "L"
    return np.asarray(image)


def test_the_slices_montage_puts_each_slice_side_by_side_on_one_scale() -> None:
    ny, nx = 40, 30
    rng = np.random.default_rng(0)
    # slice k has phase k rad (plus a little texture): on one grey scale the tiles step up in brightness
    phases = np.stack([k + 0.01 * rng.standard_normal((ny, nx)) for k in range(3)])
    previews = state_previews(np.exp(1j * phases), np.ones((1, 16, 16), dtype=np.complex64))
    montage = _image(previews["object_slices_png"])
    assert montage.shape == (ny, 3 * nx + 2 * GAP)
    tiles = [montage[:, k * (nx + GAP) : k * (nx + GAP) + nx] for k in range(3)]
    means = [tile.mean() for tile in tiles]
    assert means[0] < 20 and 100 < means[1] < 160 and means[2] > 235, means
    assert (montage[:, nx : nx + GAP] == 255).all()  # the gap between tiles
    assert previews["nslices"] == 3 and previews["nmodes"] == 1
    summed = _image(previews["object_phase_png"])
    assert summed.shape == (ny, nx)


def test_one_slice_sends_no_montage_and_probe_modes_come_side_by_side_in_both_spaces() -> None:
    modes = np.zeros((2, 32, 32), dtype=np.complex64)
    modes[0, 8:24, 8:24] = 10.0  # a strong mode and a weak one: each on its own scale, both visible
    modes[1, 12:20, 12:20] = 0.1
    previews = state_previews(np.ones((1, 50, 50), dtype=np.complex64), modes)
    assert "object_slices_png" not in previews and previews["nmodes"] == 2
    for key in ("probe_png", "probe_recip_png"):
        montage = _image(previews[key])
        assert montage.shape == (32, 2 * 32 + GAP), key
        assert montage[:, :32].max() == 255 and montage[:, 32 + GAP :].max() == 255, key
    real = _image(previews["probe_png"])
    assert real[16, 16] == 255 and real[0, 0] == 0 and real[16, 32 + GAP + 16] == 255


def test_montages_of_many_large_tiles_stay_within_their_size() -> None:
    images = [np.full((600, 700), float(k)) for k in range(8)]
    montage = _image(montage_png(images))
    assert montage.shape[1] <= MAX_MONTAGE_WIDTH and montage.shape[0] <= MAX_SIDE
    assert montage.shape[1] > MAX_MONTAGE_WIDTH * 0.7  # not needlessly small
