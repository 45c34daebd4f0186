"""The pub/sub hub and the job WebSocket: every subscriber gets a worker's updates; a slow one
loses stale frames, never the newest, and never slows the worker."""

from __future__ import annotations

import asyncio

from phaser.server.hub import MAX_PENDING_LOGS, Hub
from tests.server.conftest import tiny_plan


def test_two_subscribers_receive_every_update_of_a_worker(make_client) -> None:
    client = make_client()
    job_id = client.post("/api/jobs", json={"plan_yaml": tiny_plan()}).json()["id"]
    socket = f"/ws/jobs/{job_id}"
    with client.websocket_connect(socket) as first, client.websocket_connect(socket) as second:
        for ws in (first, second):
            frame = ws.receive_json()  # the job as it is on connect
            assert frame["type"] == "job" and frame["id"] == job_id and frame["state"] == "queued"
        client.post("/api/workers/claim", json={"worker": "w"})
        for ws in (first, second):
            frame = ws.receive_json()
            assert frame["type"] == "job" and frame["state"] == "running" and frame["worker"] == "w"
        for iteration in (1, 2):
            body = {"iteration": iteration, "niter": 2, "error": 1.0 / iteration, "probe_png": "iVBOR"}
            assert client.post(f"/api/jobs/{job_id}/update", json=body).status_code == 200
            for ws in (first, second):
                frame = ws.receive_json()
                assert frame["type"] == "update" and frame["iteration"] == iteration and frame["probe_png"] == "iVBOR"
        client.post(f"/api/jobs/{job_id}/log", json={"lines": ["a line"]})
        for ws in (first, second):
            frame = ws.receive_json()
            assert frame["type"] == "log" and frame["lines"] == ["a line"] and frame["next"] == frame["first"] + 1
        client.post(f"/api/jobs/{job_id}/finish", json={"state": "done", "reason": None, "out_dir": "/o"})
        for ws in (first, second):
            frame = ws.receive_json()
            assert frame["type"] == "job" and frame["state"] == "done"


def test_a_late_subscriber_gets_the_latest_update_first(make_client) -> None:
    client = make_client()
    job_id = client.post("/api/jobs", json={"plan_yaml": tiny_plan()}).json()["id"]
    client.post("/api/workers/claim", json={"worker": "w"})
    for iteration in (1, 2, 3):
        client.post(f"/api/jobs/{job_id}/update", json={"iteration": iteration})
    with client.websocket_connect(f"/ws/jobs/{job_id}") as ws:
        latest, job = ws.receive_json(), ws.receive_json()
        assert latest["type"] == "update" and latest["iteration"] == 3
        assert job["type"] == "job" and job["state"] == "running"


def test_an_unknown_job_closes_the_socket(make_client) -> None:
    import pytest
    from starlette.websockets import WebSocketDisconnect

    with pytest.raises(WebSocketDisconnect) as closed:
        with make_client().websocket_connect("/ws/jobs/999") as ws:
            ws.receive_json()
    assert closed.value.code == 4404


def test_a_slow_subscriber_keeps_only_the_newest_update_and_the_latest_logs() -> None:
    async def scenario() -> None:
        hub = Hub()
        slow = hub.subscribe(1)
        for i in range(100):
            assert hub.publish(1, {"type": "update", "iteration": i}) == 1  # returns at once
        for i in range(MAX_PENDING_LOGS + 10):
            hub.publish(1, {"type": "log", "lines": [str(i)]})
        hub.publish(1, {"type": "job", "state": "running"})
        hub.publish(1, {"type": "job", "state": "done"})
        frames = await asyncio.wait_for(slow.next_frames(), 1)
        updates = [f for f in frames if f["type"] == "update"]
        logs = [f for f in frames if f["type"] == "log"]
        assert updates == [{"type": "update", "iteration": 99}]
        assert len(logs) == MAX_PENDING_LOGS and logs[-1]["lines"] == [str(MAX_PENDING_LOGS + 9)]
        assert [f["state"] for f in frames if f["type"] == "job"] == ["done"]
        assert slow.dropped == 99 + 10
        hub.unsubscribe(1, slow)
        assert hub.publish(1, {"type": "update", "iteration": 100}) == 0
        assert hub.latest[1]["iteration"] == 100

    asyncio.run(scenario())


def test_the_hub_keeps_a_bounded_number_of_latest_updates() -> None:
    hub = Hub(max_latest=4)
    for job_id in range(10):
        hub.publish(job_id, {"type": "update", "iteration": 1})
    assert sorted(hub.latest) == [6, 7, 8, 9]
