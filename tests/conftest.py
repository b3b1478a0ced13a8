"""Fixtures shared by tests/app and tests/integration.

Every test gets a fresh database: a template is migrated once per session
(through the real Alembic migrations) and copied per test — a SQLite file, or a
PostgreSQL database created ``TEMPLATE`` the migrated one (tests/app runs every
test on both; see tests/app/conftest.py).

PostgreSQL and Redis come from ``BACKPROP_TEST_POSTGRES_URL`` /
``BACKPROP_TEST_REDIS_URL`` (CI), else from private servers started for the
session when the binaries exist; otherwise the tests that need them are skipped
with the reason, and ``BACKPROP_REQUIRE_SERVICES=1`` turns that skip into a failure.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.db.migrations import migrate
from app.main import create_app
from tests.support.services import (
    PostgresServer,
    RedisServer,
    ServiceUnavailableError,
    services_required,
    start_postgres,
    start_redis,
)

XOR_X = [[0, 0], [0, 1], [1, 0], [1, 1]]
XOR_Y = [[0], [1], [1], [0]]
XOR_NETWORK: dict[str, Any] = {
    "name": "xor",
    "input_size": 2,
    "layers": [
        {"units": 3, "activation": "sigmoid", "bias": True},
        {"units": 1, "activation": "sigmoid", "bias": True},
    ],
    "init": {"scheme": "xavier_uniform", "seed": 7},
}
TERMINAL = ("succeeded", "failed", "cancelled")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The files of slow tests first (stable otherwise): ``make test`` hands whole files
    to its two processes in this order, so the long ones start at once and the short
    ones fill in around them, instead of one long file running alone at the end."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)


@pytest.fixture(scope="session")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database file migrated to head once per session."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    migrate(f"sqlite:///{path}")
    return path


@pytest.fixture
def db_path(tmp_path: Path, template_db: Path) -> Path:
    """A fresh, migrated database file for this test."""
    path = tmp_path / "backprop.db"
    shutil.copyfile(template_db, path)
    return path


T = TypeVar("T", PostgresServer, RedisServer)


def service_unavailable(reason: str) -> None:
    """Skip the test, or fail it when ``BACKPROP_REQUIRE_SERVICES`` is set (CI)."""
    if services_required():
        pytest.fail(f"{reason} (BACKPROP_REQUIRE_SERVICES is set)")
    pytest.skip(reason)


@contextmanager
def started_server(kind: str, start: Callable[[], T]) -> Iterator[T]:
    """Run ``start()`` (a server from tests/support/services.py) and stop it afterwards;
    skip, or fail in CI, when it cannot be started."""
    try:
        server = start()
    except ServiceUnavailableError as exc:
        service_unavailable(f"{kind} unavailable: {exc}")
        raise  # unreachable: skip/fail raise
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server for this session (skips, or fails in CI, when unavailable)."""
    with started_server("PostgreSQL", start_postgres) as server:
        yield server


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A Redis server for this session (skips, or fails in CI, when unavailable)."""
    with started_server("Redis", start_redis) as server:
        yield server


@pytest.fixture(scope="session")
def postgres_template(postgres_server: PostgresServer) -> str:
    """The name of a PostgreSQL database migrated to head once per session."""
    url = postgres_server.create_database(prefix="bp_template")
    migrate(url)
    return url.rsplit("/", 1)[-1]


@pytest.fixture
def postgres_url(postgres_server: PostgresServer, postgres_template: str) -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test (dropped afterwards)."""
    url = postgres_server.create_database(template=postgres_template)
    yield url
    postgres_server.drop_database(url)


@pytest.fixture
def database_url(db_path: Path) -> str:
    """This test's database (SQLite here; tests/app also runs on PostgreSQL)."""
    return f"sqlite:///{db_path}"


@pytest.fixture
def settings_for(database_url: str) -> Callable[..., Settings]:
    """Build Settings for this test's database with overrides."""

    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "database_url": database_url,
            "workers": 0,
            "poll_seconds": 0.2,
            "flush_seconds": 0.1,
            "lease_seconds": 5.0,
        }
        values.update(overrides)
        return Settings(**values)

    return build


@pytest.fixture
def make_client(settings_for: Callable[..., Settings]) -> Callable[..., Any]:
    """``with make_client(workers=1) as client:`` runs the app's lifespan."""

    @contextmanager
    def build(**overrides: Any) -> Iterator[TestClient]:
        app = create_app(settings_for(**overrides))
        with TestClient(app) as client:
            yield client

    return build


@pytest.fixture
def client(make_client: Callable[..., Any]) -> Iterator[TestClient]:
    """The app without workers: runs stay queued."""
    with make_client() as test_client:
        yield test_client


@pytest.fixture
def live_client(make_client: Callable[..., Any]) -> Iterator[TestClient]:
    """The app with one real worker process."""
    with make_client(workers=1) as test_client:
        yield test_client


def create_xor(client: Any, **network: Any) -> tuple[str, str]:
    """Create the XOR network and dataset; return their ids."""
    response = client.post("/v1/networks", json={**XOR_NETWORK, **network})
    assert response.status_code == 201, response.text
    network_id = response.json()["id"]
    response = client.post("/v1/datasets", json={"name": "xor", "X": XOR_X, "y": XOR_Y})
    assert response.status_code == 201, response.text
    return network_id, response.json()["id"]


def run_body(network_id: str, dataset_id: str, **config: Any) -> dict[str, Any]:
    """A run request for the XOR tutorial (sgd, lr 0.5, momentum 0.9)."""
    body: dict[str, Any] = {
        "network_id": network_id,
        "dataset_id": dataset_id,
        "loss": "mse",
        "optimizer": {"name": "sgd", "learning_rate": 0.5, "momentum": 0.9},
        "epochs": 2000,
        "seed": 1,
    }
    body.update(config)
    return body


def wait_for(
    client: Any, run_id: str, predicate: Callable[[dict[str, Any]], bool], timeout: float = 60.0
) -> dict[str, Any]:
    """Poll the run until ``predicate(run)`` holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        response = client.get(f"/v1/runs/{run_id}")
        assert response.status_code == 200, response.text
        run: dict[str, Any] = response.json()
        if predicate(run):
            return run
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for run {run_id}: {run}")
        time.sleep(0.05)


def wait_terminal(client: Any, run_id: str, timeout: float = 60.0) -> dict[str, Any]:
    """Poll until the run is succeeded, failed or cancelled."""
    return wait_for(client, run_id, lambda run: run["status"] in TERMINAL, timeout)
