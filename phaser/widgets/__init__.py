"""Jupyter widgets: a raw-data explorer with acquisition diagnostics, a reconstruction viewer, a job
widget for ``phaser serve`` (:mod:`phaser.widgets.jobs`) and a study viewer (:mod:`phaser.widgets.studies`).

``pip install 'phaser[widgets]'``. The models (:mod:`phaser.widgets.models`) need only numpy and
traitlets; the views import ipywidgets and anywidget on first use.
"""

from __future__ import annotations

from typing import Any

from phaser.widgets.models import RawDataModel, ReconstructionModel, diagnostics_for

__all__ = [
    "RawDataModel",
    "ReconstructionModel",
    "diagnostics_for",
    "job_widget",
    "raw_data_explorer",
    "reconstruction_viewer",
    "study_viewer",
]


def raw_data_explorer(*args: Any, **kwargs: Any) -> Any:
    """See :func:`phaser.widgets.views.raw_data_explorer`."""
    from phaser.widgets.views import raw_data_explorer as view

    return view(*args, **kwargs)


def reconstruction_viewer(*args: Any, **kwargs: Any) -> Any:
    """See :func:`phaser.widgets.views.reconstruction_viewer`."""
    from phaser.widgets.views import reconstruction_viewer as view

    return view(*args, **kwargs)


def job_widget(*args: Any, **kwargs: Any) -> Any:
    """See :func:`phaser.widgets.jobs.job_widget`."""
    from phaser.widgets.jobs import job_widget as view

    return view(*args, **kwargs)


def study_viewer(*args: Any, **kwargs: Any) -> Any:
    """See :func:`phaser.widgets.studies.study_viewer`."""
    from phaser.widgets.studies import study_viewer as view

    return view(*args, **kwargs)
