"""The HTTP API under Starlette's TestClient: submit, validate, list, logs, files and the refusals."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.server.conftest import AUTH, TOKEN, tiny_plan


def test_health_and_validate_a_good_plan(make_client) -> None:
    client = make_client()
    assert client.get("/api/health").json()["ok"] is True
    reply = client.post("/api/validate", json={"plan_yaml": tiny_plan()})
    assert reply.status_code == 200, reply.text
    assert reply.json()["valid"] is True and reply.json()["plans"] == [{"name": "tiny"}]


def test_submit_list_get_and_delete_a_job(make_client) -> None:
    client = make_client()
    reply = client.post("/api/jobs", json={"plan_yaml": tiny_plan(5)})
    assert reply.status_code == 201, reply.text
    job = reply.json()
    assert job["state"] == "queued" and job["name"] == "tiny"
    (listed,) = client.get("/api/jobs").json()["jobs"]
    assert listed["id"] == job["id"] and listed["niter"] == 5
    assert set(listed) >= {"id", "name", "state", "created", "started", "finished", "worker", "iteration",
                           "niter", "error", "out_dir", "reason"}  # fmt: skip
    assert client.get(f"/api/jobs/{job['id']}").json()["plan_yaml"] == tiny_plan(5)
    assert client.get("/api/jobs/999").status_code == 404
    assert client.delete(f"/api/jobs/{job['id']}").status_code == 204
    assert client.get("/api/jobs").json()["jobs"] == []


def test_a_plan_file_under_the_root_is_submitted_by_path(make_client) -> None:
    reply = make_client().post("/api/jobs", json={"path": "plans/tiny.yaml"})
    assert reply.status_code == 201, reply.text
    assert reply.json()["name"] == "tiny"


def test_a_malformed_plan_gets_422_with_every_problem_and_its_field_path(make_client) -> None:
    plan = tiny_plan().replace("niter: 3", "niter: three").replace("grouping: 16", "grouping: 16\n  nonsense: 1")
    reply = make_client().post("/api/jobs", json={"plan_yaml": plan})
    assert reply.status_code == 422
    fields = [path for path, _ in reply.json()["problems"]]
    assert "engines[0].niter" in fields and "engines[0].nonsense" in fields
    broken = make_client().post("/api/validate", json={"plan_yaml": "name: [unclosed"})
    assert broken.status_code == 422 and "line" in broken.json()["problems"][0][1]


def test_a_missing_data_file_is_a_problem_of_its_field(make_client) -> None:
    reply = make_client().post("/api/validate", json={"plan_yaml": tiny_plan().replace("data.h5", "missing.h5")})
    assert reply.status_code == 422
    assert [p for p, _ in reply.json()["problems"]] == ["raw_data.path"]


def test_the_queue_through_the_worker_calls(make_client) -> None:
    client = make_client()
    job_id = client.post("/api/jobs", json={"plan_yaml": tiny_plan()}).json()["id"]
    claimed = client.post("/api/workers/claim", json={"worker": "w1"})
    assert claimed.status_code == 200 and claimed.json()["id"] == job_id and claimed.json()["name"] == "tiny"
    assert client.post("/api/workers/claim", json={"worker": "w2"}).status_code == 204
    assert client.post(f"/api/jobs/{job_id}/heartbeat", json={"worker": "w1"}).json() == {"cancel": False}
    assert client.post(f"/api/jobs/{job_id}/log", json={"lines": ["hello", "world"]}).status_code == 200
    reply = client.post(f"/api/jobs/{job_id}/update", json={"iteration": 2, "niter": 3, "error": 1.5, "errors": [2.0]})
    assert reply.status_code == 200
    assert client.get(f"/api/jobs/{job_id}/latest").json()["iteration"] == 2
    assert client.get(f"/api/jobs/{job_id}").json()["iteration"] == 2
    assert client.delete(f"/api/jobs/{job_id}").status_code == 409  # running
    log = client.get(f"/api/jobs/{job_id}/log", params={"since": 0}).json()
    assert log["lines"][-2:] == ["hello", "world"]
    rest = client.get(f"/api/jobs/{job_id}/log", params={"since": log["next"]}).json()
    assert rest == {"lines": [], "next": log["next"]}
    finish = {"state": "done", "reason": None, "out_dir": "/out/job-1", "worker": "w1"}
    assert client.post(f"/api/jobs/{job_id}/finish", json=finish).json()["state"] == "done"
    assert client.get(f"/api/jobs/{job_id}").json()["out_dir"] == "/out/job-1"
    assert client.post(f"/api/jobs/{job_id}/finish", json=finish).status_code == 409  # not running any more


def test_cancel_a_queued_job_at_once_and_a_running_one_by_heartbeat(make_client) -> None:
    client = make_client()
    first, second = (client.post("/api/jobs", json={"plan_yaml": tiny_plan()}).json()["id"] for _ in range(2))
    client.post("/api/workers/claim", json={"worker": "w"})
    assert client.post(f"/api/jobs/{second}/cancel").json() == {"state": "cancelled"}
    assert client.post(f"/api/jobs/{first}/cancel").json() == {"state": "running"}
    assert client.post(f"/api/jobs/{first}/heartbeat", json={"worker": "w"}).json() == {"cancel": True}
    assert client.post(f"/api/jobs/{first}/update", json={"iteration": 1, "worker": "w"}).json() == {"cancel": True}


def test_a_non_finite_error_reaches_clients_as_null(make_client) -> None:
    client = make_client()
    job_id = client.post("/api/jobs", json={"plan_yaml": tiny_plan()}).json()["id"]
    client.post("/api/workers/claim", json={"worker": "w"})
    body = b'{"iteration": 1, "error": NaN, "errors": [1.0, Infinity]}'
    assert client.post(f"/api/jobs/{job_id}/update", content=body).status_code == 200
    latest = client.get(f"/api/jobs/{job_id}/latest").json()
    assert latest["error"] is None and latest["errors"] == [1.0, None]


def test_the_job_is_lost_worker_requeued_by_the_background_task(make_client) -> None:
    client = make_client(worker_timeout_s=0.3, requeue_every_s=0.05)
    job_id = client.post("/api/jobs", json={"plan_yaml": tiny_plan()}).json()["id"]
    client.post("/api/workers/claim", json={"worker": "crashed"})
    from tests.server.conftest import wait_for

    wait_for(lambda: client.get(f"/api/jobs/{job_id}").json()["state"] == "queued", timeout_s=10)
    assert client.post("/api/workers/claim", json={"worker": "next"}).json()["id"] == job_id


# -- security ------------------------------------------------------------------------------------


def test_a_configured_token_is_required_for_every_api_request(make_client) -> None:
    client = make_client(token=TOKEN)
    missing = client.get("/api/jobs")
    assert missing.status_code == 403 and missing.json()["reason"].startswith("missing token")
    wrong = client.get("/api/jobs", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 403 and wrong.json()["reason"].startswith("wrong token")
    assert client.post("/api/workers/claim", json={"worker": "w"}).status_code == 403
    assert client.get("/api/jobs", headers=AUTH).status_code == 200
    assert client.post("/api/workers/claim", json={"worker": "w"}, headers=AUTH).status_code == 204


def test_the_websocket_needs_the_token_too(make_client) -> None:
    from starlette.websockets import WebSocketDisconnect

    client = make_client(token=TOKEN)
    job_id = client.post("/api/jobs", json={"plan_yaml": tiny_plan()}, headers=AUTH).json()["id"]
    for query, reason in (("", "missing token"), ("?token=nope", "wrong token")):
        with pytest.raises(WebSocketDisconnect) as refused:
            with client.websocket_connect(f"/ws/jobs/{job_id}{query}") as ws:
                ws.receive_json()
        assert refused.value.code == 4403 and refused.value.reason.startswith(reason)
    with client.websocket_connect(f"/ws/jobs/{job_id}?token={TOKEN}") as ws:
        assert ws.receive_json()["type"] == "job"


def test_shutdown_always_needs_a_token(make_client) -> None:
    stopped = []
    open_client = make_client(on_shutdown=lambda: stopped.append(1))
    refused = open_client.post("/api/shutdown")
    assert refused.status_code == 403 and "--token" in refused.json()["reason"]
    client = make_client(token=TOKEN, on_shutdown=lambda: stopped.append(2))
    assert client.post("/api/shutdown").status_code == 403
    assert client.post("/api/shutdown", headers=AUTH).status_code == 202


def test_custom_hooks_over_the_network_are_refused_with_the_reason(make_client) -> None:
    client = make_client()
    plan = tiny_plan().replace("type: focused", "type: 'mymodule.probes:my_probe'")
    reply = client.post("/api/jobs", json={"plan_yaml": plan})
    assert reply.status_code == 403
    assert "init.probe" in reply.json()["reason"] and "--allow-custom-hooks" in reply.json()["reason"]
    assert client.post("/api/validate", json={"plan_yaml": plan}).status_code == 403
    stdlib = tiny_plan().replace("type: manual", "type: 'os:system'")
    assert "standard-library" in client.post("/api/jobs", json={"plan_yaml": stdlib}).json()["reason"]
    assert client.get("/api/jobs").json()["jobs"] == []


def test_allow_custom_hooks_lets_a_plan_name_its_modules_but_never_the_standard_library(make_client) -> None:
    client = make_client(allow_custom_hooks=True)
    plan = tiny_plan().replace("type: focused", "type: 'mymodule.probes:my_probe'")
    reply = client.post("/api/validate", json={"plan_yaml": plan})
    assert reply.status_code == 422  # past the trust check: the module is imported, and is missing
    assert "mymodule" in reply.json()["problems"][0][1]
    stdlib = tiny_plan().replace("type: manual", "type: 'os:system'")
    assert client.post("/api/validate", json={"plan_yaml": stdlib}).status_code == 403


@pytest.mark.parametrize(
    "path",
    ["../secret.yaml", "plans/../../secret.yaml", "/etc/passwd", "~/secret.yaml", "escape/secret.yaml", "escape"],
)
def test_paths_outside_the_root_are_refused(make_client, tmp_path: Path, path: str) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir(), outside.mkdir()
    (outside / "secret.yaml").write_text(tiny_plan())
    os.symlink(outside, root / "escape")
    client = make_client(roots=[root])
    for reply in (
        client.post("/api/jobs", json={"path": path}),
        client.post("/api/validate", json={"path": path}),
        client.get("/api/files", params={"dir": path}),
    ):
        assert reply.status_code == 403, (path, reply.text)
        assert reply.json()["reason"]


def test_a_plan_naming_data_outside_the_root_is_refused(make_client, tmp_path: Path, dataset_root: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    os.symlink(dataset_root / "data.h5", root / "linked.h5")
    client = make_client(roots=[root])
    for data in (str(dataset_root / "data.h5"), "../data.h5", "linked.h5", "${HOME}/data.h5"):
        reply = client.post("/api/jobs", json={"plan_yaml": tiny_plan().replace("path: data.h5", f"path: '{data}'")})
        assert reply.status_code == 403, (data, reply.text)
        assert "raw_data.path" in reply.json()["reason"]


def test_files_lists_a_folder_without_links_out_of_the_root(make_client, tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "plans").mkdir(parents=True)
    (root / "plans" / "a.yaml").write_text("x")
    os.symlink(tmp_path, root / "escape")
    client = make_client(roots=[root])
    top = client.get("/api/files").json()
    assert top == {"dir": "", "entries": [{"name": "plans", "is_dir": True}]}
    assert client.get("/api/files", params={"dir": "plans"}).json()["entries"] == [{"name": "a.yaml", "is_dir": False}]
    assert client.get("/api/files", params={"dir": "nothere"}).status_code == 404


def test_bodies_over_the_limit_get_413(make_client) -> None:
    from phaser.server.app import PLAN_BODY_LIMIT, UPDATE_BODY_LIMIT

    client = make_client()
    big = {"plan_yaml": "#" * PLAN_BODY_LIMIT}
    assert client.post("/api/jobs", json=big).status_code == 413
    assert client.post("/api/validate", json=big).status_code == 413
    job_id = client.post("/api/jobs", json={"plan_yaml": tiny_plan()}).json()["id"]
    client.post("/api/workers/claim", json={"worker": "w"})
    fits = {"iteration": 1, "object_phase_png": "A" * (3 * 2**20)}
    assert client.post(f"/api/jobs/{job_id}/update", json=fits).status_code == 200
    too_big = {"iteration": 1, "object_phase_png": "A" * UPDATE_BODY_LIMIT}
    assert client.post(f"/api/jobs/{job_id}/update", json=too_big).status_code == 413


def test_a_body_without_a_content_length_is_cut_at_the_limit(make_client) -> None:
    from phaser.server.app import PLAN_BODY_LIMIT

    def chunks():
        for _ in range(3):
            yield b"#" * PLAN_BODY_LIMIT

    reply = make_client().post("/api/validate", content=chunks())
    assert reply.status_code == 413


# -- outputs -------------------------------------------------------------------------------------


def test_outputs_on_a_remote_worker_are_listed_as_reported_but_not_served(make_client, tmp_path: Path) -> None:
    client = make_client()
    job_id = client.post("/api/jobs", json={"plan_yaml": tiny_plan()}).json()["id"]
    assert client.get(f"/api/jobs/{job_id}/outputs").json()["files"] == []
    client.post("/api/workers/claim", json={"worker": "far"})
    far = tmp_path / "far" / "job-1"  # exists here, but outside the root and the local workers' folder
    far.mkdir(parents=True)
    (far / "final.h5").write_bytes(b"x")
    body = {"state": "done", "out_dir": str(far), "outputs": ["final.h5", "probe.png"], "worker": "far"}
    assert client.post(f"/api/jobs/{job_id}/finish", json=body).status_code == 200
    listing = client.get(f"/api/jobs/{job_id}/outputs").json()
    assert listing["downloadable"] is False and [f["name"] for f in listing["files"]] == ["final.h5", "probe.png"]
    refused = client.get(f"/api/jobs/{job_id}/outputs/final.h5")
    assert refused.status_code == 403 and "not readable by this server" in refused.json()["reason"]
    assert client.get(f"/api/jobs/{job_id}/outputs/..%2F..%2Fjobs.db").status_code == 403
    assert client.get("/api/jobs/999/outputs").status_code == 404


def test_outputs_under_a_served_folder_download_but_links_out_of_it_do_not(make_client, tmp_path: Path) -> None:
    served = tmp_path / "served"
    client = make_client(out_dirs=[served])
    job_id = client.post("/api/jobs", json={"plan_yaml": tiny_plan()}).json()["id"]
    client.post("/api/workers/claim", json={"worker": "local"})
    out = served / f"job-{job_id}"
    (out / "sub").mkdir(parents=True)
    (out / "sub" / "a.txt").write_text("inside")
    (tmp_path / "outside.txt").write_text("outside")
    (out / "link.txt").symlink_to(tmp_path / "outside.txt")
    client.post(f"/api/jobs/{job_id}/finish", json={"state": "done", "out_dir": str(out), "worker": "local"})
    listing = client.get(f"/api/jobs/{job_id}/outputs").json()
    assert listing["downloadable"] is True and listing["files"] == [{"name": "sub/a.txt", "size": 6}]
    assert client.get(f"/api/jobs/{job_id}/outputs/sub/a.txt").text == "inside"
    escaped = client.get(f"/api/jobs/{job_id}/outputs/link.txt")
    assert escaped.status_code == 403 and "symbolic link" in escaped.json()["reason"]
    assert client.get(f"/api/jobs/{job_id}/outputs/sub/none.txt").status_code == 404
