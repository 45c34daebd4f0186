"""Jobs that are phaser-opt studies: recognised on submission, checked, run trial by trial on a worker."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import optuna
import pytest
import yaml

from phaser.server.app import ServerConfig
from phaser.server.worker import Worker
from tests.phaser_opt.conftest import write_study
from tests.server.conftest import AUTH, TOKEN, LiveServer, wait_for


@pytest.fixture
def study_root(tmp_path: Path, dataset_root: Path) -> Path:
    """A root folder with ``study/study.yaml`` (2 trials, storage ``tiny.db`` beside it)."""
    write_study(tmp_path / "root" / "study", dataset_root / "data.h5", n_trials=2)
    return tmp_path / "root"


def _complete_trials(folder: Path) -> int:
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{folder / 'tiny.db'}")
    return sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)


def test_a_study_submitted_over_http_runs_its_trials_on_a_worker(
    study_root: Path, dataset_root: Path, tmp_path: Path
) -> None:
    config = ServerConfig(db_url=f"sqlite:///{tmp_path / 'jobs.db'}", roots=[study_root, dataset_root], token=TOKEN)
    with LiveServer(config) as live:
        reply = httpx.post(f"{live.url}/api/jobs", json={"path": "study/study.yaml"}, headers=AUTH)
        assert reply.status_code == 201, reply.text
        assert reply.json()["kind"] == "study"
        job_id = reply.json()["id"]
        job = httpx.get(f"{live.url}/api/jobs/{job_id}", headers=AUTH).json()
        assert job["niter"] == 2 and job["info"]["dashboard"].startswith("phaser-opt dashboard ")
        worker = Worker(live.url, TOKEN, "study-worker", poll_s=0.05, out_dir=tmp_path / "out")
        assert worker.serve(once=True) == 0
        job = httpx.get(f"{live.url}/api/jobs/{job_id}", headers=AUTH).json()
        assert job["state"] == "done", job
        assert job["kind"] == "study" and job["iteration"] == 2 and job["niter"] == 2
        latest = httpx.get(f"{live.url}/api/jobs/{job_id}/latest", headers=AUTH).json()
        assert latest["kind"] == "study" and [n for n, _ in latest["errors"]] == [0, 1]
        values = [v for _, v in latest["errors"]]
        assert latest["best"] == min(values) and latest["error"] == latest["best"]
        log = httpx.get(f"{live.url}/api/jobs/{job_id}/log", headers=AUTH).json()["lines"]
        assert any("trial   1:" in line for line in log)  # phaser-opt's progress lines reach the job's log
    assert _complete_trials(study_root / "study") == 2


def test_a_running_study_stops_between_trials_when_cancelled(
    study_root: Path, dataset_root: Path, tmp_path: Path
) -> None:
    folder = study_root / "study"
    study = yaml.safe_load((folder / "study.yaml").read_text())
    (folder / "long.yaml").write_text(yaml.safe_dump({**study, "name": "long", "n_trials": 1000}))
    config = ServerConfig(db_url=f"sqlite:///{tmp_path / 'jobs.db'}", roots=[study_root, dataset_root], token=TOKEN)
    with LiveServer(config) as live:
        job_id = httpx.post(f"{live.url}/api/jobs", json={"path": "study/long.yaml"}, headers=AUTH).json()["id"]
        worker = Worker(live.url, TOKEN, "w", poll_s=0.05, out_dir=tmp_path / "out")
        thread = threading.Thread(target=worker.serve, kwargs={"once": True}, daemon=True)
        thread.start()
        get = lambda: httpx.get(f"{live.url}/api/jobs/{job_id}", headers=AUTH).json()  # noqa: E731
        wait_for(lambda: get()["iteration"] >= 1, timeout_s=90)
        httpx.post(f"{live.url}/api/jobs/{job_id}/cancel", headers=AUTH)
        thread.join(timeout=90)
        job = get()
        assert job["state"] == "cancelled" and 1 <= job["iteration"] < 1000


def test_study_text_is_validated_as_a_study_and_leaves_no_file(make_client, study_root, dataset_root) -> None:
    folder = study_root / "study"
    client = make_client(roots=[folder, dataset_root])
    text = (folder / "study.yaml").read_text()
    reply = client.post("/api/validate", json={"plan_yaml": text})
    assert reply.status_code == 200, reply.text
    assert reply.json()["kind"] == "study" and reply.json()["niter"] == 2
    assert not list(folder.glob(".phaser-serve-*")), "the temporary study file is removed"
    bad = client.post("/api/validate", json={"plan_yaml": text.replace("n_trials: 2", "n_trials: many")})
    assert bad.status_code == 422 and any(path == "n_trials" for path, _ in bad.json()["problems"])


def test_study_refusals_name_their_reason(make_client, study_root, dataset_root, tmp_path) -> None:
    folder = study_root / "study"
    client = make_client(roots=[folder, dataset_root])
    study = yaml.safe_load((folder / "study.yaml").read_text())
    cases = {
        "storage": {**study, "storage": f"sqlite:///{tmp_path / 'elsewhere.db'}"},
        "objectives[0].metric": {**study, "objectives": [{"metric": "evil_module:score"}]},
        "template": {**study, "template": "../../outside.yaml"},
    }
    (tmp_path / "outside.yaml").write_text((folder / "template.yaml").read_text())
    for field, data in cases.items():
        reply = client.post("/api/jobs", json={"plan_yaml": yaml.safe_dump(data)})
        assert reply.status_code == 403, (field, reply.text)
        assert reply.json()["reason"].startswith(field), reply.json()
    assert client.get("/api/jobs").json()["jobs"] == []


def test_a_study_job_opens_its_dashboard_once_and_a_plan_job_has_none(
    study_root: Path, dataset_root: Path, tmp_path: Path
) -> None:
    config = ServerConfig(db_url=f"sqlite:///{tmp_path / 'jobs.db'}", roots=[study_root, dataset_root], token=TOKEN)
    with LiveServer(config) as live:
        job_id = httpx.post(f"{live.url}/api/jobs", json={"path": "study/study.yaml"}, headers=AUTH).json()["id"]
        early = httpx.post(f"{live.url}/api/jobs/{job_id}/dashboard", headers=AUTH)
        assert early.status_code == 409 and "no study 'tiny'" in early.json()["reason"], early.text
        assert httpx.post(f"{live.url}/api/jobs/{job_id}/dashboard").status_code == 403  # the token is needed
        worker = Worker(live.url, TOKEN, "study-worker", poll_s=0.05, out_dir=tmp_path / "out")
        assert worker.serve(once=True) == 0
        reply = httpx.post(f"{live.url}/api/jobs/{job_id}/dashboard", headers=AUTH)
        assert reply.status_code == 200, reply.text
        url = reply.json()["url"]
        assert url.startswith("http://127.0.0.1:") and "/dashboard/studies/" in url
        assert url.rsplit("/", 1)[1].isdigit()
        origin = url.split("/dashboard/")[0]
        studies = httpx.get(f"{origin}/api/studies", timeout=30)
        assert studies.status_code == 200 and "tiny" in studies.text
        again = httpx.post(f"{live.url}/api/jobs/{job_id}/dashboard", headers=AUTH)
        assert again.json()["url"] == url
        assert len(live.app.state.api.dashboards._running) == 1
        plan = httpx.post(f"{live.url}/api/jobs", json={"path": "plans/tiny.yaml"}, headers=AUTH).json()["id"]
        refused = httpx.post(f"{live.url}/api/jobs/{plan}/dashboard", headers=AUTH)
        assert refused.status_code == 409 and "study" in refused.json()["reason"]
    with pytest.raises(httpx.TransportError):  # stopped with the server
        httpx.get(f"{origin}/api/studies", timeout=5)


def test_dashboards_are_refused_beyond_loopback_unless_allowed(make_client, study_root, dataset_root) -> None:
    from phaser.server.dashboards import dashboard_refusal

    assert dashboard_refusal("127.0.0.1", False) is None and dashboard_refusal("::1", False) is None
    assert "--allow-open-dashboards" in dashboard_refusal("0.0.0.0", False)
    assert dashboard_refusal("0.0.0.0", True) is None
    client = make_client(roots=[study_root, dataset_root], host="0.0.0.0")
    job_id = client.post("/api/jobs", json={"path": "study/study.yaml"}).json()["id"]
    reply = client.post(f"/api/jobs/{job_id}/dashboard")
    assert reply.status_code == 403 and "no authentication" in reply.json()["reason"]
