"""The job queue and job logs in an SQL database (SQLite file or PostgreSQL) through SQLAlchemy.

Every state change is one short transaction, so several server threads (and a restarted server)
see one consistent queue. A job is claimed by exactly one worker: on PostgreSQL the queued row is
locked with ``FOR UPDATE SKIP LOCKED``; on SQLite every transaction begins ``IMMEDIATE`` (one
writer at a time) and the claim re-checks ``state = 'queued'`` in its UPDATE, counting the rows.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    delete,
    event,
    func,
    select,
    update,
)
from sqlalchemy.engine import Engine, make_url

STATES = ("queued", "running", "done", "failed", "cancelled")
FINAL_STATES = ("done", "failed", "cancelled")
MAX_CLAIMS = 3  # a job whose workers were lost this many times fails instead of going back again
LOG_PAGE = 2000  # log lines per read

metadata = MetaData()
jobs = Table(
    "phaser_jobs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False),
    Column("kind", String(16)),  # "plan" (also when NULL) or "study" (a phaser-opt study file)
    Column("info", Text),  # JSON: what the page shows of a study (its file, storage, dashboard command)
    Column("state", String(16), nullable=False, index=True),
    Column("plan_yaml", Text, nullable=False),
    Column("base_dir", Text, nullable=False),
    Column("allow_hooks", Text, nullable=False, default="[]"),
    Column("created", Float, nullable=False),
    Column("started", Float),
    Column("finished", Float),
    Column("heartbeat", Float),
    Column("worker", String(200)),
    Column("iteration", Integer, nullable=False, default=0),
    Column("niter", Integer),
    Column("error", Float),
    Column("out_dir", Text),
    Column("outputs", Text),  # JSON list of the files the worker wrote, relative to out_dir
    Column("reason", Text),
    Column("cancel_requested", Boolean, nullable=False, default=False),
    Column("claims", Integer, nullable=False, default=0),
)
logs = Table(
    "phaser_job_logs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job_id", Integer, nullable=False, index=True),
    Column("line", Text, nullable=False),
)
PUBLIC_FIELDS = (
    "id", "name", "kind", "state", "created", "started", "finished", "worker",
    "iteration", "niter", "error", "out_dir", "reason",
)  # fmt: skip


class StoreError(RuntimeError):
    """The job database cannot be opened or created."""


def masked_url(url: str) -> str:
    """``url`` with its password hidden, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL is shown as written
        return url


def _finite(value: Any) -> Any:
    return value if not isinstance(value, float) or math.isfinite(value) else None


def job_dict(row: Any, with_plan: bool = False) -> dict[str, Any]:
    """The JSON form of a job row (non-finite errors as null)."""
    out = {key: _finite(row._mapping[key]) for key in PUBLIC_FIELDS}
    out["kind"] = out["kind"] or "plan"
    out["info"] = json.loads(row.info) if row.info else {}
    if with_plan:
        out["plan_yaml"] = row.plan_yaml
    return out


def _sqlite_engine(url: str) -> Engine:
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy's "begin" event emits BEGIN itself
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        # a deferred transaction that upgrades to a write can fail at once with SQLITE_BUSY under WAL;
        # IMMEDIATE takes the write lock up front and waits for it (busy timeout)
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def open_engine(url: str) -> Engine:
    """An engine on ``url`` with the job tables created; raises :class:`StoreError` with the reason."""
    try:
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite":
            engine = _sqlite_engine(url)
        else:
            engine = create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
        metadata.create_all(engine)
        _add_missing_columns(engine)
    except Exception as exc:  # noqa: BLE001 - every failure becomes one clear start-up message
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StoreError(f"cannot open the job database {masked_url(url)}: {reason}") from exc
    return engine


def _add_missing_columns(engine: Engine) -> None:
    """Columns added since a database was created (nullable ones), so an older job file still opens."""
    from sqlalchemy import inspect

    present = {column["name"] for column in inspect(engine).get_columns(jobs.name)}
    with engine.begin() as conn:
        for column in jobs.columns:
            if column.name not in present and column.nullable:
                kind = column.type.compile(dialect=engine.dialect)
                conn.exec_driver_sql(f"ALTER TABLE {jobs.name} ADD COLUMN {column.name} {kind}")


