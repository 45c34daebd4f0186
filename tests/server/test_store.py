"""The job queue on SQLite and PostgreSQL: submit, exactly-once claims, cancel, requeue, restart."""

from __future__ import annotations

import threading
import time
from collections import Counter

from phaser.server.store import MAX_CLAIMS, JobStore


def _submit(store: JobStore, n: int = 1) -> list[int]:
    return [store.submit(f"job{i}", "name: x\n", "/tmp", 3)["id"] for i in range(n)]


def test_submit_lists_a_queued_job_with_its_plan(store: JobStore) -> None:
    job = store.submit("tiny", "name: tiny\n", "/data", 7)
    assert job["state"] == "queued" and job["niter"] == 7 and job["created"] > 0
    assert [j["id"] for j in store.list()] == [job["id"]]
    assert store.get(job["id"], with_plan=True)["plan_yaml"] == "name: tiny\n"
    assert store.get(job["id"] + 1000) is None


def test_claims_take_the_oldest_job_once_then_the_queue_is_empty(store: JobStore) -> None:
    first, second = _submit(store, 2)
    claimed = store.claim("w1")
    assert claimed["id"] == first and claimed["plan_yaml"] == "name: x\n" and claimed["base_dir"] == "/tmp"
    assert store.claim("w2")["id"] == second
    assert store.claim("w3") is None
    running = store.get(first)
    assert running["state"] == "running" and running["worker"] == "w1" and running["started"] is not None


def test_concurrent_claimers_take_every_job_exactly_once(store: JobStore) -> None:
    n_jobs, n_workers = 60, 8
    ids = _submit(store, n_jobs)
    claims: list[tuple[str, int]] = []
    lock = threading.Lock()
    start = threading.Barrier(n_workers)

    def claimer(name: str) -> None:
        start.wait()
        while (job := store.claim(name)) is not None:
            with lock:
                claims.append((name, job["id"]))
            time.sleep(0.002)  # a worker runs its job before claiming again: let the others in

    threads = [threading.Thread(target=claimer, args=(f"w{i}",)) for i in range(n_workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    counts = Counter(job_id for _, job_id in claims)
    assert sorted(counts) == ids and set(counts.values()) == {1}
    assert len({name for name, _ in claims}) > 1  # they really competed
    by_job = {job["id"]: job for job in store.list()}
    assert all(by_job[job_id]["worker"] == name for name, job_id in claims)


def test_cancel_queued_at_once_and_running_through_the_heartbeat(store: JobStore) -> None:
    queued, running = _submit(store, 2)
    assert store.claim("w")["id"] == queued  # the oldest: cancel the other one while queued
    assert store.cancel(running)["state"] == "cancelled"
    assert store.claim("w2") is None  # a cancelled job is never claimed
    assert store.heartbeat(queued, "w") is False
    assert store.cancel(queued)["state"] == "running"  # flagged; its worker stops it
    assert store.heartbeat(queued, "w") is True
    assert store.finish(queued, "cancelled", "cancelled", None, worker="w")["state"] == "cancelled"
    assert store.cancel(10_000) is None


def test_a_job_of_a_lost_worker_goes_back_to_the_queue(store: JobStore) -> None:
    (job_id,) = _submit(store)
    store.claim("lost")
    assert store.requeue_lost(timeout_s=60.0) == []  # its heartbeat is fresh
    time.sleep(0.05)
    (changed,) = store.requeue_lost(timeout_s=0.01)
    assert changed["state"] == "queued" and changed["worker"] is None
    assert store.heartbeat(job_id, "lost") is True  # the old worker is told to stop
    assert store.finish(job_id, "done", None, "/out", worker="lost") is None  # and cannot finish it
    assert store.claim("new")["id"] == job_id
    assert store.finish(job_id, "done", None, "/out", worker="new")["state"] == "done"
    assert any("sent no heartbeat" in line for line in store.read_log(job_id)[0])


def test_a_job_that_loses_its_workers_repeatedly_fails_with_the_reason(store: JobStore) -> None:
    (job_id,) = _submit(store)
    for attempt in range(MAX_CLAIMS):
        assert store.claim(f"w{attempt}")["id"] == job_id
        time.sleep(0.02)
        store.requeue_lost(timeout_s=0.01)
    job = store.get(job_id)
    assert job["state"] == "failed" and "no heartbeat" in job["reason"]


def test_a_heartbeat_keeps_a_job_running(store: JobStore) -> None:
    (job_id,) = _submit(store)
    store.claim("alive")
    time.sleep(0.3)
    assert store.heartbeat(job_id, "alive", {"iteration": 2, "error": 0.5}) is False
    assert store.requeue_lost(timeout_s=0.2) == []
    job = store.get(job_id)
    assert job["state"] == "running" and job["iteration"] == 2 and job["error"] == 0.5


def test_logs_are_read_from_an_index(store: JobStore) -> None:
    (job_id,) = _submit(store)
    assert store.append_log(job_id, ["a", "b", "c"])
    lines, next_index = store.read_log(job_id)
    assert lines[-3:] == ["a", "b", "c"] and next_index == len(lines)
    assert store.read_log(job_id, next_index - 1) == (["c"], next_index)
    assert store.append_log(999, ["x"]) is False


def test_delete_refuses_a_running_job(store: JobStore) -> None:
    running, done = _submit(store, 2)
    store.claim("w")
    assert store.delete(running) == "running" and store.get(running) is not None
    assert store.delete(done) == "queued" and store.get(done) is None
    assert store.read_log(done) == ([], 0)


def test_a_restart_keeps_every_job_and_log(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    first = JobStore(url)
    ids = _submit(first, 3)
    first.claim("w")
    first.append_log(ids[0], ["iteration 1", "iteration 2"])
    first.finish(ids[0], "done", None, "/out/job-1", worker="w")
    before = first.list()
    logs_before = [first.read_log(i) for i in ids]
    first.close()
    second = JobStore(url)
    assert second.list() == before
    assert [second.read_log(i) for i in ids] == logs_before
    assert second.claim("w2")["id"] == ids[1]  # the queue goes on where it was
    second.close()


def test_release_hands_a_stopped_local_workers_jobs_back(store: JobStore) -> None:
    (job_id,) = _submit(store)
    store.claim("local-1")
    (released,) = store.release(["local-1"])
    assert released["state"] == "queued" and store.claim("other")["id"] == job_id


def test_a_database_made_before_the_outputs_column_still_opens(tmp_path) -> None:
    from sqlalchemy import create_engine

    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE phaser_jobs (id INTEGER PRIMARY KEY, name VARCHAR(200) NOT NULL, state VARCHAR(16) NOT NULL, "
            "plan_yaml TEXT NOT NULL, base_dir TEXT NOT NULL, allow_hooks TEXT NOT NULL, created FLOAT NOT NULL, "
            "started FLOAT, finished FLOAT, heartbeat FLOAT, worker VARCHAR(200), iteration INTEGER NOT NULL, "
            "niter INTEGER, error FLOAT, out_dir TEXT, reason TEXT, cancel_requested BOOLEAN NOT NULL, "
            "claims INTEGER NOT NULL)"
        )
    engine.dispose()
    store = JobStore(url)
    job_id = _submit(store)[0]
    store.claim("w")
    store.finish(job_id, "done", None, "/out", "w", outputs=["final.h5"])
    assert store.outputs(job_id) == ("/out", ["final.h5"])
    store.close()
