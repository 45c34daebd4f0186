"""Sampler efficiency: the best potential error reached after n trials, TPE vs GP vs random search.

What it measures
----------------
One multislice study against a simulated truth, run with each sampler for the same budget
(``--trials``, default 20) and several seeds (``--seeds``, default 0 1 2). The study is a reduced
copy of ``studies/srtio3_multislice.yaml`` (written to the work folder, the repository's files are
not touched):

- dataset: its recipe (SrTiO3 [001] 39 A, 200 kV, 20 mrad, defocus 50 A, 48x48 patterns at
  2 mrad, 0.5 A steps, 1e6 e/A^2, truth in 4 slices of 9.7625 A, seed 0) with the scan reduced to
  ``--scan`` (default 12x12);
- template: ``plans/templates/multislice_chain.yaml`` (4 slices; gradient descent then LSQML) with
  the gradient engine's ``niter`` range reduced to ``--gradient-niter`` (default 10..20, step 5)
  and LSQML's ``niter`` to ``--lsqml-niter`` (default 5); the other sampled parameters are as in
  the template: grouping (16/32/64), Poisson eps, object and probe learning rates, the
  ``layers_tikhonov`` weight and LSQML's ``beta_object``;
- objective ``potential_error`` (RMSE of the projected potential [V*A] against the truth, lower is
  better), ``pruner: none`` (every trial runs to its end, so "n trials" means the same work for
  every sampler), no enqueued baseline, artifacts off (not part of the measurement);
- samplers as phaser-opt builds them: ``tpe`` (multivariate, grouped, constant liar),
  ``gp`` (Optuna's GPSampler), ``random``; TPE and GP with ``n_startup_trials = --n-startup``
  (default 5: random trials before the model takes over; the repository's study uses 10 of 60).
  A seed is the study's ``sampler.seed``; the same seed gives the same start-up points to TPE, GP
  and random search (Optuna's samplers draw them with ``RandomSampler(seed)``), so the runs are
  paired.

Each (sampler, seed) is a fresh SQLite study (a study already in the work folder is resumed, so
re-running with the same ``--work-dir`` and more ``--seeds`` runs only the new ones) run by
``phaser_opt.runner.run_study`` in one process (``--jobs 2``: two processes, each pinned to one
core, sharing the list), sequentially, so compiled programs are reused between studies (the trial
time is not the measure here). For each
run the best-so-far curve (best complete value among trials 1..n, in trial order) is read from the
storage. Table: mean and [min, max] over the seeds of the best-so-far at n = 5, 10, 15, 20; plot:
best-so-far vs trial number, mean line and min/max band per sampler. Per seed, the samplers are
also ranked by their best after the last trial (ties within 0.05 V*A share the rank). ``trial s``
is the storage's trial duration; ``outside the reconstruction`` is that minus the trial's
``wall_time_s`` (``run_plan``): the sampler (GP's model fit), scoring, storage.

Run ``python benchmarks/sampler_efficiency.py --help``; results in
``benchmarks/results/sampler_efficiency.{json,md,png}``. About 10-15 minutes on 2 cores with the
defaults (180 trials of ~3-4 s).
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import study_overhead as so  # noqa: E402  (the shared helpers of the study benchmarks)

CHECKPOINTS = (5, 10, 15, 20)


def reduced_template(text: str, niter: tuple[int, int, int], lsqml_niter: int) -> str:
    """``multislice_chain.yaml`` with the gradient niter range and LSQML's niter reduced."""
    low, high, step = niter
    out, n1 = re.subn(
        r"niter: !int \{low: \d+, high: \d+, step: \d+, name: gradient_niter\}",
        f"niter: !int {{low: {low}, high: {high}, step: {step}, name: gradient_niter}}",
        text,
    )
    # the conventional (LSQML) engine's niter: the second engine's fixed number
    head, sep, tail = out.partition("- type: conventional")
    tail, n2 = re.subn(r"(?m)^  niter: \d+$", f"  niter: {lsqml_niter}", tail, count=1)
    if n1 != 1 or n2 != 1 or not sep:
        raise RuntimeError("multislice_chain.yaml no longer has the expected niter lines")
    return head + sep + tail


