"""Both packages on the same group sequence: is a gradient step the same step in each?

Mini-batch runs differ by their random groups, and on the 8-slice abTEM case the group sequence
alone moves the 60-iteration NCC by about 0.01, more than the gap between the two packages'
medians. Here both follow one sequence: the original package (phaserem 0.3.1, in its own venv)
runs the plan with its group generator seeded (``create_sparse_groupings`` wrapped to force the
seed and to record the groups, as its engine passes no seed of its own), and this package replays
the recorded groups (``phaser.engines.gradient.make_groups`` replaced in the worker process).
``--grouping 1024`` runs one group of every position (no randomness at all).
``--hard-aperture`` gives this package's starting probe the original's hard-edged aperture
instead of the one-pixel soft edge, so that the two start from the same probe.

Per seed: both packages' NCC and per-slice NCC (:func:`compare_phaserem.score_run`) and the loss
per iteration (the original's Poisson loss is this package's plus ``eps`` per detector pixel).
Results: ``benchmarks/results/same_groups.{json,md}``. Needs the abTEM thick_dw set
(``abtem_srtio3.py --debye-waller --sets thick``) and phaserem's venv (``compare_phaserem.py --install``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import abtem_srtio3  # noqa: E402  (the plans)
import compare_phaserem as cp  # noqa: E402  (plan writing, state reading, scoring)
import speed_gradient  # noqa: E402  (child processes)

RESULTS = Path(__file__).resolve().parent / "results" / "same_groups.json"

# Run in phaserem's interpreter: argv = plan path, seed, groups .npy, scan rows, scan columns.
PHASEREM_SEEDED = """
import sys
import numpy as np
import yaml
import phaser.engines.common.simulation as simulation
from phaser.execute import execute_plan
from phaser.plan import ReconsPlan

plan_path, forced_seed, out, rows, cols = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
generate = simulation.create_sparse_groupings
made = []

def seeded(scan, grouping, seed=None, i=0):
    groups = generate(scan, grouping, seed=forced_seed, i=i)
    made.append((i, np.stack([g[0] * cols + g[1] for g in groups])))
    return groups