class JobStore:
    """The queue: submit, claim, heartbeat, finish, cancel, requeue, delete; and the job logs."""

    def __init__(self, url: str):
        self.url = url
        self.engine = open_engine(url)
        self.is_postgres = self.engine.dialect.name == "postgresql"

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    def close(self) -> None:
        self.engine.dispose()

    # -- clients ---------------------------------------------------------------------------------
    def submit(
        self,
        name: str,
        plan_yaml: str,
        base_dir: str,
        niter: int,
        allow_hooks: list[str] = (),
        kind: str = "plan",
        info: dict | None = None,
    ) -> dict:
        """Queue a job (a plan, or ``kind="study"``: a phaser-opt study file's text); returns its dict."""
        with self._tx() as conn:
            result = conn.execute(
                jobs.insert().values(
                    name=name[:200],
                    kind=kind,
                    info=json.dumps(info or {}),
                    state="queued",
                    plan_yaml=plan_yaml,
                    base_dir=base_dir,
                    allow_hooks=json.dumps(list(allow_hooks)),
                    created=time.time(),
                    niter=niter,
                    iteration=0,
                    cancel_requested=False,
                    claims=0,
                )
            )
            job_id = result.inserted_primary_key[0]
            conn.execute(logs.insert().values(job_id=job_id, line=f"{_stamp()} queued"))
            return job_dict(conn.execute(select(jobs).where(jobs.c.id == job_id)).one())

    def list(self) -> list[dict]:
        with self._tx() as conn:
            return [job_dict(row) for row in conn.execute(select(jobs).order_by(jobs.c.id.desc()))]

    def get(self, job_id: int, with_plan: bool = False) -> dict | None:
        with self._tx() as conn:
            row = conn.execute(select(jobs).where(jobs.c.id == job_id)).one_or_none()
            return None if row is None else job_dict(row, with_plan)

    def outputs(self, job_id: int) -> tuple[str | None, list[str]] | None:
        """The job's output folder and the files its worker reported there; None when unknown."""
        with self._tx() as conn:
            row = conn.execute(select(jobs.c.out_dir, jobs.c.outputs).where(jobs.c.id == job_id)).one_or_none()
        if row is None:
            return None
        return row.out_dir, json.loads(row.outputs or "[]")

    def cancel(self, job_id: int) -> dict | None:
        """A queued job becomes cancelled; a running one is flagged for its worker. None: unknown."""
        now = time.time()
        with self._tx() as conn:
            row = conn.execute(select(jobs.c.state).where(jobs.c.id == job_id)).one_or_none()
            if row is None:
                return None
            if row.state == "queued":
                conn.execute(
                    update(jobs).where(jobs.c.id == job_id).values(state="cancelled", finished=now, reason="cancelled")
                )
                conn.execute(logs.insert().values(job_id=job_id, line=f"{_stamp()} cancelled while queued"))
            elif row.state == "running":
                conn.execute(update(jobs).where(jobs.c.id == job_id).values(cancel_requested=True))
                conn.execute(logs.insert().values(job_id=job_id, line=f"{_stamp()} cancel requested"))
            return job_dict(conn.execute(select(jobs).where(jobs.c.id == job_id)).one())

    def delete(self, job_id: int) -> str | None:
        """Delete a job and its log unless it runs; returns its state before, None when unknown."""
        with self._tx() as conn:
            row = conn.execute(select(jobs.c.state).where(jobs.c.id == job_id)).one_or_none()
            if row is None or row.state == "running":
                return None if row is None else row.state
            conn.execute(delete(logs).where(logs.c.job_id == job_id))
            conn.execute(delete(jobs).where(jobs.c.id == job_id))
            return row.state

    def read_log(self, job_id: int, since: int = 0) -> tuple[list[str], int]:
        """Log lines from index ``since`` (at most :data:`LOG_PAGE`) and the index after them."""
        since = max(0, since)
        with self._tx() as conn:
            rows = conn.execute(
                select(logs.c.line).where(logs.c.job_id == job_id).order_by(logs.c.id).offset(since).limit(LOG_PAGE)
            ).all()
        return [r.line for r in rows], since + len(rows)

    def log_length(self, job_id: int) -> int:
        with self._tx() as conn:
            return int(conn.execute(select(func.count()).select_from(logs).where(logs.c.job_id == job_id)).scalar())

    # -- workers ---------------------------------------------------------------------------------
    def claim(self, worker: str) -> dict | None:
        """Atomically take the oldest queued job for ``worker``; None when the queue is empty."""
        while True:
            with self._tx() as conn:
                query = select(jobs.c.id).where(jobs.c.state == "queued").order_by(jobs.c.id).limit(1)
                if self.is_postgres:
                    query = query.with_for_update(skip_locked=True)
                job_id = conn.execute(query).scalar()
                if job_id is None:
                    return None
                now = time.time()
                taken = conn.execute(
                    update(jobs)
                    .where(jobs.c.id == job_id, jobs.c.state == "queued")
                    .values(
                        state="running",
                        worker=worker[:200],
                        started=now,
                        heartbeat=now,
                        claims=jobs.c.claims + 1,
                        cancel_requested=False,
                    )
                )
                if taken.rowcount != 1:
                    continue  # another claimer won this row between the select and the update
                conn.execute(logs.insert().values(job_id=job_id, line=f"{_stamp()} claimed by worker {worker}"))
                row = conn.execute(select(jobs).where(jobs.c.id == job_id)).one()
                return {
                    "id": row.id,
                    "name": row.name,
                    "plan_yaml": row.plan_yaml,
                    "base_dir": row.base_dir,
                    "allow_hooks": json.loads(row.allow_hooks or "[]"),
                    "kind": row.kind or "plan",
                    "info": json.loads(row.info) if row.info else {},
                }

    def _owned(self, conn: Connection, job_id: int, worker: str | None) -> Any:
        """The job row when it runs on ``worker`` (any worker when None), else None."""
        row = conn.execute(select(jobs).where(jobs.c.id == job_id)).one_or_none()
        if row is None or row.state != "running" or (worker is not None and row.worker != worker):
            return None
        return row

    def heartbeat(self, job_id: int, worker: str | None = None, progress: dict | None = None) -> bool | None:
        """Record that the job's worker is alive (with its progress); returns whether it should
        stop (a cancel, or the job no longer being its own); None when the job is unknown."""
        with self._tx() as conn:
            row = self._owned(conn, job_id, worker)
            if row is None:
                exists = conn.execute(select(jobs.c.id).where(jobs.c.id == job_id)).scalar() is not None
                return True if exists else None
            values: dict[str, Any] = {"heartbeat": time.time()}
            for key in ("iteration", "niter", "error"):
                if progress and progress.get(key) is not None:
                    values[key] = progress[key]
            conn.execute(update(jobs).where(jobs.c.id == job_id).values(**values))
            return bool(row.cancel_requested)

    def append_log(self, job_id: int, lines: list[str]) -> bool:
        """Append ``lines`` to the job's log; False when the job is unknown."""
        with self._tx() as conn:
            if conn.execute(select(jobs.c.id).where(jobs.c.id == job_id)).scalar() is None:
                return False
            if lines:
                conn.execute(logs.insert(), [{"job_id": job_id, "line": line} for line in lines])
            return True

    def finish(
        self,
        job_id: int,
        state: str,
        reason: str | None,
        out_dir: str | None,
        worker: str | None = None,
        outputs: list[str] | None = None,
    ) -> dict | None:
        """End a running job as ``state`` (done, failed, cancelled; ``queued`` hands it back).

        None when the job does not run (on ``worker``): a worker that lost its job reports nothing.
        """
        with self._tx() as conn:
            row = self._owned(conn, job_id, worker)
            if row is None:
                return None
            values: dict[str, Any] = {"state": state, "reason": reason, "cancel_requested": False}
            if out_dir:
                values["out_dir"] = out_dir
            if outputs is not None:
                values["outputs"] = json.dumps(list(outputs))
            if state == "queued":
                values.update(worker=None, started=None, heartbeat=None, iteration=0)
            else:
                values["finished"] = time.time()
            conn.execute(update(jobs).where(jobs.c.id == job_id).values(**values))
            line = f"{_stamp()} {state}" + (f": {reason}" if reason else "")
            line += f" (outputs in {out_dir})" if out_dir else ""
            conn.execute(logs.insert().values(job_id=job_id, line=line))
            return job_dict(conn.execute(select(jobs).where(jobs.c.id == job_id)).one())

    def release(self, workers: list[str]) -> list[dict]:
        """Hand the running jobs of ``workers`` (stopped with the server) back to the queue."""
        with self._tx() as conn:
            rows = conn.execute(select(jobs.c.id).where(jobs.c.state == "running", jobs.c.worker.in_(workers))).all()
        released = []
        for row in rows:
            job = self.finish(row.id, "queued", "its worker stopped with the server", None)
            if job is not None:
                released.append(job)
        return released

    def requeue_lost(self, timeout_s: float) -> list[dict]:
        """Running jobs without a heartbeat for ``timeout_s``: back to the queue (cancelled when a
        cancel was asked, failed after :data:`MAX_CLAIMS` lost workers). Returns the changed jobs."""
        limit = time.time() - timeout_s
        changed = []
        with self._tx() as conn:
            query = select(jobs).where(jobs.c.state == "running", jobs.c.heartbeat < limit)
            if self.is_postgres:
                query = query.with_for_update(skip_locked=True)
            for row in conn.execute(query).all():
                lost = f"worker {row.worker} sent no heartbeat for {timeout_s:g} s"
                if row.cancel_requested:
                    values = {"state": "cancelled", "finished": time.time(), "reason": f"cancelled; {lost}"}
                elif row.claims >= MAX_CLAIMS:
                    values = {"state": "failed", "finished": time.time(), "reason": f"{lost} ({row.claims} times)"}
                else:
                    values = {"state": "queued", "worker": None, "started": None, "heartbeat": None, "iteration": 0}
                conn.execute(update(jobs).where(jobs.c.id == row.id, jobs.c.state == "running").values(**values))
                conn.execute(logs.insert().values(job_id=row.id, line=f"{_stamp()} {lost}: {values['state']}"))
                changed.append(job_dict(conn.execute(select(jobs).where(jobs.c.id == row.id)).one()))
        return changed


def _stamp() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")