def prepare(work: Path, args: argparse.Namespace) -> tuple[Path, Path]:
    """The reduced dataset and template in ``work``."""
    recipe = so.recipe_of(so.REPO / "studies" / "srtio3_multislice.yaml")
    recipe["scan"] = list(args.scan)
    data = so.make_dataset(recipe, work / f"srtio3_multislice_{args.scan[0]}x{args.scan[1]}.h5")
    template = work / "multislice_chain_reduced.yaml"
    text = (so.REPO / "plans" / "templates" / "multislice_chain.yaml").read_text()
    template.write_text(reduced_template(text, tuple(args.gradient_niter), args.lsqml_niter))
    return data, template


def sampler_entry(kind: str, seed: int, n_startup: int) -> dict[str, Any]:
    options = {} if kind == "random" else {"n_startup_trials": n_startup}
    return {"type": kind, "seed": seed, "options": options}


def run_list(
    work: Path, data: Path, template: Path, jobs: list[tuple[str, int]], args: argparse.Namespace
) -> list[dict[str, Any]]:
    """Run the (sampler, seed) studies in this process, one after the other; their trials."""
    import optuna

    from phaser_opt.runner import run_study
    from phaser_opt.study import load_study

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the per-trial lines are in the studies
    out = []
    for kind, seed in jobs:
        folder = work / f"{kind}_seed{seed}"
        study = so.write_study(
            folder,
            f"eff_{kind}_{seed}",
            template,
            data,
            sampler=sampler_entry(kind, seed, args.n_startup),
            report={"every": 5, "value": "error"},
            artifacts={"enabled": False},
            n_trials=args.trials,
        )
        t0 = time.perf_counter()
        stream = io.StringIO()
        run_study(load_study(study), stream=stream)
        wall = time.perf_counter() - t0
        trials = so.trial_datetimes(f"sqlite:///{folder / f'eff_{kind}_{seed}.db'}", f"eff_{kind}_{seed}")
        print(
            f"  {kind} seed {seed}: {len(trials)} trials in {wall:.0f} s, best "
            f"{min((t['value'] for t in trials if t['state'] == 'COMPLETE'), default=math.nan):.2f} V*A",
            flush=True,
        )
        out.append({"sampler": kind, "seed": seed, "wall_s": wall, "trials": trials, "log": stream.getvalue()[-3000:]})
    return out


def best_so_far(trials: list[dict[str, Any]], n: int) -> list[float]:
    """Best complete value among trials 0..k for k < n (inf before the first complete one)."""
    best, curve = math.inf, []
    for t in sorted(trials, key=lambda t: t["number"])[:n]:
        if t["state"] == "COMPLETE" and t["value"] is not None and math.isfinite(t["value"]):
            best = min(best, t["value"])
        curve.append(best)
    return curve


