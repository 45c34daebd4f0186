"""A phaser-opt study in a notebook: the trial table sorted by any metric, and two trials side by side.

:class:`StudyModel` (traitlets only, no browser) reads an optuna study, its trials' ``metric.*``
user attributes, parameters and plans, and the PNG figures each trial uploaded to the study's
file-system artifact store. :func:`study_viewer` draws it with ipywidgets. A study that cannot be
opened gives a widget holding a message naming the study and its storage.
"""

from __future__ import annotations

import html
import math
import tempfile
from pathlib import Path
from typing import Any

from traitlets import Bool, HasTraits, Int, Unicode, validate

FIXED_COLUMNS = ("number", "state", "value")
FIGURE_ORDER = ("object_phase.png", "difference.png", "probe.png", "frc.png", "error.png")  # the rest after, by name


class StudyError(ValueError):
    """A study that cannot be opened; the message names the study and its storage."""


class StudyModel(HasTraits):
    """The trials of one study. Traits: ``sort_by`` (a column of :meth:`columns`), ``descending``,
    and the two trials shown side by side, ``selected`` and ``compare`` (trial numbers, -1: none)."""

    sort_by = Unicode("number")
    descending = Bool(False)
    selected = Int(-1)
    compare = Int(-1)
    source = Unicode("")

    def __init__(self, study: Any, artifact_dir: str | Path | None = None, source: str = "", **traits: Any) -> None:
        self.study = study
        self.artifact_dir = Path(artifact_dir) if artifact_dir is not None else None
        self.trials = list(study.get_trials(deepcopy=False))
        self._images: dict[int, dict[str, bytes]] = {}
        super().__init__(source=source or study.study_name, **traits)
        if self.selected < 0 and self.trials:
            rows = self.rows()
            self.selected = rows[0]["number"]
            self.compare = rows[1]["number"] if len(rows) > 1 else -1

    # -- opening -------------------------------------------------------------------------------
    @classmethod
    def from_file(cls, path: str | Path, **traits: Any) -> StudyModel:
        """The study described by the study file ``path``, as it is in its storage (not created).

        Raises :class:`StudyError` naming the study file, the study and its storage."""
        from phaser_opt.study import load_study

        try:
            loaded = load_study(path)
        except Exception as exc:  # noqa: BLE001 - any failure to read the file becomes one message
            raise StudyError(f"Cannot read the study file {path}: {exc}") from None
        return cls.from_storage(loaded.spec.name, loaded.storage_url, loaded.artifact_dir, **traits)

    @classmethod
    def from_storage(cls, name: str, storage: str, artifact_dir: str | Path | None = None, **traits: Any) -> StudyModel:
        """The study ``name`` in the optuna storage URL ``storage``; raises :class:`StudyError` naming both."""
        import optuna

        shown = _masked(storage)
        if storage.startswith("sqlite:///") and not Path(storage.removeprefix("sqlite:///")).is_file():
            raise StudyError(f"No study {name!r} in {shown}: the database file does not exist")
        try:
            study = optuna.load_study(study_name=name, storage=storage)
        except KeyError:
            raise StudyError(f"No study {name!r} in {shown}") from None
        except Exception as exc:  # noqa: BLE001 - an unreachable database, a bad URL
            raise StudyError(f"Cannot open the study {name!r} in {shown}: {exc}") from None
        return cls(study, artifact_dir, source=f"{name} ({shown})", **traits)

    # -- the table -----------------------------------------------------------------------------
    def metric_names(self) -> list[str]:
        """The ``metric.*`` user attributes any trial recorded, without the prefix, sorted."""
        names = {k.removeprefix("metric.") for t in self.trials for k in t.user_attrs if k.startswith("metric.")}
        return sorted(names)

    def param_names(self) -> list[str]:
        """The searched parameters any trial drew, sorted."""
        return sorted({name for t in self.trials for name in t.params})

    def columns(self) -> list[str]:
        """Every column of the table: number, state, value, the metrics, then ``param.<name>``."""
        return [*FIXED_COLUMNS, *self.metric_names(), *(f"param.{p}" for p in self.param_names())]

    @validate("sort_by")
    def _known_column(self, proposal: Any) -> str:
        if proposal["value"] not in self.columns():
            raise ValueError(f"sort_by: {proposal['value']!r} is not one of {', '.join(self.columns())}")
        return proposal["value"]

    def row(self, trial: Any) -> dict[str, Any]:
        """One trial as ``{column: value}`` (None where it has no value)."""
        values = trial.values or []
        found: dict[str, Any] = {
            "number": trial.number,
            "state": trial.state.name.lower(),
            "value": values[0] if len(values) == 1 else (list(values) or None),
        }
        for name in self.metric_names():
            found[name] = trial.user_attrs.get(f"metric.{name}")
        for name in self.param_names():
            found[f"param.{name}"] = trial.params.get(name)
        return found

    def rows(self) -> list[dict[str, Any]]:
        """The trials' rows ordered by ``sort_by`` (``descending`` reverses); trials without a
        value in that column (failed, pruned, running) come last, by number."""
        rows = [self.row(t) for t in self.trials]
        key = self.sort_by

        def missing(row: dict[str, Any]) -> bool:
            value = row[key]
            return value is None or isinstance(value, list) or (isinstance(value, float) and math.isnan(value))

        have = sorted((r for r in rows if not missing(r)), key=lambda r: (r[key], r["number"]), reverse=self.descending)
        return have + sorted((r for r in rows if missing(r)), key=lambda r: r["number"])

    # -- one trial -----------------------------------------------------------------------------
    def trial(self, number: int) -> Any:
        """The frozen trial ``number``; ``KeyError`` naming it when there is none."""
        for trial in self.trials:
            if trial.number == number:
                return trial
        raise KeyError(f"no trial {number} in the study {self.source}")

    def parameters(self, number: int) -> dict[str, Any]:
        """The trial's searched parameters."""
        return dict(self.trial(number).params)

    def metrics(self, number: int) -> dict[str, Any]:
        """The trial's metrics (``metric.*`` user attributes, prefix removed)."""
        attrs = self.trial(number).user_attrs
        return {k.removeprefix("metric."): v for k, v in sorted(attrs.items()) if k.startswith("metric.")}

    def plan_yaml(self, number: int) -> str:
        """The concrete plan the trial ran (its ``plan_yaml`` user attribute), or ""."""
        return str(self.trial(number).user_attrs.get("plan_yaml", ""))

    def images(self, number: int) -> dict[str, bytes]:
        """The PNG figures the trial uploaded, ``{file name: PNG bytes}`` ({} without an artifact store)."""
        if number in self._images:
            return self._images[number]
        found: dict[str, bytes] = {}
        if self.artifact_dir is not None and self.artifact_dir.is_dir():
            from optuna.artifacts import download_artifact, get_all_artifact_meta

            from phaser_opt.artifacts import artifact_store

            store = artifact_store(self.artifact_dir)
            trial = self.trial(number)
            with tempfile.TemporaryDirectory(prefix="phaser-study-") as tmp:
                for meta in get_all_artifact_meta(trial, storage=self.study._storage):
                    if meta.mimetype != "image/png":
                        continue
                    target = Path(tmp) / f"{meta.artifact_id}.png"
                    try:
                        download_artifact(artifact_store=store, artifact_id=meta.artifact_id, file_path=str(target))
                    except Exception:  # noqa: BLE001,S112 - a missing artifact file is skipped, not fatal
                        continue
                    found[meta.filename] = target.read_bytes()
        order = {name: i for i, name in enumerate(FIGURE_ORDER)}
        found = dict(sorted(found.items(), key=lambda item: (order.get(item[0], len(order)), item[0])))
        self._images[number] = found
        return found

    def selected_pair(self) -> list[int]:
        """The trials shown side by side: ``selected`` and ``compare`` (those that exist)."""
        numbers = {t.number for t in self.trials}
        return [n for n in (self.selected, self.compare) if n in numbers]


