"""Writing figures: to a file by its suffix, or to PNG bytes (for uploads such as study artifacts)."""

from __future__ import annotations

import io
from pathlib import Path

from matplotlib.figure import Figure


def save_figure(fig: Figure, path: str | Path, dpi: int | None = None) -> Path:
    """Write ``fig`` to ``path`` in the format its suffix names (PNG, PDF, SVG, ...); creates the folders.

    ``dpi`` [pixels per inch] defaults to the figure's own. The figure stays open for reuse; no
    global (pyplot) state is touched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi if dpi is not None else fig.dpi)
    return path


def figure_png_bytes(fig: Figure, dpi: int | None = None) -> bytes:
    """``fig`` as PNG file contents at ``dpi`` [pixels per inch] (default: the figure's own)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi if dpi is not None else fig.dpi)
    return buffer.getvalue()
