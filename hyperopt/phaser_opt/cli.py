"""The ``phaser-opt`` command line: run, validate, inspect and export hyperparameter studies."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

COMMANDS = ("run", "worker", "validate", "status", "best", "dashboard", "report")


def _load(args: argparse.Namespace):
    from phaser_opt.study import load_study, with_storage

    loaded = load_study(args.study)
    return with_storage(loaded, args.storage) if getattr(args, "storage", None) else loaded


def _run(args: argparse.Namespace) -> int:
    from phaser_opt.runner import run_study
    from phaser_opt.summary import closing_summary
    from phaser_opt.workers import enable_compilation_cache

    if args.workers < 1:
        raise ValueError(f"--workers: expected at least 1, got {args.workers}")
    loaded = _load(args)
    if args.workers == 1:
        enable_compilation_cache()
    study = run_study(loaded, n_trials=args.n_trials, workers=args.workers)
    print(closing_summary(study, loaded, top=5))
    return 0


def _worker(args: argparse.Namespace) -> int:
    from phaser_opt.data import ensure_dataset
    from phaser_opt.runner import open_study, run_trials
    from phaser_opt.workers import enable_compilation_cache, pin_to_cores

    pin_to_cores()  # before JAX starts: it sizes its CPU devices from the cores this process may use
    enable_compilation_cache()
    loaded = _load(args)
    study = open_study(loaded, create=False, worker_index=args.worker_index)
    if loaded.spec.data is not None:
        ensure_dataset(loaded.spec.data.simulate, loaded.data_path, loaded.resolve)
    target = args.n_trials if args.n_trials is not None else loaded.spec.n_trials
    run_trials(loaded, study, target, prefix=f"[worker {args.worker_index}] ")
    return 0


def _validate(args: argparse.Namespace) -> int:
    from phaser_opt.validate import validate_study

    for line in validate_study(_load(args)):
        print(line)
    print(f"{args.study}: valid study")
    return 0


def _status(args: argparse.Namespace) -> int:
    from phaser_opt.runner import open_study
    from phaser_opt.summary import status_table

    study = open_study(_load(args), create=False)
    print(status_table(study))
    return 0


def _best(args: argparse.Namespace) -> int:
    from phaser_opt.best import best_plan_text, chosen_trial
    from phaser_opt.runner import open_study

    loaded = _load(args)
    study = open_study(loaded, create=False)
    trial = chosen_trial(study, args.trial)
    rule = "chosen" if args.trial is not None else ("knee of the Pareto front" if len(study.directions) > 1 else "best")
    text = best_plan_text(study, trial, loaded.storage_url, rule)
    if args.output is None:
        print(text, end="")
    else:
        Path(args.output).write_text(text)
        print(
            f"trial {trial.number} ({rule}) written to {args.output}; run it with: phaser run {args.output}",
            file=sys.stderr,
        )
    return 0


def _dashboard(args: argparse.Namespace) -> int:
    import optuna_dashboard

    from phaser_opt.artifacts import artifact_store
    from phaser_opt.storage import open_storage

    loaded = _load(args)
    storage = open_storage(loaded.storage_url)
    print(
        f"optuna-dashboard for {loaded.storage_url} on http://{args.host}:{args.port}/ (Ctrl-C stops it)",
        file=sys.stderr,
    )
    optuna_dashboard.run_server(
        storage, host=args.host, port=args.port, artifact_store=artifact_store(loaded.artifact_dir)
    )
    return 0


def _report(args: argparse.Namespace) -> int:
    from phaser_opt.artifacts import ArtifactWriter
    from phaser_opt.gallery import gallery_figure, top_trials
    from phaser_opt.report import build_report
    from phaser_opt.runner import open_study

    loaded = _load(args)
    study = open_study(loaded, create=False)
    gallery = None
    if loaded.artifact_dir.is_dir():
        writer = ArtifactWriter(loaded.artifact_dir, loaded.spec.artifacts)
        phases = [(t, writer.phase_of(study, t)) for t in top_trials(study, args.top)]
        phases = [(t, p) for t, p in phases if p is not None]
        gallery = gallery_figure(study, phases) if phases else None
    Path(args.output).write_text(build_report(study, args.top, gallery))
    print(f"report written to {args.output}", file=sys.stderr)
    return 0


def _allow_hooks(modules: list[str]) -> None:
    """Trust ``modules`` here and in the worker processes started from here (they inherit it)."""
    from phaser.hooks import ALLOW_ENV

    present = [m for m in os.environ.get(ALLOW_ENV, "").split(",") if m.strip()]
    os.environ[ALLOW_ENV] = ",".join(dict.fromkeys([*present, *modules]))


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``phaser-opt``."""
    parser = argparse.ArgumentParser(
        prog="phaser-opt",
        description="Hyperparameter studies over phaser plan templates (Optuna). "
        "`phaser-opt study.yaml` creates or resumes the study and runs it.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log each iteration and Optuna's messages")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, handler, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.add_argument("study", type=Path, help="study file (YAML)")
        p.set_defaults(handler=handler)
        if name in ("run", "worker", "validate"):
            p.add_argument(
                "--allow-hooks",
                nargs="+",
                default=[],
                metavar="MODULE",
                help="trust these modules' custom hooks and metrics (module:function) in the study and template",
            )
        return p

    run = command("run", _run, "create or resume the study and run its trials (the default command)")
    run.add_argument("--n-trials", type=int, default=None, help="finished trials to reach (default: the study's)")
    run.add_argument(
        "--workers", type=int, default=1, help="worker processes on this machine (one per GPU or core share)"
    )
    run.add_argument("--storage", help="SQLAlchemy URL overriding the study file's storage")
    worker = command("worker", _worker, "join a running study (from this or another machine) and run its trials")
    worker.add_argument("--storage", help="SQLAlchemy URL overriding the study file's storage")
    worker.add_argument("--n-trials", type=int, default=None, help="finished trials to reach (default: the study's)")
    worker.add_argument("--worker-index", type=int, default=0, help="this worker's number (offsets the sampler seed)")
    command("validate", _validate, "check the study, its template's annotations and the plans they make")
    status = command("status", _status, "a table of the study's trials and their states")
    status.add_argument("--storage", help="SQLAlchemy URL overriding the study file's storage")
    best = command("best", _best, "write the best trial's concrete plan, ready for `phaser run`")
    best.add_argument("-o", "--output", help="file to write (default: print it)")
    best.add_argument("--trial", type=int, default=None, help="this trial instead of the best (or the Pareto knee)")
    dash = command("dashboard", _dashboard, "serve optuna-dashboard on the study's storage and artifacts")
    dash.add_argument("--host", default="127.0.0.1", help="address to bind (default: this machine only)")
    dash.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    report = command("report", _report, "write a self-contained HTML report of the study")
    report.add_argument("-o", "--output", required=True, help="HTML file to write")
    report.add_argument("--top", type=int, default=10, help="trials in the top table and the gallery")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``phaser-opt``; a study file as first argument means ``run``."""
    from phaser.plan import PlanError
    from phaser_opt.runner import StorageLost
    from phaser_opt.space import AnnotationError
    from phaser_opt.spec import StudyError
    from phaser_opt.storage import StorageError

    argv = list(sys.argv[1:] if argv is None else argv)
    first = next((a for a in argv if not a.startswith("-")), None)
    if first is not None and first not in COMMANDS:
        argv.insert(argv.index(first), "run")
    args = build_parser().parse_args(argv)
    if getattr(args, "allow_hooks", None):
        _allow_hooks(args.allow_hooks)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    if not args.verbose:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.ERROR)  # our own line per trial says it all
    try:
        return int(args.handler(args) or 0)
    except (StudyError, AnnotationError, PlanError, StorageError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except StorageLost as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print("interrupted: finished trials are kept; the same command resumes the study", file=sys.stderr)
        return 130