def _masked(url: str) -> str:
    """``url`` with any password replaced by ``***``."""
    try:
        from phaser_opt.storage import masked_url

        return masked_url(url)
    except Exception:  # noqa: BLE001 - showing the URL must never fail
        return url


def format_value(value: Any) -> str:
    """A table cell: numbers to 4 significant figures, None as a dash."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return ", ".join(format_value(v) for v in value)
    return str(value)


def table_html(model: StudyModel, max_rows: int = 200) -> str:
    """The trial table as HTML, ordered by the model; the selected and compared rows highlighted."""
    columns = model.columns()
    arrow = " &#9660;" if model.descending else " &#9650;"
    head = "".join(
        f"<th style='padding:2px 6px'>{html.escape(c)}{arrow if c == model.sort_by else ''}</th>" for c in columns
    )
    body = []
    for row in model.rows()[:max_rows]:
        colour = {model.selected: "#dbeafe", model.compare: "#fde68a"}.get(row["number"], "")
        style = f" style='background:{colour}'" if colour else ""
        cells = "".join(f"<td style='padding:2px 6px'>{html.escape(format_value(row[c]))}</td>" for c in columns)
        body.append(f"<tr{style}>{cells}</tr>")
    return f"<table style='border-collapse:collapse;font-size:12px'><tr>{head}</tr>{''.join(body)}</table>"


class StudyViewer:
    """The trial table (sort by any column) and two trials' figures, metrics and parameters side by side."""

    def __init__(self, model: StudyModel, image_px: int = 260) -> None:
        import ipywidgets as w

        self.model = model
        self.image_px = image_px
        numbers = [(f"trial {r['number']}", r["number"]) for r in model.rows()]
        self.sort_by = w.Dropdown(options=model.columns(), value=model.sort_by, description="sort by")
        self.descending = w.Checkbox(value=model.descending, description="descending")
        self.selected = w.Dropdown(options=numbers, value=model.selected if numbers else None, description="trial")
        self.compare = w.Dropdown(options=[("none", -1), *numbers], value=model.compare, description="compare with")
        self.table = w.HTML()
        self.panels = w.HBox()
        self.sort_by.observe(lambda c: setattr(model, "sort_by", c["new"]), "value")
        self.descending.observe(lambda c: setattr(model, "descending", c["new"]), "value")
        self.selected.observe(lambda c: setattr(model, "selected", c["new"]), "value")
        self.compare.observe(lambda c: setattr(model, "compare", c["new"]), "value")
        for trait in ("sort_by", "descending", "selected", "compare"):  # code changing the model moves the controls
            model.observe(lambda c: setattr(getattr(self, c["name"]), "value", c["new"]), trait)
        model.observe(lambda _: self._draw_table(), ["sort_by", "descending", "selected", "compare"])
        model.observe(lambda _: self._draw_panels(), ["selected", "compare"])
        self._draw_table()
        self._draw_panels()
        title = w.HTML(f"<b>study {html.escape(model.source)}</b>: {len(model.trials)} trial(s)")
        controls = w.HBox([self.sort_by, self.descending, self.selected, self.compare])
        self.widget = w.VBox([title, controls, self.table, self.panels])

    def _draw_table(self) -> None:
        self.table.value = table_html(self.model)

    def _panel(self, number: int) -> Any:
        import ipywidgets as w

        from phaser.widgets.views import image_widget, titled

        metrics = "".join(
            f"<tr><td>{html.escape(k)}</td><td>{html.escape(format_value(v))}</td></tr>"
            for k, v in self.model.metrics(number).items()
        )
        params = "".join(
            f"<tr><td>{html.escape(k)}</td><td>{html.escape(format_value(v))}</td></tr>"
            for k, v in self.model.parameters(number).items()
        )
        trial = self.model.trial(number)
        info = w.HTML(
            f"<b>trial {number}</b> ({trial.state.name.lower()})<br><b>parameters</b><table>{params}</table>"
            f"<b>metrics</b><table>{metrics}</table>"
        )
        images = [titled(name, image_widget(png, self.image_px)) for name, png in self.model.images(number).items()]
        plan = w.Textarea(value=self.model.plan_yaml(number), layout=w.Layout(width="100%", height="160px"))
        gallery = w.GridBox(images, layout=w.Layout(grid_template_columns=f"repeat(2, {self.image_px + 10}px)"))
        return w.VBox(
            [
                info,
                gallery if images else w.HTML("no figures in the artifact store"),
                w.Accordion([plan], titles=("plan",)),
            ],
            layout=w.Layout(border="1px solid #ccc", padding="4px", margin="2px"),
        )

    def _draw_panels(self) -> None:
        self.panels.children = [self._panel(n) for n in self.model.selected_pair()]

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)


def study_viewer(
    study: str | Path, storage: str | None = None, artifact_dir: str | Path | None = None, **traits: Any
) -> Any:
    """The viewer of a study: a study file's path, or a study name with its optuna ``storage`` URL
    (and the ``artifact_dir`` of its figures). A study that cannot be opened: a message naming it."""
    from phaser.widgets.views import message_widget

    try:
        if storage is None:
            model = StudyModel.from_file(study, **traits)
        else:
            model = StudyModel.from_storage(str(study), storage, artifact_dir, **traits)
        return StudyViewer(model)
    except Exception as exc:  # noqa: BLE001 - any failure is shown, never raised into the cell
        return message_widget(str(exc) if isinstance(exc, StudyError) else f"Cannot show the study {study}: {exc}")
