"""Jobs that are phaser-opt studies: recognised, checked and run as a phaser-opt worker.

A submission whose YAML holds both ``template`` and ``objectives`` is a study file (issue 5), given
as a path under the root or as text (then it stands for a file in the first root: its relative
paths, and its default SQLite storage, are taken from there). The server refuses custom hooks and
paths outside the roots (403) before :func:`phaser_opt.validate.validate_study` collects every
problem (422). A worker runs the study's trials one at a time with :func:`phaser_opt.runner.run_trials`,
sending an update after each finished trial and stopping between trials when the job is cancelled.
"""

from __future__ import annotations

import contextlib
import io
import math
import shlex
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from phaser import hooks
from phaser.server.security import Forbidden, Roots
from phaser.server.submit import NETWORK_HOOKS_ADVICE, PlanProblems, Submission, _data_paths, _hook_refs

STUDY_KEYS = ("template", "objectives")


def study_tree(text: str) -> dict | None:
    """The study file's YAML tree when ``text`` is a study (keys ``template`` and ``objectives``), else None."""
    if "objectives" not in text or "template" not in text:
        return None  # cheap: most submissions are plans
    try:
        from phaser_opt.template_io import read_text
    except ImportError:
        return None
    try:
        data = read_text(text, "<study>")  # read as phaser-opt reads study files
    except Exception:  # noqa: BLE001 - not readable as one study document: the plan reader says why
        return None
    return data if isinstance(data, dict) and all(key in data for key in STUDY_KEYS) else None


@contextlib.contextmanager
def study_file(text: str, path: Path | None, folder: Path) -> Iterator[Path]:
    """``path``, or ``text`` written to a hidden file in ``folder`` for as long as it is needed."""
    if path is not None and path.is_file():
        yield path
        return
    temporary = folder / f".phaser-serve-{uuid.uuid4().hex[:12]}.study.yaml"
    temporary.write_text(text)
    try:
        yield temporary
    finally:
        temporary.unlink(missing_ok=True)


def _sqlite_file(url: str) -> Path | None:
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    return Path(parsed.database) if parsed.get_backend_name() == "sqlite" and parsed.database else None


def dashboard_command(study: Path | str) -> str:
    return f"phaser-opt dashboard {shlex.quote(str(study))}"


def study_of_job(job: dict) -> Any:
    """The job's study file loaded (a :class:`phaser_opt.study.LoadedStudy`), as its worker loads it."""
    from phaser_opt.study import load_study

    info = job.get("info") or {}
    source = Path(info["path"]) if info.get("path") else None
    base = Path(job.get("base_dir") or ".")
    with hooks.allowed_hooks(job.get("allow_hooks", [])), study_file(job["plan_yaml"], source, base) as file:
        return load_study(file)


def check_study(
    text: str, tree: dict, path: Path | None, base: Path, roots: Roots, allow_custom_hooks: bool = False
) -> Submission:
    """A checked study submission; raises :class:`Forbidden` (403) or :class:`PlanProblems` (422)."""
    from phaser.plan import PlanError
    from phaser_opt.study import load_study
    from phaser_opt.validate import validate_study

    refs = _hook_refs(tree)
    allow = sorted({ref.partition(":")[0].split(".")[0] for _, ref in refs}) if allow_custom_hooks else []
    with hooks.allowed_hooks(allow):
        for where, ref in refs:
            refused = hooks.refusal(ref)
            if refused is not None:
                raise Forbidden(f"{where or '(study)'}: {refused}{'' if allow_custom_hooks else NETWORK_HOOKS_ADVICE}")
        try:
            with study_file(text, path, base) as file:
                loaded = load_study(file)
                _check_study_paths(loaded, tree, roots)
                validate_study(loaded)
        except PlanError as exc:
            raise PlanProblems([(p, m) for p, m in exc.problems] or [("", str(exc))]) from None
    spec = loaded.spec
    shown = roots.relative_name(path) if path is not None else None
    info = {
        "path": str(path) if path is not None else None,
        "file": shown,
        "n_trials": spec.n_trials,
        "storage": _masked(loaded.storage_url),
        "dashboard": dashboard_command(path if path is not None else f"{spec.name}.study.yaml"),
        "directions": list(spec.directions),
    }
    return Submission(text, base, [spec.name], spec.n_trials or 0, allow, kind="study", info=info)


def _masked(url: str) -> str:
    from phaser.server.store import masked_url

    return masked_url(url)


