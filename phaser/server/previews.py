"""Small previews for the live view: 8-bit grey PNGs, base64 for JSON.

The summed object phase is at most :data:`MAX_SIDE` px a side; the montages (the object's slices
side by side, the probe modes side by side in real and reciprocal space) at most
:data:`MAX_MONTAGE_WIDTH` px wide and :data:`MAX_SIDE` px high. Cheap on purpose (block means and
Pillow, no matplotlib): a worker sends them a few times a second.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence

import numpy as np
from PIL import Image

MAX_SIDE = 256
MAX_MONTAGE_WIDTH = 512
GAP = 2  # white columns between the tiles of a montage


def block_mean(image: np.ndarray, factor: int) -> np.ndarray:
    """``image`` reduced by the mean over ``factor`` x ``factor`` blocks (edges that do not fill a block dropped)."""
    if factor <= 1:
        return image
    ny, nx = max(factor, (image.shape[0] // factor) * factor), max(factor, (image.shape[1] // factor) * factor)
    image = np.pad(image, ((0, max(0, ny - image.shape[0])), (0, max(0, nx - image.shape[1]))), mode="edge")
    blocks = image[:ny, :nx].reshape(ny // factor, factor, nx // factor, factor)
    return blocks.mean(axis=(1, 3))


def downsample(image: np.ndarray, max_side: int = MAX_SIDE) -> np.ndarray:
    """``image`` reduced by an integer block mean until no side exceeds ``max_side`` pixels."""
    return block_mean(image, int(np.ceil(max(image.shape) / max_side)))


def _limits(images: Sequence[np.ndarray]) -> tuple[float, float]:
    """The 0.5th and 99.5th percentiles of the finite values (0, 1 when there are none)."""
    finite = np.concatenate([image[np.isfinite(image)].ravel() for image in images])
    if not finite.size:
        return 0.0, 1.0
    low, high = np.percentile(finite, [0.5, 99.5])
    return float(low), float(high if high > low else low + 1.0)


def _to_uint8(image: np.ndarray, low: float, high: float) -> np.ndarray:
    finite = np.isfinite(image)
    return (np.clip((np.where(finite, image, low) - low) / (high - low), 0, 1) * 255).astype(np.uint8)


def _png(scaled: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(scaled).save(buffer, format="PNG", optimize=False)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def png_base64(image: np.ndarray, max_side: int = MAX_SIDE) -> str:
    """A real 2D ``image`` scaled to 0..255 between its 0.5th and 99.5th percentiles, as base64 PNG."""
    image = downsample(np.asarray(image, dtype=np.float64), max_side)
    return _png(_to_uint8(image, *_limits([image])))


def montage_png(
    images: Sequence[np.ndarray],
    shared_scale: bool = True,
    max_width: int = MAX_MONTAGE_WIDTH,
    max_height: int = MAX_SIDE,
) -> str:
    """Real 2D ``images`` side by side (white :data:`GAP` px apart), one block-mean factor for all so
    the montage fits ``max_width`` x ``max_height``; one grey scale for all (``shared_scale``, so
    tiles compare) or one per tile. A base64 PNG."""
    images = [np.asarray(image, dtype=np.float64) for image in images]
    n = len(images)
    height, width = max(i.shape[0] for i in images), max(i.shape[1] for i in images)
    factor = max(1, math.ceil(height / max_height), math.ceil(n * width / max(1, max_width - (n - 1) * GAP)))
    small = [block_mean(image, factor) for image in images]
    while sum(s.shape[1] for s in small) + (n - 1) * GAP > max_width and factor < max(height, width):
        factor += 1
        small = [block_mean(image, factor) for image in images]
    shared = _limits(small) if shared_scale else None
    tiles = [_to_uint8(s, *(shared or _limits([s]))) for s in small]
    rows = max(t.shape[0] for t in tiles)
    columns = sum(t.shape[1] for t in tiles) + (n - 1) * GAP
    canvas = np.full((rows, columns), 255, dtype=np.uint8)
    x = 0
    for tile in tiles:
        canvas[: tile.shape[0], x : x + tile.shape[1]] = tile
        x += tile.shape[1] + GAP
    return _png(canvas)


def state_previews(object_slices: np.ndarray, probe_modes: np.ndarray) -> dict[str, object]:
    """The live view's images, each a base64 PNG: the summed object phase [rad]; with several
    slices, their phases side by side on one scale; the probe modes' amplitudes side by side in real
    space and in the diffraction plane (each mode on its own scale: a weak mode stays visible)."""
    phases = np.angle(object_slices)
    recip = np.abs(np.fft.fftshift(np.fft.fft2(probe_modes), axes=(-2, -1)))
    previews: dict[str, object] = {
        "object_phase_png": png_base64(phases.sum(axis=0)),
        "probe_png": montage_png(list(np.abs(probe_modes)), shared_scale=False),
        "probe_recip_png": montage_png(list(recip), shared_scale=False),
        "nslices": int(phases.shape[0]),
        "nmodes": int(probe_modes.shape[0]),
    }
    if phases.shape[0] > 1:
        previews["object_slices_png"] = montage_png(list(phases), shared_scale=True)
    return previews