def plot(curves: dict[str, list[list[float]]], n: int, path: Path, title: str, n_startup: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=120)
    colors = {"tpe": "tab:blue", "gp": "tab:orange", "random": "tab:gray"}
    labels = {"tpe": "TPE", "gp": "GP", "random": "random"}
    x = np.arange(1, n + 1)
    for kind, runs in curves.items():
        arr = np.array(runs, dtype=float)
        arr[~np.isfinite(arr)] = np.nan
        mean = np.nanmean(arr, axis=0)
        ax.plot(x, mean, color=colors.get(kind), lw=2, label=f"{labels.get(kind, kind)} (mean of {len(runs)} seeds)")
        ax.fill_between(x, np.nanmin(arr, axis=0), np.nanmax(arr, axis=0), color=colors.get(kind), alpha=0.18, lw=0)
    ax.axvline(n_startup + 0.5, color="k", lw=0.8, ls="--")
    ax.annotate(
        " TPE / GP model from here", (n_startup + 0.5, 0.97), xycoords=("data", "axes fraction"), va="top", fontsize=8
    )
    ax.set_xlabel("trial number n")
    ax.set_ylabel("best potential error after n trials [V*A]")
    import textwrap

    ax.set_title("\n".join(textwrap.wrap(title, 80)), fontsize=9)
    ax.set_xlim(1, n)
    ax.set_xticks([1, *range(5, n + 1, 5)])
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--samplers", nargs="+", default=["tpe", "gp", "random"], choices=["tpe", "gp", "random", "qmc", "cmaes"]
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--trials", type=int, default=20, help="trials per study (default 20)")
    parser.add_argument("--n-startup", type=int, default=5, help="TPE/GP random start-up trials (default 5)")
    parser.add_argument("--scan", type=int, nargs=2, default=[12, 12], help="scan positions (default 12 12)")
    parser.add_argument("--gradient-niter", type=int, nargs=3, default=[10, 20, 5], metavar=("LOW", "HIGH", "STEP"))
    parser.add_argument("--lsqml-niter", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=1, help="processes (each pinned to one core when 2)")
    parser.add_argument("--work-dir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=so.RESULTS_DIR / "sampler_efficiency", help="results prefix")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # "kind:seed,kind:seed"
    parser.add_argument("--child-json", help=argparse.SUPPRESS)
    args = parser.parse_args()

    work = args.work_dir or Path(tempfile.mkdtemp(prefix="sampler_efficiency_"))
    work.mkdir(parents=True, exist_ok=True)
    if args.child is not None:
        from phaser_opt.workers import pin_to_cores

        pin_to_cores()
        data, template = (
            work / f"srtio3_multislice_{args.scan[0]}x{args.scan[1]}.h5",
            work / "multislice_chain_reduced.yaml",
        )
        jobs = [(k, int(s)) for k, s in (item.split(":") for item in args.child.split(","))]
        Path(args.child_json).write_text(json.dumps(run_list(work, data, template, jobs, args), default=str))
        return

    t_all = time.perf_counter()
    info = so.machine()
    data, template = prepare(work, args)
    jobs = [(k, s) for s in args.seeds for k in args.samplers]  # seed-major: partial results stay balanced
    print(f"{len(jobs)} studies of {args.trials} trials; data {data.name}, template {template}", flush=True)
    if args.jobs <= 1:
        runs = run_list(work, data, template, jobs, args)
    else:
        from phaser_opt.workers import core_shares

        shares = core_shares(args.jobs)
        procs = []
        for j in range(args.jobs):
            part = jobs[j :: args.jobs]
            if not part:
                continue
            env = {
                **os.environ,
                "PHASER_CPU_CORES": ",".join(map(str, shares[j])),
                "PHASER_CPU_DEVICES": str(len(shares[j])),
            }
            out = work / f"child{j}.json"
            cmd = [
                sys.executable,
                __file__,
                "--child",
                ",".join(f"{k}:{s}" for k, s in part),
                "--child-json",
                str(out),
                "--work-dir",
                str(work),
                "--trials",
                str(args.trials),
                "--n-startup",
                str(args.n_startup),
                "--scan",
                *map(str, args.scan),
                "--gradient-niter",
                *map(str, args.gradient_niter),
                "--lsqml-niter",
                str(args.lsqml_niter),
            ]
            procs.append((subprocess.Popen(cmd, env=env), out))
        runs = []
        for proc, out in procs:
            if proc.wait() != 0:
                raise RuntimeError(f"a child failed ({proc.returncode})")
            runs += json.loads(out.read_text())

    n = args.trials
    curves: dict[str, list[list[float]]] = {k: [] for k in args.samplers}
    for r in runs:
        r["best_so_far"] = best_so_far(r["trials"], n)
        curves[r["sampler"]].append(r["best_so_far"])
    points = [c for c in CHECKPOINTS if c <= n] or [n]
    headers = (
        ["sampler", "seeds"]
        + [f"best after {c} [V*A]: mean [min, max]" for c in points]
        + ["complete / pruned / failed", "trial s (mean)", "trial s outside the reconstruction (mean)"]
    )
    rows = []
    for kind in args.samplers:
        rs = [r for r in runs if r["sampler"] == kind]
        row: list[Any] = [kind, len(rs)]
        for c in points:
            vals = [r["best_so_far"][c - 1] for r in rs]
            row.append(f"{sum(vals) / len(vals):.1f} [{min(vals):.1f}, {max(vals):.1f}]")
        states = [sum(t["state"] == s for r in rs for t in r["trials"]) for s in ("COMPLETE", "PRUNED", "FAIL")]
        row.append("/".join(map(str, states)))
        durations = [t["duration_s"] for r in rs for t in r["trials"] if t["duration_s"] is not None]
        outside = [
            t["duration_s"] - t["user_attrs"]["wall_time_s"]
            for r in rs
            for t in r["trials"]
            if t["duration_s"] is not None and "wall_time_s" in t["user_attrs"]
        ]
        row.append(f"{sum(durations) / len(durations):.2f}")
        row.append(f"{sum(outside) / len(outside):.2f}")
        rows.append(row)
    last = points[-1]
    final = {(r["sampler"], r["seed"]): r["best_so_far"][last - 1] for r in runs}
    ranks: dict[str, list[float]] = {k: [] for k in args.samplers}
    for seed in args.seeds:
        values = [final[(k, seed)] for k in args.samplers]
        for k in args.samplers:
            v = final[(k, seed)]
            # average rank, ties shared (values equal to 0.05 V*A count as ties)
            below = sum(w < v - 0.05 for w in values)
            equal = sum(abs(w - v) <= 0.05 for w in values)
            ranks[k].append(below + (equal + 1) / 2)
    per_seed_h = (
        ["sampler"] + [f"seed {s}: best after {last}" for s in args.seeds] + [f"mean rank after {last} (1 = best)"]
    )
    per_seed = [
        [k] + [f"{final[(k, s)]:.1f}" for s in args.seeds] + [f"{sum(ranks[k]) / len(ranks[k]):.2f}"]
        for k in args.samplers
    ]
    all_values = [t["value"] for r in runs for t in r["trials"] if t["state"] == "COMPLETE"]
    starts = sorted(str(t["start"]) for r in runs for t in r["trials"])
    ran = f"The trials ran from {starts[0][:19]} to {starts[-1][:19]} (local time)."
    title = (
        f"SrTiO3 multislice (4 slices), {args.scan[0]}x{args.scan[1]} scan, gradient niter "
        f"{args.gradient_niter[0]}-{args.gradient_niter[1]} + LSQML {args.lsqml_niter}; "
        f"{len(args.seeds)} seeds per sampler"
    )
    png = Path(f"{args.out}.png")
    png.parent.mkdir(parents=True, exist_ok=True)
    plot(curves, n, png, title, args.n_startup)
    text = "\n\n".join(
        [
            f"Sampler efficiency ({info['date']}, {info['cores']} cores; {title}; {n} trials per study, "
            f"TPE/GP start-up {args.n_startup} random trials, pruner none)",
            so.md_table(headers, rows),
            so.md_table(per_seed_h, per_seed),
            f"All {len(all_values)} complete trials: potential error from {min(all_values):.1f} "
            f"to {max(all_values):.1f} V*A "
            f"(median {sorted(all_values)[len(all_values) // 2]:.1f}).",
            ran,
        ]
    )
    print("\n" + text)
    Path(f"{args.out}.md").write_text(text + "\n")
    Path(f"{args.out}.json").write_text(
        json.dumps(
            {
                "machine": info,
                "args": {k: str(v) for k, v in vars(args).items()},
                "template": template.read_text(),
                "runs": runs,
                "total_s": time.perf_counter() - t_all,
            },
            indent=1,
            default=str,
        )
    )
    print(f"\nwrote {args.out}.json, .md and .png ({time.perf_counter() - t_all:.0f} s)")


if __name__ == "__main__":
    main()
