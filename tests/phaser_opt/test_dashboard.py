"""optuna-dashboard on a real phaser-opt study: study list, trial artifacts, notes, the gallery,
and a study that keeps running while the dashboard reads its SQLite file.

One small study (8x8 scan, 32x32 patterns, 4 gradient iterations, 3 trials) runs once for the
module; the dashboard's WSGI app is driven in-process (no server, no browser).
"""

from __future__ import annotations

import io
import json
import struct
import threading
import time
from dataclasses import dataclass
from typing import Any
from wsgiref.util import setup_testing_defaults

import optuna
import pytest
from optuna.trial import TrialState

optuna_dashboard = pytest.importorskip("optuna_dashboard")

from phaser.cli import main as phaser_main  # noqa: E402
from phaser_opt.artifacts import GALLERY_ID, PHASE_ARRAY, artifact_store  # noqa: E402
from phaser_opt.runner import run_study  # noqa: E402
from phaser_opt.storage import open_storage  # noqa: E402
from phaser_opt.study import LoadedStudy, load_study  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
STUDY_NAME = "dashboard_test"

TEMPLATE = """\
name: dashboard_test
backend: jax
dtype: float32
seed: 0
raw_data: {type: manual}
init:
  probe: {type: focused, conv_angle: 20.0, defocus: 100.0}
  scan: {type: raster}
engines:
- type: gradient
  niter: 4
  grouping: 32
  noise_model: {type: poisson, eps: 0.1}
  solvers:
    object: {type: adam, learning_rate: !float {low: 1.0e-3, high: 0.3, log: true, name: object_lr}}
    probe: {type: adam, learning_rate: !float {low: 1.0e-4, high: 0.1, log: true, name: probe_lr}}
"""

STUDY = f"""\
version: "1.0"
name: {STUDY_NAME}
template: template.yaml
data: {{path: data.h5}}
truth: {{file: data.h5}}
objectives: [{{metric: mse}}]
sampler: {{type: tpe, seed: 0}}
pruner: {{type: none}}
n_trials: 3
artifacts: {{enabled: true, images: [object_phase, error, plan], gallery_top: 4}}
"""


@dataclass
class StudyRun:
    loaded: LoadedStudy
    study: optuna.Study
    log: str


@pytest.fixture(scope="module")
def study_run(tmp_path_factory: pytest.TempPathFactory) -> StudyRun:
    folder = tmp_path_factory.mktemp("dashboard")
    rc = phaser_main(
        ["simulate", "--out", str(folder / "data.h5"), "--scan", "8", "8", "--pattern-size", "32", "--seed", "0"]
    )
    assert rc == 0
    (folder / "template.yaml").write_text(TEMPLATE)
    (folder / "study.yaml").write_text(STUDY)
    loaded = load_study(folder / "study.yaml")
    log = io.StringIO()
    study = run_study(loaded, stream=log)
    return StudyRun(loaded, study, log.getvalue())


@pytest.fixture(scope="module")
def app(study_run: StudyRun) -> Any:
    """The dashboard as ``phaser-opt dashboard`` serves it: the study's storage and artifact store."""
    loaded = study_run.loaded
    return optuna_dashboard.wsgi(open_storage(loaded.storage_url), artifact_store=artifact_store(loaded.artifact_dir))


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def wsgi_get(app: Any, path: str, query: str = "") -> Response:
    """A GET request straight into a WSGI app (no server)."""
    environ: dict[str, Any] = {}
    setup_testing_defaults(environ)
    environ.update(REQUEST_METHOD="GET", PATH_INFO=path, QUERY_STRING=query)
    started: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        started["status"], started["headers"] = status, headers
        return lambda data: None

    result = app(environ, start_response)
    try:
        body = b"".join(result)
    finally:
        if hasattr(result, "close"):
            result.close()
    headers = {k.lower(): v for k, v in started["headers"]}
    return Response(int(started["status"].split()[0]), headers, body)


def study_id_of(app: Any, name: str = STUDY_NAME) -> int:
    response = wsgi_get(app, "/api/studies")
    assert response.status == 200
    ids = [s["study_id"] for s in response.json()["study_summaries"] if s["study_name"] == name]
    assert len(ids) == 1
    return ids[0]


def study_detail(app: Any) -> dict[str, Any]:
    response = wsgi_get(app, f"/api/studies/{study_id_of(app)}")
    assert response.status == 200
    return response.json()


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_study_ran(study_run: StudyRun):
    states = [t.state for t in study_run.study.get_trials(deepcopy=False)]
    assert states.count(TrialState.COMPLETE) == 3, study_run.log
    assert study_run.loaded.artifact_dir.is_dir()


def test_study_list_and_detail(app: Any):
    response = wsgi_get(app, "/api/studies")
    assert response.status == 200
    assert "application/json" in response.headers["content-type"]
    summaries = response.json()["study_summaries"]
    assert STUDY_NAME in [s["study_name"] for s in summaries]
    summary = next(s for s in summaries if s["study_name"] == STUDY_NAME)
    assert summary["directions"] == ["minimize"]
    assert "study_file" in [a["key"] for a in summary["user_attrs"]]

    detail = study_detail(app)
    assert detail["name"] == STUDY_NAME
    assert detail["objective_names"] == ["mse"]
    assert len(detail["trials"]) >= 3
    assert len(detail["best_trials"]) == 1
    assert {p["name"] for p in detail["trials"][0]["params"]} == {"object_lr", "probe_lr"}


