"""The example notebook runs from top to bottom without an error (nbclient, a fresh kernel)."""

from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[2] / "examples" / "widgets.ipynb"


def test_example_notebook_runs():
    nbformat = pytest.importorskip("nbformat", reason="running the example notebook needs nbformat")
    nbclient = pytest.importorskip("nbclient", reason="running the example notebook needs nbclient")
    pytest.importorskip("ipykernel", reason="running the example notebook needs ipykernel (a python3 kernel)")
    pytest.importorskip("ipywidgets", reason="the example notebook needs ipywidgets (pip install 'phaser[widgets]')")
    pytest.importorskip("anywidget", reason="the example notebook needs anywidget (pip install 'phaser[widgets]')")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    )
    client.execute()
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [output for output in outputs if output.output_type == "error"]
    shown = [
        o for o in outputs if o.output_type == "execute_result" and "application/vnd.jupyter.widget-view+json" in o.data
    ]
    assert len(shown) >= 3  # the explorer, the viewer and the bad-input message are widgets
