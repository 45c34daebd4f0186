"""Small previews for the live view: 8-bit grey PNGs (at most 256 px a side), base64 for JSON.

Cheap on purpose (block means and Pillow, no matplotlib): a worker sends them a few times a second.
"""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

MAX_SIDE = 256


def downsample(image: np.ndarray, max_side: int = MAX_SIDE) -> np.ndarray:
    """``image`` reduced by an integer block mean until no side exceeds ``max_side`` pixels."""
    factor = int(np.ceil(max(image.shape) / max_side))
    if factor <= 1:
        return image
    ny, nx = (image.shape[0] // factor) * factor, (image.shape[1] // factor) * factor
    blocks = image[:ny, :nx].reshape(ny // factor, factor, nx // factor, factor)
    return blocks.mean(axis=(1, 3))


def png_base64(image: np.ndarray, max_side: int = MAX_SIDE) -> str:
    """A real 2D ``image`` scaled to 0..255 between its 0.5th and 99.5th percentiles, as base64 PNG."""
    image = downsample(np.asarray(image, dtype=np.float64), max_side)
    finite = np.isfinite(image)
    if not finite.any():
        scaled = np.zeros(image.shape, dtype=np.uint8)
    else:
        low, high = np.percentile(image[finite], [0.5, 99.5])
        span = high - low if high > low else 1.0
        scaled = (np.clip((np.where(finite, image, low) - low) / span, 0, 1) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(scaled).save(buffer, format="PNG", optimize=False)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def state_previews(object_slices: np.ndarray, probe_modes: np.ndarray) -> dict[str, str]:
    """The summed object phase [rad], the probe amplitude (all modes) and its diffraction-plane
    amplitude, each a base64 PNG."""
    object_phase = np.angle(object_slices).sum(axis=0)
    probe_intensity = (np.abs(probe_modes) ** 2).sum(axis=0)
    recip = (np.abs(np.fft.fftshift(np.fft.fft2(probe_modes), axes=(-2, -1))) ** 2).sum(axis=0)
    return {
        "object_phase_png": png_base64(object_phase),
        "probe_png": png_base64(np.sqrt(probe_intensity)),
        "probe_recip_png": png_base64(np.sqrt(recip)),
    }
