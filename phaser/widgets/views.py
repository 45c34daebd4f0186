"""Thin Jupyter views over :mod:`phaser.widgets.models`: ipywidgets controls, PNG images, one anywidget.

Each view draws what its model returns and turns control changes into trait changes; no array
logic lives here. A file that cannot be read gives a widget holding a message that names the file.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

import anywidget
import ipywidgets as w
import numpy as np
import traitlets

from phaser.diagnostics import Acquisition, Diagnostics, acquisition_from_file, overlap_versus_step, scan_illumination
from phaser.widgets.models import RawDataModel, ReconstructionModel, diagnostics_for

IMAGE_PX = 240


def array_png(image: np.ndarray, cmap: str = "gray") -> bytes:
    """A 2D array as PNG bytes, scaled to its own min..max."""
    from matplotlib.image import imsave

    buffer = io.BytesIO()
    imsave(buffer, np.asarray(image, dtype=np.float64), cmap=cmap, format="png")
    return buffer.getvalue()


def plot_png(xs: np.ndarray, ys: np.ndarray, xlabel: str, ylabel: str, marker_x: float | None = None) -> bytes:
    """A small line plot as PNG bytes (matplotlib's Agg canvas, no pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(3.2, 2.2), dpi=80, layout="constrained")
    axes = figure.add_subplot()
    axes.plot(xs, ys, ".-")
    if marker_x is not None:
        axes.axvline(marker_x, color="tab:red", lw=1)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    buffer = io.BytesIO()
    FigureCanvasAgg(figure).print_png(buffer)
    return buffer.getvalue()


def image_widget(png: bytes, width: int = IMAGE_PX) -> w.Image:
    """An ipywidgets image of ``png`` bytes, ``width`` screen pixels wide."""
    return w.Image(value=png, format="png", width=width)


def message_widget(message: str) -> w.HTML:
    """A red message box (what bad input gets instead of a traceback)."""
    return w.HTML(f'<div style="color:#a00;border:1px solid #a00;padding:6px">{html.escape(message)}</div>')


def titled(title: str, widget: w.Widget) -> w.VBox:
    """``widget`` under a bold title."""
    return w.VBox([w.HTML(f"<b>{html.escape(title)}</b>"), widget])


class ClickableImage(anywidget.AnyWidget):
    """A PNG that reports where it was clicked, as fractions (y, x) of its height and width."""

    _esm = """
    function render({ model, el }) {
      const img = document.createElement("img");
      img.style.width = model.get("width") + "px";
      img.style.imageRendering = "pixelated";
      img.style.cursor = "crosshair";
      const draw = () => { img.src = "data:image/png;base64," + model.get("png_base64"); };
      draw();
      model.on("change:png_base64", draw);
      img.addEventListener("click", (event) => {
        const box = img.getBoundingClientRect();
        model.set("clicked", [(event.clientY - box.top) / box.height, (event.clientX - box.left) / box.width]);
        model.save_changes();
      });
      el.appendChild(img);
    }
    export default { render };
    """
    png_base64 = traitlets.Unicode("").tag(sync=True)
    clicked = traitlets.List(traitlets.Float(), default_value=[]).tag(sync=True)
    width = traitlets.Int(IMAGE_PX).tag(sync=True)

    def show(self, png: bytes) -> None:
        """Display ``png`` bytes."""
        self.png_base64 = base64.b64encode(png).decode("ascii")


class RawDataExplorer:
    """CBED at a scan position (click a virtual image to choose), PACBED, virtual BF/ADF, diagnostics."""

    def __init__(
        self,
        model: RawDataModel,
        diagnostics: Diagnostics | None = None,
        acquisition: Any = None,
        diagnostics_message: str = "",
    ) -> None:
        self.model = model
        max_mrad = float(model.scattering_angle_mrad().max())
        self.bright_field = ClickableImage()
        self.dark_field = ClickableImage()
        self.cbed = image_widget(b"")
        self.pacbed = image_widget(b"")
        self.bf_outer = w.FloatSlider(value=model.bf_outer_mrad, min=0, max=max_mrad, description="BF outer [mrad]")
        self.adf_range = w.FloatRangeSlider(
            value=(min(model.adf_inner_mrad, max_mrad), min(model.adf_outer_mrad, max_mrad)),
            min=0,
            max=max_mrad,
            description="ADF [mrad]",
        )
        self.log_scale = w.Checkbox(value=model.log_scale, description="log scale")
        self.position = w.HTML()
        for image in (self.bright_field, self.dark_field):
            image.observe(lambda change: model.pick(*change["new"]) if change["new"] else None, "clicked")
        self.bf_outer.observe(lambda c: setattr(model, "bf_outer_mrad", c["new"]), "value")
        self.adf_range.observe(lambda c: self._set_adf(*c["new"]), "value")
        self.log_scale.observe(lambda c: setattr(model, "log_scale", c["new"]), "value")
        model.observe(lambda _: self._draw_patterns(), ["scan_y", "scan_x", "log_scale"])
        model.observe(lambda _: self._draw_virtual(), ["bf_outer_mrad", "adf_inner_mrad", "adf_outer_mrad"])
        self._draw_patterns()
        self._draw_virtual()
        images = w.HBox(
            [
                titled("virtual BF (click: position)", self.bright_field),
                titled("virtual ADF (click: position)", self.dark_field),
                titled("CBED at position", self.cbed),
                titled("PACBED", self.pacbed),
            ]
        )
        panel = diagnostics_panel(diagnostics, acquisition, diagnostics_message)
        title = w.HTML(f"<b>{html.escape(model.source)}</b> scan {model.scan_shape}")
        self.widget = w.VBox(
            [title, images, w.HBox([self.bf_outer, self.adf_range, self.log_scale]), self.position, panel]
        )

    def _set_adf(self, inner: float, outer: float) -> None:
        self.model.adf_inner_mrad, self.model.adf_outer_mrad = inner, outer

    def _draw_patterns(self) -> None:
        self.cbed.value = array_png(self.model.cbed(), "inferno")
        self.pacbed.value = array_png(self.model.pacbed(), "inferno")
        self.position.value = f"position (y, x) = ({self.model.scan_y}, {self.model.scan_x})"

    def _draw_virtual(self) -> None:
        self.bright_field.show(array_png(self.model.bright_field()))
        self.dark_field.show(array_png(self.model.annular_dark_field()))

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)