simulation.create_sparse_groupings = seeded
execute_plan(ReconsPlan.from_data(yaml.safe_load(open(plan_path))), seed=forced_seed)
np.save(out, np.stack([g for (i, g) in made if i >= 1]))  # i = 0 is the probe-scaling pass
"""


def replay_worker(plan_path: Path, out_path: Path, groups_path: Path, hard_aperture: bool) -> None:
    """Child-process entry: our run of the plan with iteration ``k`` using recorded groups ``k``."""
    import phaser.engines.gradient as gradient
    import phaser.physics.probe as probe

    sequence = np.load(groups_path)
    calls = iter(range(len(sequence)))

    def replay(positions: Any, group_size: int, compact: bool, shuffle: bool, rng: Any) -> list[np.ndarray]:
        return [np.asarray(g) for g in sequence[next(calls)]]

    gradient.make_groups = replay
    if hard_aperture:

        def hard(xp: Any, ky: Any, kx: Any, wavelength_A: float, conv_angle_mrad: float, sampling_A: Any) -> Any:
            k_cut = conv_angle_mrad * 1e-3 / wavelength_A
            return (xp.sqrt(ky**2 + kx**2) <= k_cut).astype(ky.dtype)

        probe.aperture = hard
    cp.worker(plan_path, out_path)


def run_seed(
    seed: int, template: dict[str, Any], data_dir: Path, work: Path, niter: int, hard_aperture: bool, phaserem: Path
) -> list[cp.Run]:
    """The original seeded, then ours replaying its groups; both runs scored."""
    case = template["name"]
    truth = dict(np.load(data_dir / f"srtio3_{cp.CASES[case]}_truth.npz"))
    rows, cols = template["init"]["scan"]["shape"]
    save_dir = work / f"phaserem_seed{seed}"
    save_dir.mkdir(parents=True, exist_ok=True)
    plan = cp.write_plan(template, data_dir, niter, work / f"phaserem_seed{seed}.yaml", save_dir)
    groups = work / f"groups_seed{seed}.npy"
    log = work / f"phaserem_seed{seed}.log"
    python = phaserem.parent / "python"
    speed_gradient.run_child(
        [str(python), "-c", PHASEREM_SEEDED, str(plan), str(seed), str(groups), str(rows), str(cols)], log, work
    )
    theirs = cp.phaserem_run_record(case, seed, log, niter)
    cp.score_run(theirs, cp.read_phaserem_state(save_dir / f"iter{niter:03d}.h5"), truth)

    ours_plan = cp.write_plan(template, data_dir, niter, work / f"ours_seed{seed}.yaml", None)
    out = work / f"ours_seed{seed}.npz"
    command = [sys.executable, str(Path(__file__).resolve()), "--replay", str(ours_plan), str(out), str(groups)]
    speed_gradient.run_child(
        command + (["--hard-aperture"] if hard_aperture else []), work / f"ours_seed{seed}.log", work
    )
    arrays = dict(np.load(out))
    ours = cp.our_run_record(case, seed, arrays)
    cp.score_run(ours, arrays, truth)
    return [theirs, ours]


def markdown(runs: list[cp.Run], niter: int, hard_aperture: bool, eps_per_pattern: float) -> str:
    """Table of NCC, per-slice NCC and final loss per seed and package."""
    aperture = "hard-edged (as the original's)" if hard_aperture else "soft-edged (this package's default)"
    lines = [
        f"{niter} iterations, each seed's group sequence made by the original and replayed by this package; "
        f"this package's starting probe {aperture}. Loss: the original's Poisson form (ours + eps per pixel).",
        "",
        "| seed | package | NCC | per slice (entrance first) | final loss |",
        "|---|---|---|---|---|",
    ]
    for run in runs:
        offset = eps_per_pattern if run.package == "phaser" else 0.0
        slices = " ".join(f"{v:.2f}" for v in run.per_slice_ncc or [])
        lines.append(f"| {run.repeat} | {run.package} | {run.ncc:.4f} | {slices} | {run.losses[-1] + offset:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", default="grad_8slice_thick_dw", choices=[c for c in cp.CASES if c.startswith("grad")])
    parser.add_argument("--seeds", type=int, nargs="+", default=[123, 7])
    parser.add_argument("--niter", type=int, default=60)
    parser.add_argument("--hard-aperture", action="store_true", help="start our probe from a hard-edged aperture")
    parser.add_argument("--grouping", type=int, default=None, help="override the plan's group size (1024: one group)")
    parser.add_argument("--data-dir", type=Path, default=cp.DEFAULT_DATA)
    parser.add_argument("--phaserem", type=Path, default=cp.DEFAULT_PHASEREM, help="phaserem's `phaser` executable")
    parser.add_argument("--work-dir", type=Path, default=None)
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--replay", nargs=3, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.replay:
        replay_worker(*args.replay, args.hard_aperture)
        return 0
    if not args.phaserem.exists():
        raise SystemExit(f"{args.phaserem} is missing: run benchmarks/compare_phaserem.py --install first")
    data_set = cp.CASES[args.case]
    needed = [args.data_dir / f"srtio3_{data_set}.npy", args.data_dir / f"srtio3_{data_set}_truth.npz"]
    missing = [str(path) for path in needed if not path.exists()]
    if missing:
        raise SystemExit(f"{', '.join(missing)} missing: run benchmarks/abtem_srtio3.py (see its --help) first")
    template = cp.plan_templates(abtem_srtio3.PLANS_DIR, False)[args.case]
    if args.grouping:
        template["engines"][0]["grouping"] = args.grouping
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="same_groups_"))
    work.mkdir(parents=True, exist_ok=True)
    runs: list[cp.Run] = []
    for seed in args.seeds:
        for run in run_seed(seed, template, args.data_dir, work, args.niter, args.hard_aperture, args.phaserem):
            slices = " ".join(f"{v:.2f}" for v in run.per_slice_ncc or [])
            print(f"seed {seed} {run.package:8s} NCC {run.ncc:.4f} per slice {slices}", flush=True)
            runs.append(run)
    pattern_px = int(np.prod(np.load(args.data_dir / f"srtio3_{cp.CASES[args.case]}.npy", mmap_mode="r").shape[-2:]))
    eps_per_pattern = float(template["engines"][0]["noise_model"]["eps"]) * pattern_px
    table = markdown(runs, args.niter, args.hard_aperture, eps_per_pattern)
    print(table)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "case": args.case,
        "niter": args.niter,
        "hard_aperture": args.hard_aperture,
        "grouping": template["engines"][0]["grouping"],
        "runs": [run.summary() for run in runs],
    }
    args.results.write_text(json.dumps(record, indent=2) + "\n")
    args.results.with_suffix(".md").write_text(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
