"""What a run writes and how ``expr`` schedules behave are checked at validation, not at the end of a run."""

from __future__ import annotations

import time
import typing

import pytest

from phaser.figures._state import STATE_FIGURE_KINDS
from phaser.plan import PlanError, validate_plan
from phaser.plan.schedule_check import checked_iterations
from phaser.plan.schema import FIGURE_EXTENSIONS, ImageType
from tests.helpers import plan_for


def _problems(engine: dict) -> list[tuple[str, str]]:
    try:
        validate_plan(plan_for("data.h5", [engine]), check_files=False)
    except PlanError as exc:
        return exc.problems
    return []


def _epie(**fields) -> dict:
    return {"type": "conventional", "niter": 10, "noise_model": "amplitude", "solver": "epie", **fields}


def test_the_image_kinds_are_those_the_figure_code_draws() -> None:
    assert typing.get_args(ImageType) == STATE_FIGURE_KINDS


def test_picture_types_are_ones_matplotlib_writes() -> None:
    from matplotlib.backend_bases import FigureCanvasBase

    assert set(FIGURE_EXTENSIONS) <= set(FigureCanvasBase.get_supported_filetypes())


SAVE_CASES = {
    # save_options: (field, words)
    "unknown kind": ({"images": ["probe", "phase"]}, "images[1]", "expected one of 'probe', 'probe_mag'"),
    "unknown extension": ({"plot_ext": "bmp"}, "plot_ext", "'bmp' is not a supported image type; expected one of png"),
    "image placeholder": (
        {"img_fmt": "{kind}_{iter}.{ext}"},
        "img_fmt",
        "with {type}, {iter}, {ext}: KeyError('kind')",
    ),
    "image name placeholder": ({"img_fmt": "{name}_{type}.{ext}"}, "img_fmt", "KeyError('name')"),
    "bad format spec": ({"hdf5_fmt": "iter{iter:q}.h5"}, "hdf5_fmt", "Unknown format code 'q'"),
    "positional": ({"hdf5_fmt": "iter{}.h5"}, "hdf5_fmt", "with {iter}, {name}"),
    "out_dir placeholder": ({"out_dir": "runs/{plan}"}, "out_dir", "with {name}: KeyError('plan')"),
    "figures as raw arrays": ({"plot_ext": "tif", "images": ["probe", "tilt"]}, "images", "tilt: figures only"),
}


@pytest.mark.parametrize("case", sorted(SAVE_CASES))
def test_save_options_that_would_fail_when_writing(case: str) -> None:
    options, field, words = SAVE_CASES[case]
    problems = _problems(_epie(save_options=options))
    assert [m for p, m in problems if p == f"engines[0].save_options.{field}" and words in m], problems


def test_good_save_options_pass() -> None:
    options = {"plot_ext": "tiff", "images": ["probe", "object_phase_sum"], "img_fmt": "{type}-{iter:05d}.{ext}"}
    assert _problems(_epie(save_options={**options, "hdf5_fmt": "{name}_{iter}.h5", "out_dir": "out/{name}"})) == []


def _gradient(learning_rate, niter=10, **fields) -> dict:
    return {
        "type": "gradient",
        "niter": niter,
        "noise_model": "amplitude",
        "update_probe": False,
        "solvers": {"object": {"type": "adam", "learning_rate": learning_rate}},
        **fields,
    }


def _expr(text: str) -> dict:
    return {"type": "expr", "expr": text}


EXPR_CASES = {
    # engine: (field below engines[0], words)
    "negative in the middle": (
        _gradient(_expr("0.1 - 0.011 * i"), niter=20),
        "solvers.object.learning_rate",
        "is -0.01 at iteration 10 of 20",
    ),
    "negative at the end": (
        _gradient(_expr("log(niter - i + 1) - 0.5")),
        "solvers.object.learning_rate",
        "is -0.5 at iteration 10 of 10",
    ),
    "fails at the end": (
        _gradient(_expr("sqrt(niter - i - 0.5) if i > 1 else 0.1")),
        "solvers.object.learning_rate",
        "cannot be evaluated at iteration 10 of 10: math domain error",
    ),
    "overflows later": (
        _gradient(_expr("exp(i / 10)"), niter=10**6),
        "solvers.object.learning_rate",
        "cannot be evaluated at iteration 500000 of 1000000",
    ),
    "inside a piecewise": (
        _gradient({"type": "piecewise", "init": 0.1, "steps": {5: _expr("0.5 - 0.1 * i")}}),
        "solvers.object.learning_rate",
        "expected values >= 0, but the schedule is -0.4 at iteration 9 of 10",
    ),
    "a regularizer weight": (
        _gradient(0.1, regularizers=[{"type": "obj_l1", "weight": _expr("1 - i / 5")}]),
        "regularizers[0].weight",
        "is -0.8 at iteration 9 of 10",
    ),
    "an ePIE beta": (
        _epie(solver={"type": "epie", "beta_object": _expr("0.5 if i < niter else -0.5")}),
        "solver.beta_object",
        "is -0.5 at iteration 10 of 10",
    ),
}


@pytest.mark.parametrize("case", sorted(EXPR_CASES))
def test_expr_schedules_are_range_checked_over_their_engine(case: str) -> None:
    engine, field, words = EXPR_CASES[case]
    problems = _problems(engine)
    assert [m for p, m in problems if p == f"engines[0].{field}" and words in m], problems


def test_a_good_expr_passes_in_bounded_time() -> None:
    start = time.perf_counter()
    assert _problems(_gradient(_expr("0.1 * 0.999 ** i + 1e-4"), niter=10**12)) == []
    assert time.perf_counter() - start < 30  # a bound for work proportional to niter (10**12), not a speed test
    assert checked_iterations(10**12) == [1, 2, 500000000000, 10**12 - 1, 10**12]
    assert checked_iterations(1) == [1] and checked_iterations(0) == []
