"""The job widget's model against a real ``phaser serve`` in a thread (the standard library's
urllib, as in a notebook): submit, follow the updates a worker posts, cancel, the ``on_update``
hook; a server that does not answer or refuses is a message naming its URL."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("uvicorn", reason="the job widget tests run phaser serve (pip install 'phaser[server]')")
httpx = pytest.importorskip("httpx", reason="the fake worker posts with httpx")

from phaser.widgets.jobs import JobModel, job_widget  # noqa: E402
from tests.helpers import simulated_file  # noqa: E402
from tests.server.conftest import AUTH, TOKEN, LiveServer, free_port, tiny_plan, wait_for  # noqa: E402


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    from phaser.server.app import ServerConfig

    root = tmp_path_factory.mktemp("job_widget")
    simulated_file(root / "data.h5")
    config = ServerConfig(db_url=f"sqlite:///{root / 'jobs.db'}", roots=[Path(root)], token=TOKEN)
    with LiveServer(config) as live:
        yield live


def worker_claims(server, worker: str = "w") -> dict:
    """What a worker does first: claim the next queued job."""
    reply = httpx.post(f"{server.url}/api/workers/claim", json={"worker": worker}, headers=AUTH)
    assert reply.status_code == 200, reply.text
    return reply.json()


def worker_posts(server, job_id: int, path: str, body: dict) -> dict:
    reply = httpx.post(f"{server.url}/api/jobs/{job_id}/{path}", json=body, headers=AUTH)
    assert reply.status_code == 200, reply.text
    return reply.json()


def test_submit_follow_updates_and_the_callback(server):
    from phaser.server.previews import state_previews

    updates: list[dict] = []
    model = JobModel(server.url, token=TOKEN, on_update=updates.append)
    assert model.submit(tiny_plan(4)) and model.state == "queued" and model.message == ""
    assert updates[-1]["type"] == "job" and updates[-1]["state"] == "queued"
    job = worker_claims(server)
    assert job["id"] == model.job_id
    previews = state_previews(np.ones((1, 16, 16), np.complex64), np.ones((1, 16, 16), np.complex64))
    frame = {"iteration": 2, "niter": 4, "error": 1.5, "errors": [3.0, 1.5], "worker": "w", **previews}
    assert worker_posts(server, model.job_id, "update", frame) == {"cancel": False}
    worker_posts(server, model.job_id, "log", {"lines": ["iteration 2"]})
    assert model.poll()["state"] == "running"
    assert (model.iteration, model.niter, model.error, model.errors) == (2, 4, 1.5, [3.0, 1.5])
    assert model.preview_png().startswith(b"\x89PNG") and model.log[-1] == "iteration 2"
    kinds = [u["type"] for u in updates]
    assert "update" in kinds and "log" in kinds and kinds.count("update") == 1
    model.poll()  # nothing new: no update handed on twice
    assert [u["type"] for u in updates].count("update") == 1
    # cancelling a running job: the server tells the worker at its next update
    assert model.cancel() and model.state == "running"
    assert worker_posts(server, model.job_id, "update", {"iteration": 3, "worker": "w"}) == {"cancel": True}
    worker_posts(server, model.job_id, "finish", {"state": "cancelled", "worker": "w"})
    model.follow(every_s=0.02)
    wait_for(lambda: model.finished, timeout_s=10)
    model.stop()
    assert model.state == "cancelled" and updates[-1]["state"] == "cancelled"


def test_a_queued_job_is_cancelled_at_once_and_the_widget_follows_it(server):
    seen: list[str] = []
    widget = job_widget(server.url, tiny_plan(), token=TOKEN, on_update=lambda u: seen.append(u["type"]), every_s=0.02)
    assert widget.model.message == ""
    widget.submit_button.click()
    assert widget.model.state == "queued" and "queued" in widget.status.value
    widget.model._apply_frame({"iteration": 1, "niter": 3, "error": 2.0, "errors": [2.0]})  # as a poll would
    assert "<img" in widget.history.value and widget.progress.value == 1
    widget.cancel_button.click()
    wait_for(lambda: widget.model.finished, timeout_s=10)
    widget.model.stop()
    assert widget.model.state == "cancelled" and "cancelled" in widget.status.value and "job" in seen


def test_a_bad_plan_a_bad_token_and_a_silent_server_are_messages_naming_the_url(server):
    model = JobModel(server.url, token=TOKEN)
    assert not model.submit(tiny_plan().replace("niter: 3", "niter: three"))
    assert server.url in model.message and "engines[0].niter" in model.message
    model = JobModel(server.url, token="wrong")
    assert not model.submit(tiny_plan()) and "wrong token" in model.message and server.url in model.message
    silent = f"http://127.0.0.1:{free_port()}"
    model = JobModel(silent, timeout_s=2)
    assert not model.submit(tiny_plan()) and silent in model.message and "does not answer" in model.message
    widget = job_widget(silent, tiny_plan(), timeout_s=2)
    assert silent in widget.message.value and "Traceback" not in widget.message.value
    assert not JobModel(silent).cancel()  # no job yet

    def broken(update: dict) -> None:
        raise RuntimeError("user code failed")

    model = JobModel(server.url, token=TOKEN, on_update=broken)
    assert model.submit(tiny_plan()) and "user code failed" in model.message  # the hook cannot break the model
    model.cancel()
