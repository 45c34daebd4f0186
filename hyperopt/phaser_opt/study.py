"""Reading a study file: the validated spec, its template's search space, and resolved paths."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from phaser.plan.read import ReadError, decode_plan_bytes
from phaser_opt.space import AnnotationError, SearchSpace, load_template, parse_template
from phaser_opt.spec import StudyError, StudySpec, validate_spec
from phaser_opt.storage import sqlite_url
from phaser_opt.template_io import read_text


@dataclass(frozen=True)
class LoadedStudy:
    """A study file made ready to run: spec, search space and absolute paths."""

    path: Path
    text: str
    spec: StudySpec
    space: SearchSpace
    template_source: str  # the template's file (or "<inline template>")
    template_text: str  # as written, annotations included, for the study's attributes
    plan_base: Path  # folder that the concrete plans' relative paths are relative to

    @property
    def folder(self) -> Path:
        return self.path.parent

    def resolve(self, path: Path | str) -> Path:
        """``path`` relative to the study file's folder (absolute paths unchanged)."""
        path = Path(path)
        return path if path.is_absolute() else (self.folder / path).resolve()

    @property
    def storage_url(self) -> str:
        """The study's storage URL: as written, else an SQLite file ``<name>.db`` beside the study."""
        return self.spec.storage or sqlite_url(self.folder / f"{self.spec.name}.db")

    @property
    def artifact_dir(self) -> Path:
        """Folder of the file-system artifact store."""
        given = self.spec.artifacts.dir
        return self.resolve(given) if given is not None else self.folder / f"{self.spec.name}_artifacts"

    @property
    def data_path(self) -> Path | None:
        return self.resolve(self.spec.data.path) if self.spec.data is not None else None


def with_storage(loaded: LoadedStudy, url: str) -> LoadedStudy:
    """``loaded`` with its storage URL replaced (``--storage`` on the command line)."""
    return dataclasses.replace(loaded, spec=loaded.spec.model_copy(update={"storage": url}))


def read_study_file(path: Path) -> tuple[str, Any]:
    """The text of a study file and its YAML content, read as templates are (the plan reader's
    limits, one document, annotation tags allowed in an inline template)."""
    if not path.is_file():
        raise StudyError(str(path), [("", "file not found" if not path.exists() else "not a file")])
    try:
        text = decode_plan_bytes(path.read_bytes())
    except (OSError, ReadError) as exc:
        raise StudyError(str(path), [("", f"cannot read it as a study file ({exc})")]) from None
    try:
        return text, read_text(text, str(path))
    except AnnotationError as exc:
        raise StudyError(str(path), exc.problems) from None


def load_study(path: str | Path) -> LoadedStudy:
    """Read and validate a study file and its template; raises :class:`StudyError` with every problem."""
    path = Path(path).resolve()
    text, data = read_study_file(path)
    spec = validate_spec(data, str(path))
    if isinstance(spec.template, dict):
        tree, source, template_text, base = spec.template, "<inline template>", _inline_text(data), path.parent
    else:
        template_path = spec.template if spec.template.is_absolute() else (path.parent / spec.template)
        if not template_path.is_file():
            raise StudyError(str(path), [("template", f"file not found: {template_path}")])
        try:
            tree = load_template(template_path)
        except AnnotationError as exc:
            raise StudyError(str(template_path), exc.problems) from None
        source, template_text, base = str(template_path), template_path.read_text(), template_path.parent
    try:
        space = parse_template(tree, source)
    except AnnotationError as exc:
        prefix = "template." if isinstance(spec.template, dict) else ""
        raise StudyError(str(path) if prefix else source, [(prefix + p, m) for p, m in exc.problems]) from None
    study = LoadedStudy(path, text, spec, space, source, template_text, base.resolve())
    _check_paths(study)
    return study


def _inline_text(data: dict[str, Any]) -> str:
    """A readable copy of an inline template for the study's attributes (annotations shown by repr)."""
    return yaml.safe_dump(_plain(data.get("template")), sort_keys=False)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def _check_paths(study: LoadedStudy) -> None:
    """Files the study names must exist (a dataset may instead have a recipe that makes it)."""
    problems = []
    spec = study.spec
    if spec.data is not None and spec.data.simulate is None and not study.data_path.exists():
        problems.append(("data.path", f"file not found: {study.data_path} (add `simulate:` to make it)"))
    if spec.data is not None and spec.data.simulate is not None:
        specimen = spec.data.simulate.get("specimen")
        if specimen is not None and not study.resolve(specimen).is_file():
            problems.append(("data.simulate.specimen", f"file not found: {study.resolve(specimen)}"))
    truth = spec.truth
    if truth is not None:
        for field in ("file", "specimen", "potential"):
            value = getattr(truth, field)
            if value is None:
                continue
            made_by_recipe = field == "file" and study.data_path == study.resolve(value) and spec.data.simulate
            if not study.resolve(value).is_file() and not made_by_recipe:
                problems.append((f"truth.{field}", f"file not found: {study.resolve(value)}"))
    if problems:
        raise StudyError(str(study.path), problems)
