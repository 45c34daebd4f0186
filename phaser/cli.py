"""The ``phaser`` command line: run, validate, simulate and score."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from phaser import __version__


def _run(args: argparse.Namespace) -> int:
    from phaser.observers import EarlyTermination, LoggingObserver, ProgressObserver
    from phaser.output import OutputObserver
    from phaser.plan import load_plans
    from phaser.run import output_dir, run_plan

    plans = load_plans(args.plan, allow_hooks=args.allow_hooks)
    if args.resume is not None:
        plans = resumed_plans(plans, args.resume)
    for plan in plans:
        if args.backend:
            plan = plan.model_copy(update={"backend": args.backend})
        out = Path(args.out_dir) / plan.name if args.out_dir else output_dir(plan, Path.cwd())
        if not args.overwrite:
            out = fresh_folder(out)
        observers = [OutputObserver(plan, out)]
        observers.append(LoggingObserver() if args.verbose else ProgressObserver(sys.stderr))
        patience = plan.engines[0].early_termination
        if patience:
            observers.append(EarlyTermination(patience, plan.engines[0].early_termination_smoothing))
        print(f"running {plan.name!r} on {plan.resolved_backend()} ({plan.dtype}); output in {out}", file=sys.stderr)
        try:
            run_plan(plan, observers)
        except KeyboardInterrupt:
            print(
                f"interrupted; the last complete state is in {out / 'interrupted.h5'} "
                f"(continue with: phaser run {args.plan} --resume {out / 'interrupted.h5'})",
                file=sys.stderr,
            )
            return 130
    return 0


def resumed_plans(plans: list, state_path: Path) -> list:
    """The plans from the one ``state_path`` was saved by on, that one resuming from the state.

    With one plan, it resumes whatever its name; with several, the state's stored plan name picks
    the plan (the plans before it are taken as done).
    """
    import yaml

    from phaser.io.state_file import read_state_header
    from phaser.plan import PlanError

    header = read_state_header(state_path)
    index = 0
    if len(plans) > 1:
        stored = yaml.safe_load(header.plan_yaml or "{}") or {}
        names = [plan.name for plan in plans]
        if stored.get("name") not in names:
            raise PlanError(
                str(state_path), [("--resume", f"was saved by plan {stored.get('name')!r}, not one of {names}")]
            )
        index = names.index(stored["name"])
    plan = plans[index]
    init = plan.init.model_copy(update={"state": state_path.resolve(), "resume": True})
    return [plan.model_copy(update={"init": init}), *plans[index + 1 :]]


def fresh_folder(out: Path) -> Path:
    """``out`` when it is missing or empty, else the first of ``out-2``, ``out-3``, ... that is."""
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return out
    n = 2
    while (candidate := out.with_name(f"{out.name}-{n}")).exists():
        n += 1
    print(f"{out} already holds outputs; writing to {candidate} instead (--overwrite to reuse it)", file=sys.stderr)
    return candidate


def _validate(args: argparse.Namespace) -> int:
    from phaser.plan import PlanError, dump_plan, load_plans, plan_to_data
    from phaser.plan.data_check import check_against_data, data_source, fill_from_data

    plans = load_plans(args.plan, check_files=not args.no_files, allow_hooks=args.allow_hooks)
    problems, sources = [], []
    for i, plan in enumerate(plans):
        if args.no_files:
            continue
        prefix = f"document {i + 1}: " if len(plans) > 1 else ""
        problems += [(f"{prefix}{path}", message) for path, message in check_against_data(plan)]
        sources.append(data_source(plan))
    if problems:
        raise PlanError(str(args.plan), problems)
    for plan in plans:
        resolved = plan if args.no_files else fill_from_data(plan)
        if args.json:
            print(json.dumps(plan_to_data(resolved), indent=2))
        elif args.resolved:
            print("---\n" + dump_plan(resolved), end="")
    checked = sorted({str(s) for s in sources if s is not None})
    note = f"; checked against the metadata of {', '.join(checked)}" if checked else ""
    if args.no_files:
        note = "; data files not checked (--no-files)"
    elif any(s is None for s in sources):
        note += "; a custom raw-data hook's data is checked only when it runs"
    print(f"{args.plan}: {len(plans)} valid plan{'s' if len(plans) != 1 else ''}{note}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``phaser``."""
    from phaser.hooks import ALLOW_ENV

    parser = argparse.ArgumentParser(prog="phaser", description="Electron ptychography from declarative plans.")
    parser.add_argument("--version", action="version", version=f"phaser {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    allow_help = (
        "let plans use hooks (module:function) from these modules and their submodules; only for code "
        f"you trust (also ${ALLOW_ENV}=mod1,mod2; never standard-library modules)"
    )
    run = sub.add_parser("run", help="run the plan(s) in a YAML or JSON file", description="Run the plan(s) in a file.")
    run.add_argument("plan", type=Path, help="plan file (.yaml, .yml or .json)")
    run.add_argument("--out-dir", help="folder for the outputs (default: the plan's save_options.out_dir)")
    run.add_argument("--backend", choices=["numpy", "jax", "cupy"], help="override the plan's backend")
    run.add_argument("-v", "--verbose", action="store_true", help="log every iteration instead of a progress bar")
    run.add_argument(
        "--overwrite",
        action="store_true",
        help="write into an output folder that already holds outputs (default: a new folder NAME-2, NAME-3, ...)",
    )
    run.add_argument(
        "--resume",
        type=Path,
        metavar="STATE",
        help="continue an interrupted run from its state file (interrupted.h5, iterNNN.h5): same iteration "
        "count, schedules and engine, only the remaining iterations",
    )
    run.add_argument("--allow-hooks", nargs="+", default=[], metavar="MODULE", help=allow_help)
    run.set_defaults(handler=_run)

    validate = sub.add_parser(
        "validate", help="check plan(s) without running them", description="Check plan(s) without running them."
    )
    validate.add_argument("plan", type=Path, help="plan file (.yaml, .yml or .json)")
    validate.add_argument("--json", action="store_true", help="print the resolved plan(s) as JSON")
    validate.add_argument("--resolved", action="store_true", help="print the resolved plan(s) as YAML")
    validate.add_argument(
        "--no-files", action="store_true", help="do not check the data files (their existence and metadata)"
    )
    validate.add_argument("--allow-hooks", nargs="+", default=[], metavar="MODULE", help=allow_help)
    validate.set_defaults(handler=_validate)

    from phaser.metrics.cli import add_parser as add_score
    from phaser.simulate.cli import add_parser as add_simulate

    add_simulate(sub)
    add_score(sub)
    from phaser.server.cli import add_parsers

    add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``phaser`` console script."""
    from phaser.io.raw_data import RawDataError
    from phaser.io.state_file import StateFileError
    from phaser.plan import PlanError

    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if getattr(args, "verbose", False) else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.handler(args) or 0)
    except (PlanError, RawDataError, StateFileError, FloatingPointError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
