"""Fixtures every test package may use: a private PostgreSQL database for the storage suites."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

# The PostgreSQL server of CI and of the development machines (trust auth); PHASER_TEST_POSTGRES
# points elsewhere. The session works in a database of its own, dropped at the end.
POSTGRES_SERVER = os.environ.get("PHASER_TEST_POSTGRES", "host=127.0.0.1 port=5432 dbname=test user=postgres")


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """The SQLAlchemy URL of a fresh PostgreSQL database; skipped where no server answers."""
    psycopg = pytest.importorskip("psycopg", reason="PostgreSQL tests need psycopg (the `postgres` extra)")
    name = f"phaser_test_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect(POSTGRES_SERVER, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.skip(f"no PostgreSQL server answers at {POSTGRES_SERVER!r}: {str(exc).strip()[:120]}")
    user, host, port = admin.info.get_parameters().get("user", "postgres"), admin.info.host, admin.info.port
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield f"postgresql+psycopg://{user}@{host}:{port}/{name}"
    with psycopg.connect(POSTGRES_SERVER, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session", autouse=True)
def private_compilation_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Commands that enable JAX's persistent compilation cache write it under the session's tmp folder."""
    previous = os.environ.get("PHASER_JAX_CACHE")
    os.environ["PHASER_JAX_CACHE"] = str(tmp_path_factory.mktemp("jax_cache"))
    yield
    if previous is None:
        os.environ.pop("PHASER_JAX_CACHE", None)
    else:
        os.environ["PHASER_JAX_CACHE"] = previous
