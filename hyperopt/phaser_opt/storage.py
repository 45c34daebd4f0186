"""Study storage: an SQLAlchemy URL opened as Optuna's RDB storage, with SQLite made safe to share.

SQLite is opened in WAL mode with a busy timeout, so a dashboard reading the file while a study
writes it (or a few local workers) never meets "database is locked"; any other URL (PostgreSQL)
goes to SQLAlchemy as it is. Error messages show the URL with its password masked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

# Seconds a writer waits for SQLite's lock before giving up (one trial's commit takes milliseconds).
SQLITE_BUSY_TIMEOUT_S = 60.0


class StorageError(RuntimeError):
    """A storage URL that cannot be opened; the message names the (masked) URL and what to do."""


def masked_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for messages and logs)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def sqlite_url(path: str | Path) -> str:
    """The SQLAlchemy URL of the SQLite file ``path`` (made absolute)."""
    return f"sqlite:///{Path(path).resolve()}"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the writer, nor it them
    cursor.execute("PRAGMA synchronous=NORMAL")  # durable at each checkpoint; safe with WAL
    cursor.close()


def check_url(url: str) -> bool:
    """Parse ``url`` without connecting; returns True for SQLite. Raises :class:`StorageError`
    for a malformed URL or an SQLite file whose folder does not exist."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StorageError(
            f"storage {url!r}: not a database URL (e.g. sqlite:///study.db or postgresql+psycopg://user@host/db)"
        ) from None
    if parsed.get_backend_name() != "sqlite":
        return False
    database = parsed.database or ""
    if database and database != ":memory:" and not Path(database).parent.is_dir():
        raise StorageError(f"storage {masked_url(url)}: the folder {Path(database).parent} does not exist")
    return True


def open_storage(
    url: str, heartbeat_interval: int | None = None, grace_period: int | None = None, **callbacks: Any
) -> optuna.storages.RDBStorage:
    """Optuna's RDB storage for ``url``; SQLite gets WAL mode and a busy timeout.

    Raises :class:`StorageError` naming the masked URL when the database cannot be opened (a
    missing folder, a server that does not answer, wrong credentials, a schema from a newer Optuna).
    """
    is_sqlite = check_url(url)
    engine_kwargs: dict[str, Any] = {}
    if is_sqlite:
        engine_kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_S}
    else:
        engine_kwargs["pool_pre_ping"] = True  # a connection dropped by the server is replaced, not used
    try:
        storage = optuna.storages.RDBStorage(
            url,
            engine_kwargs=engine_kwargs,
            heartbeat_interval=heartbeat_interval,
            grace_period=grace_period,
            **callbacks,
        )
    except (SQLAlchemyError, RuntimeError, ImportError, ModuleNotFoundError) as exc:
        raise StorageError(
            f"storage {masked_url(url)}: cannot open it ({mask_secrets(_first_line(exc), url)}); {_advice(exc)}"
        ) from None
    if is_sqlite:
        event.listen(storage.engine, "connect", _sqlite_pragmas)
        storage.engine.dispose()  # reconnect so every connection, the first included, is in WAL mode
    return storage


def mask_secrets(text: str, url: str) -> str:
    """``text`` without the URL's password."""
    try:
        password = make_url(url).password
    except ArgumentError:
        return text
    return text.replace(password, "***") if password else text


def _advice(exc: BaseException) -> str:
    """What to do about a storage that cannot be opened."""
    text = str(exc).lower()
    if isinstance(exc, (ImportError, ModuleNotFoundError)):
        return "install the database driver, e.g. pip install 'phaser[postgres]'"
    if "authentication" in text or "access denied" in text or ("role" in text and "does not exist" in text):
        return "check the user name and password in the URL"
    if "does not exist" in text and "database" in text:
        return "create the database first (e.g. createdb), or fix its name in the URL"
    if "refused" in text or "could not translate host" in text or "timeout" in text or "timed out" in text:
        return "is the database server running and reachable at that host and port?"
    if "schema" in text or "version" in text or "alembic" in text or "upgrade" in text:
        return (
            "the database was written by another Optuna version: "
            "run `optuna storage upgrade --storage URL` or use a new database"
        )
    return "check the URL"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