def _check_study_paths(loaded: Any, tree: dict, roots: Roots) -> None:
    """Every file the study touches (template, data, truth, storage, artifacts) must lie in a root."""
    named: list[tuple[str, Path | None]] = [
        ("template", None if loaded.template_source.startswith("<") else Path(loaded.template_source)),
        ("data.path", loaded.data_path),
        ("artifacts.dir", loaded.artifact_dir),
    ]
    truth = loaded.spec.truth
    for field in ("file", "specimen", "potential"):
        value = getattr(truth, field, None) if truth is not None else None
        if value is not None:
            named.append((f"truth.{field}", loaded.resolve(value)))
    storage = _sqlite_file(loaded.storage_url)
    if storage is None:
        raise Forbidden(
            f"storage: {_masked(loaded.storage_url)}: a study sent to this server must keep its trials in an "
            "SQLite file under the server's root folder(s)"
        )
    named.append(("storage", storage))
    for field, file in named:
        if file is not None and not roots.contains(Path(file).resolve()):
            raise Forbidden(f"{field}: {str(file)!r} is outside the server's root folder(s)")
    template = tree.get("template")
    template_tree = template if isinstance(template, dict) else None
    if template_tree is None and not loaded.template_source.startswith("<"):
        from phaser_opt.space import load_template

        template_tree = load_template(Path(loaded.template_source))
    for where, value in _data_paths(template_tree or {}):
        roots.check_plan_path(value, loaded.plan_base, f"template.{where}")


# -- the worker's side -------------------------------------------------------------------------------


class LogStream(io.TextIOBase):
    """A text stream whose lines go to the job's log (phaser-opt prints its progress to one)."""

    def __init__(self, link: Any):
        self.link = link
        self._partial = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        for line in lines:
            if line.strip():
                self.link.log(line)
        return len(text)


def study_progress(study: Any, done: int, n_trials: int | None) -> dict:
    """The update a worker sends after each finished trial: counts, the last trial, the best so far."""
    from optuna.trial import TrialState

    from phaser_opt.runner import FINISHED

    finished = sorted(
        (t for t in study.get_trials(deepcopy=False) if t.state in FINISHED), key=lambda t: t.datetime_complete
    )
    values = [
        [t.number, t.values[0] if t.state == TrialState.COMPLETE and t.values else None]
        for t in sorted(finished, key=lambda t: t.number)
    ]
    best = best_number = None
    if len(study.directions) == 1:
        with contextlib.suppress(ValueError):
            best, best_number = study.best_trial.value, study.best_trial.number
    last = finished[-1] if finished else None
    counts = {state.name.lower(): sum(t.state == state for t in finished) for state in FINISHED}
    return {
        "kind": "study",
        "time": time.time(),
        "iteration": done,
        "niter": n_trials,
        "error": _number(best),
        "errors": [[number, _number(value)] for number, value in values],
        "best": _number(best),
        "best_trial": best_number,
        "trial": last.number if last else None,
        "value": _number(last.values[0]) if last is not None and last.values else None,
        "trial_state": last.state.name.lower() if last else None,
        "counts": counts,
    }


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def run_study_job(link: Any, job: dict, cancelled: type[Exception]) -> tuple[str, str | None, str | None]:
    """Run a study job's trials here until it has ``n_trials`` finished ones (or its timeout passes);
    returns ``(state, reason, out_dir)`` with the study's artifact folder as out_dir."""
    from phaser_opt.runner import finished_count, prepare_study, run_trials
    from phaser_opt.study import load_study

    info = job.get("info") or {}
    base = Path(job.get("base_dir") or ".")
    source = Path(info["path"]) if info.get("path") else None
    stream = LogStream(link)
    with hooks.allowed_hooks(job.get("allow_hooks", [])), study_file(job["plan_yaml"], source, base) as file:
        loaded = load_study(file)
        link.log(f"study {loaded.spec.name!r}: storage {_masked(loaded.storage_url)}")
        study = prepare_study(loaded, stream)
        n_trials = loaded.spec.n_trials
        deadline = None if loaded.spec.timeout is None else time.monotonic() + loaded.spec.timeout
        while True:
            done = finished_count(study)
            link.update(study_progress(study, done, n_trials))
            if n_trials is not None and done >= n_trials:
                break
            if deadline is not None and time.monotonic() >= deadline:
                link.log(f"the study's timeout ({loaded.spec.timeout:g} s) passed")
                break
            if link.cancel.is_set():
                raise cancelled("cancelled by the server")
            run_trials(loaded, study, done + 1, stream)
        out_dir = loaded.artifact_dir
        return "done", None, str(out_dir) if out_dir.is_dir() else None