def test_meta_says_artifacts_are_available(app: Any):
    meta = wsgi_get(app, "/api/meta").json()
    assert meta["artifact_is_available"] is True


def test_trial_artifact_png(app: Any):
    detail = study_detail(app)
    trial = detail["best_trials"][0]
    by_name = {a["filename"]: a for a in trial["artifacts"]}
    assert {"object_phase.png", "error.png", "plan.yaml", PHASE_ARRAY} <= set(by_name)
    meta = by_name["object_phase.png"]
    assert meta["mimetype"] == "image/png"
    response = wsgi_get(app, f"/artifacts/{trial['study_id']}/{trial['trial_id']}/{meta['artifact_id']}")
    assert response.status == 200
    assert response.headers["content-type"] == "image/png"
    width, height = png_size(response.body)
    assert width >= 500 and height > 0

    plan = wsgi_get(app, f"/artifacts/{trial['study_id']}/{trial['trial_id']}/{by_name['plan.yaml']['artifact_id']}")
    assert plan.status == 200
    assert b"gradient" in plan.body

    # an artifact asked for under another trial is not served
    other = next(t for t in detail["trials"] if t["trial_id"] != trial["trial_id"])
    wrong = wsgi_get(app, f"/artifacts/{trial['study_id']}/{other['trial_id']}/{meta['artifact_id']}")
    assert wrong.status == 404


def test_trial_note_has_the_metric(app: Any):
    detail = study_detail(app)
    for trial in detail["trials"]:
        if trial["state"] != "Complete":
            continue
        body = trial["note"]["body"]
        assert trial["note"]["version"] >= 1
        assert body.startswith(f"## Trial {trial['number']}")
        assert "| metric | value |" in body
        assert f"| mse | {trial['values'][0]:.5g} |" in body
        assert "`object_lr`" in body


def test_gallery_graph_object(app: Any, study_run: StudyRun):
    detail = study_detail(app)
    objects = {g["id"]: g["graph_object"] for g in detail["plotly_graph_objects"]}
    assert GALLERY_ID in objects
    figure = json.loads(objects[GALLERY_ID])
    heatmaps = [trace for trace in figure["data"] if trace["type"] == "heatmap"]
    complete = [t for t in detail["trials"] if t["state"] == "Complete"]
    assert len(heatmaps) == min(4, len(complete))
    assert "Gallery" in figure["layout"]["title"]["text"]
    best = detail["best_trials"][0]["number"]
    titles = [a["text"] for a in figure["layout"]["annotations"]]
    assert titles[0].startswith(f"#{best}: mse ")


def test_gallery_fits_the_dashboard_card(app: Any):
    detail = study_detail(app)
    layout = json.loads(next(g["graph_object"] for g in detail["plotly_graph_objects"] if g["id"] == GALLERY_ID))[
        "layout"
    ]
    assert layout.get("width") is None  # the card's width (half the page) sizes it
    assert layout.get("height") is None or layout["height"] <= 450


def test_dashboard_page_is_served(app: Any):
    response = wsgi_get(app, f"/dashboard/studies/{study_id_of(app)}")
    assert response.status == 200
    assert b"bundle.js" in response.body


def test_study_runs_on_while_the_dashboard_reads(study_run: StudyRun, app: Any):
    """Two more trials run while two dashboards (phaser-opt's storage, and a plain URL as
    ``optuna-dashboard sqlite:///...`` opens it) poll the same SQLite file."""
    loaded = study_run.loaded
    plain = optuna_dashboard.wsgi(loaded.storage_url, artifact_store=artifact_store(loaded.artifact_dir))
    study_id = study_id_of(app)
    stop = threading.Event()
    errors: list[str] = []
    polls = [0]

    def poll() -> None:
        while not stop.is_set():
            for dashboard in (app, plain):
                try:
                    response = wsgi_get(dashboard, f"/api/studies/{study_id}")
                    if response.status != 200:
                        errors.append(f"{response.status}: {response.body[:200]!r}")
                except Exception as exc:  # noqa: BLE001 - collected and reported by the test
                    errors.append(repr(exc))
                polls[0] += 1
            time.sleep(0.02)

    reader = threading.Thread(target=poll, daemon=True)
    reader.start()
    log = io.StringIO()
    try:
        study = run_study(load_study(loaded.path), stream=log, n_trials=5)
    finally:
        stop.set()
        reader.join(timeout=30)
    assert not reader.is_alive()
    text = log.getvalue()
    assert "locked" not in text, text
    assert not errors, errors[:3]
    assert polls[0] > 0
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == 5
    assert all(t.state == TrialState.COMPLETE for t in trials), [
        (t.number, t.state, t.user_attrs.get("fail_reason")) for t in trials
    ]
    # the dashboard sees the new trials and their notes
    for dashboard in (app, plain):
        # the dashboard caches a study's trials for a few seconds: ask again until it catches up
        deadline = time.monotonic() + 30
        detail = wsgi_get(dashboard, f"/api/studies/{study_id}").json()
        while len(detail["trials"]) < 5 and time.monotonic() < deadline:
            time.sleep(0.5)
            detail = wsgi_get(dashboard, f"/api/studies/{study_id}").json()
        assert len(detail["trials"]) == 5
        assert all(t["note"]["body"] for t in detail["trials"])