def diagnostics_panel(found: Diagnostics | None, acquisition: Acquisition | None, message: str = "") -> w.Widget:
    """A table of the diagnostics, their warnings, the overlap against step and the scan's illumination."""
    if found is None or acquisition is None:
        return message_widget(message or "No acquisition diagnostics: no acquisition given")
    rows = "".join(
        f"<tr><td>{html.escape(name.replace('_', ' '))}</td><td>{value:.4g}</td></tr>"
        for name, value in found.as_dict().items()
    )
    warnings = "".join(f"<li>{html.escape(text)}</li>" for text in found.warnings()) or "<li>none</li>"
    table = w.HTML(f"<table>{rows}</table><b>warnings</b><ul>{warnings}</ul>")
    steps = np.linspace(0.0, 1.5 * found.probe_diameter_A, 25)
    overlap = plot_png(
        steps, overlap_versus_step(acquisition, steps), "step [A]", "intensity overlap", acquisition.scan_step_A
    )
    illumination, _ = scan_illumination(acquisition)
    return titled(
        "acquisition diagnostics",
        w.HBox(
            [
                table,
                titled("overlap of neighbouring probes", image_widget(overlap, 260)),
                titled("summed probe intensity over the scan", image_widget(array_png(illumination, "viridis"), 200)),
            ]
        ),
    )


def raw_data_explorer(path: str | Path, acquisition: Acquisition | None = None, **manual_props: Any) -> Any:
    """The explorer of the dataset at ``path`` (``manual_props``: the manual loader's parameters).

    ``acquisition`` defaults to what the file records (``phaser simulate`` files record all of it).
    """
    try:
        model = RawDataModel.from_file(path, **manual_props)
    except Exception as exc:  # noqa: BLE001 - any failure to read is shown, never raised into the cell
        return message_widget(f"Cannot read the dataset {path}: {exc}")
    found, message = diagnostics_for(path, acquisition)
    if found is not None and acquisition is None:
        acquisition = acquisition_from_file(path)
    return RawDataExplorer(model, found, acquisition, message)


class ReconstructionViewer:
    """Probe modes (real and reciprocal, with powers), object phase/amplitude per slice, summed phase, errors."""

    def __init__(self, model: ReconstructionModel) -> None:
        self.model = model
        self.slice_slider = w.IntSlider(value=0, min=0, max=model.n_slices - 1, description="slice")
        self.mode_slider = w.IntSlider(value=0, min=0, max=model.n_modes - 1, description="probe mode")
        self.slice_slider.observe(lambda c: setattr(model, "slice_index", c["new"]), "value")
        self.mode_slider.observe(lambda c: setattr(model, "probe_mode", c["new"]), "value")
        self.probe_real, self.probe_recip = image_widget(b"", 180), image_widget(b"", 180)
        self.phase, self.amplitude = image_widget(b""), image_widget(b"")
        self.powers = w.HTML()
        model.observe(lambda _: self._draw_probe(), "probe_mode")
        model.observe(lambda _: self._draw_slice(), "slice_index")
        self._draw_probe()
        self._draw_slice()
        iterations, errors = model.error_history()
        history = (
            image_widget(plot_png(iterations, errors, "iteration", "error"), 260)
            if errors.size
            else w.HTML("no error history recorded")
        )
        state = model.state
        title = w.HTML(
            f"<b>{html.escape(model.source)}</b>: iteration {state.iteration}, "
            f"{model.n_slices} slice(s), {model.n_modes} probe mode(s), pixel {state.sampling_A[0]:.3f} A"
        )
        self.widget = w.VBox(
            [
                title,
                w.HBox([self.mode_slider, self.powers]),
                w.HBox(
                    [
                        titled("probe |psi| (real)", self.probe_real),
                        titled("probe |psi| (reciprocal)", self.probe_recip),
                        titled("error history", history),
                    ]
                ),
                self.slice_slider,
                w.HBox(
                    [
                        titled("slice phase [rad]", self.phase),
                        titled("slice amplitude", self.amplitude),
                        titled("summed phase [rad]", image_widget(array_png(model.summed_phase()))),
                    ]
                ),
            ]
        )

    def _draw_probe(self) -> None:
        self.probe_real.value = array_png(self.model.probe_real(), "magma")
        self.probe_recip.value = array_png(self.model.probe_reciprocal(), "magma")
        powers = ", ".join(f"{100 * p:.1f}%" for p in self.model.probe_powers())
        self.powers.value = f"mode powers: {powers}"

    def _draw_slice(self) -> None:
        self.phase.value = array_png(self.model.object_phase())
        self.amplitude.value = array_png(self.model.object_amplitude())

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)


def reconstruction_viewer(path: str | Path) -> Any:
    """The viewer of the state file at ``path`` (``final.h5``, ``iterNNN.h5``, ``interrupted.h5``)."""
    try:
        model = ReconstructionModel.from_file(path)
    except Exception as exc:  # noqa: BLE001 - any failure to read is shown, never raised into the cell
        return message_widget(f"Cannot read the state file {path}: {exc}")
    return ReconstructionViewer(model)
