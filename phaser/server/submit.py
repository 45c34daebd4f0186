"""Plans arriving over the network: read safely, kept inside the roots, hooks trusted, validated.

Order matters: the text is read with the bounded reader, then custom hooks are refused (403)
before :func:`phaser.plan.validate_plan` could import anything, then data paths outside the roots
are refused (403) before any file is looked at, then every problem is collected (422).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from phaser import hooks
from phaser.plan.read import MAX_FILE_BYTES, ReadError, decode_plan_bytes, read_json_documents, read_yaml_documents
from phaser.server.security import Forbidden, Roots

NETWORK_HOOKS_ADVICE = (
    "; plans sent to this server may use only trusted hooks (built-in, installed, or allowed where the "
    "server runs); start the server with --allow-custom-hooks to accept other modules"
)
PATH_KEYS = ("path", "state", "file")  # plan fields naming server-side files


class PlanProblems(Exception):
    """A plan that cannot run: every ``(field path, message)`` problem (HTTP 422)."""

    def __init__(self, problems: list[tuple[str, str]]):
        super().__init__(f"{len(problems)} problems")
        self.problems = problems


@dataclass
class Submission:
    """A checked plan text and what the queue keeps of it."""

    plan_yaml: str
    base_dir: Path
    names: list[str]
    niter: int
    allow_hooks: list[str] = field(default_factory=list)
    kind: str = "plan"  # or "study": a phaser-opt study file (see phaser.server.studies)
    info: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.names[0] if len(self.names) == 1 else " + ".join(self.names)


def _hook_refs(value: Any, path: str = "") -> list[tuple[str, str]]:
    """Every ``module:function`` hook named in plan data, with its field path."""
    found = []
    if isinstance(value, dict):
        kind = value.get("type")
        if isinstance(kind, str) and hooks.is_reference(kind):
            found.append((path, kind))
        for key, item in value.items():
            found += _hook_refs(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found += _hook_refs(item, f"{path}[{i}]")
    elif isinstance(value, str) and hooks.is_reference(value) and value.partition(":")[2].isidentifier():
        found.append((path, value))
    return found


def _data_paths(value: Any, path: str = "") -> list[tuple[str, str]]:
    """Every string under a key naming a file (``path``, ``state``, ...), with its field path."""
    found = []
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if isinstance(item, str) and isinstance(key, str) and key.lower().endswith(PATH_KEYS):
                found.append((where, item))
            else:
                found += _data_paths(item, where)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found += _data_paths(item, f"{path}[{i}]")
    return found


def _text(body: Any, roots: Roots, max_chars: int) -> tuple[str, Path | None, Path]:
    """The submitted text, the file it came from (None when sent as text) and its folder."""
    if not isinstance(body, dict) or (("plan_yaml" in body) == ("path" in body)):
        raise PlanProblems([("", "send a JSON object with either `plan_yaml` (the plan text) or `path`")])
    try:
        if "path" in body:
            file = roots.resolve(body["path"])
            if not file.is_file():
                raise PlanProblems([("path", f"{body['path']!r} is not a file")])
            if file.stat().st_size > MAX_FILE_BYTES:
                raise PlanProblems([("path", f"larger than a plan can be ({MAX_FILE_BYTES} bytes)")])
            return decode_plan_bytes(file.read_bytes()), file, file.parent
        text = body["plan_yaml"]
        if not isinstance(text, str):
            raise PlanProblems([("plan_yaml", "expected the plan text as a string")])
        if len(text) > max_chars:
            raise PlanProblems([("plan_yaml", f"longer than {max_chars} characters")])
        return text, None, roots.first
    except ReadError as exc:
        raise PlanProblems([("", str(exc))]) from None


def _documents(text: str, file: Path | None) -> list[Any]:
    try:
        if file is not None and file.suffix.lower() == ".json":
            return read_json_documents(text)
        return read_yaml_documents(text)
    except ReadError as exc:
        raise PlanProblems([("", str(exc))]) from None


def check_submission(body: Any, roots: Roots, allow_custom_hooks: bool = False, max_chars: int = 2**21) -> Submission:
    """The checked plan(s) of a request body, or the checked study (see :mod:`phaser.server.studies`);
    raises :class:`Forbidden` (403) or :class:`PlanProblems` (422)."""
    from phaser.plan import PlanError, validate_plan

    text, file, base = _text(body, roots, max_chars)
    from phaser.server.studies import check_study, study_tree

    tree = study_tree(text)
    if tree is not None:
        return check_study(text, tree, file, base, roots, allow_custom_hooks)
    docs = _documents(text, file)
    if not docs:
        raise PlanProblems([("", "the text holds no plan")])
    prefix = (lambda i: f"document {i + 1}: ") if len(docs) > 1 else (lambda i: "")
    refs = [(f"{prefix(i)}{where}", ref) for i, doc in enumerate(docs) for where, ref in _hook_refs(doc)]
    # with --allow-custom-hooks the plan's own modules are allowed; standard-library ones never are
    allow = sorted({ref.partition(":")[0].split(".")[0] for _, ref in refs}) if allow_custom_hooks else []
    with hooks.allowed_hooks(allow):
        for where, ref in refs:
            refused = hooks.refusal(ref)
            if refused is not None:
                advice = "" if allow_custom_hooks else NETWORK_HOOKS_ADVICE
                raise Forbidden(f"{where or '(plan)'}: {refused}{advice}")
    for i, doc in enumerate(docs):
        for where, value in _data_paths(doc):
            roots.check_plan_path(value, base, f"{prefix(i)}{where}")
    plans, problems = [], []
    for i, doc in enumerate(docs):
        try:
            plans.append(validate_plan(doc, f"document {i + 1}", base=base, allow_hooks=allow))
        except PlanError as exc:
            problems += [(f"{prefix(i)}{p}" if p else prefix(i).rstrip(": "), m) for p, m in exc.problems]
    if not problems:
        problems = _data_problems(plans, prefix)
    if problems:
        raise PlanProblems(problems)
    niter = sum(engine.niter for plan in plans for engine in plan.engines)
    return Submission(text, base, [plan.name for plan in plans], niter, allow)


def _data_problems(plans: list[Any], prefix: Any) -> list[tuple[str, str]]:
    """What the plans' data files' headers say the run would fail on (as ``phaser validate``)."""
    from phaser.plan.data_check import check_against_data

    problems = []
    for i, plan in enumerate(plans):
        try:
            problems += [(f"{prefix(i)}{p}", m) for p, m in check_against_data(plan)]
        except Exception as exc:  # noqa: BLE001 - a header the checker cannot read is the run's problem
            problems.append((f"{prefix(i)}raw_data", f"cannot read the data file's header: {exc}"))
    return problems
