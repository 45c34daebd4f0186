"""Shared set-up of the server tests: job databases (SQLite and PostgreSQL), a root folder with a
tiny dataset and plan, apps under Starlette's TestClient, and a real server on a loopback port."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import simulated_file

TOKEN = "test-token-123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

# The tiny plans the tests queue: an 8x8 scan of 32x32 patterns (data.h5 beside the plan).
TINY_PLAN = """\
name: tiny
backend: numpy
seed: 0
raw_data: {type: manual, path: data.h5}
init:
  probe: {type: focused, conv_angle: 20.0, defocus: 100.0}
  scan: {type: raster}
engines:
- type: conventional
  niter: NITER
  grouping: 16
  noise_model: {type: amplitude, eps: 0.1}
  solver: {type: epie, beta_object: 0.3, beta_probe: 0.3}
"""
GRADIENT_PLAN = """\
name: tiny_gradient
backend: jax
dtype: float32
seed: 0
raw_data: {type: manual, path: data.h5}
init:
  probe: {type: focused, conv_angle: 20.0, defocus: 100.0}
  scan: {type: raster}
engines:
- type: gradient
  niter: 3
  grouping: 32
  noise_model: {type: poisson, eps: 0.1}
  solvers:
    object: {type: adam, learning_rate: 0.05}
    probe: {type: adam, learning_rate: 0.01}
  update_probe: {after: 1}
  save_options:
    images: [probe, probe_recip, object_phase_stack]
"""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Starlette 1.x prefers httpx2 for its TestClient; httpx works and is what is installed
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).is_relative_to(here):
            item.add_marker(pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`"))


def tiny_plan(niter: int = 3) -> str:
    return TINY_PLAN.replace("NITER", str(niter))


def _drop_tables(url: str) -> None:
    from sqlalchemy import create_engine

    from phaser.server.store import metadata

    engine = create_engine(url)
    metadata.drop_all(engine)
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Each database a queue may live in: an SQLite file, and PostgreSQL (tables dropped after each test)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'jobs.db'}"
        return
    url = request.getfixturevalue("postgres_database")
    _drop_tables(url)
    yield url
    _drop_tables(url)


@pytest.fixture
def store(db_url: str) -> Iterator[Any]:
    from phaser.server.store import JobStore

    job_store = JobStore(db_url)
    yield job_store
    job_store.close()


@pytest.fixture(scope="session")
def dataset_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A root folder holding ``data.h5`` (8x8 scan, 32x32 patterns) and ``plans/tiny.yaml``."""
    root = tmp_path_factory.mktemp("root")
    simulated_file(root / "data.h5")
    (root / "plans").mkdir()
    (root / "plans" / "tiny.yaml").write_text(tiny_plan().replace("data.h5", "../data.h5"))
    return root


@pytest.fixture
def make_client(tmp_path: Path, dataset_root: Path) -> Iterator[Any]:
    """``make_client(**config)``: a started TestClient over an app with an SQLite queue in tmp_path."""
    from starlette.testclient import TestClient

    from phaser.server.app import ServerConfig, create_app

    clients = []

    def make(**fields: Any) -> Any:
        fields.setdefault("db_url", f"sqlite:///{tmp_path / 'jobs.db'}")
        fields.setdefault("roots", [dataset_root])
        client = TestClient(create_app(ServerConfig(**fields)))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """A real uvicorn server in a thread on a free loopback port."""

    def __init__(self, config: Any):
        import uvicorn

        from phaser.server.app import create_app

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.app = create_app(config)
        self.server = uvicorn.Server(
            uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning", ws_max_size=65536)
        )
        config.on_shutdown = lambda: setattr(self.server, "should_exit", True)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def wait_for(predicate: Any, timeout_s: float = 30.0, every_s: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something true; fails the test after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {predicate}")
