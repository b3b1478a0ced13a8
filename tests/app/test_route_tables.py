"""FastAPI's route tables are built before serving, not by the first requests."""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import fastapi.routing
import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.edge.route_tables import build_route_tables
from app.main import create_app


@pytest.fixture
def database_url(db_path: Path) -> str:
    return f"sqlite:///{db_path}"


@pytest.fixture
def dependency_trees_built(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The path of every dependency tree FastAPI builds while the test runs."""
    built: list[str] = []
    original = fastapi.routing.get_dependant  # type: ignore[attr-defined]

    def counting(*args: Any, **kwargs: Any) -> Any:
        built.append(str(kwargs.get("path")))
        return original(*args, **kwargs)

    monkeypatch.setattr(fastapi.routing, "get_dependant", counting)
    yield built


def _first_requests(client: TestClient) -> None:
    assert client.get("/healthz").status_code == 200
    assert client.get("/v1/networks").status_code == 200
    assert client.get("/v1/runs", params={"limit": 1}).status_code == 200
    assert client.get("/v1/datasets/nonexistent").status_code == 404


def test_after_build_route_tables_no_request_builds_a_route(
    settings_for: Callable[..., Settings], dependency_trees_built: list[str]
) -> None:
    app = create_app(settings_for())
    assert build_route_tables(app) == 404
    assert "/healthz" in dependency_trees_built and "/v1/runs" in dependency_trees_built
    dependency_trees_built.clear()
    with TestClient(app) as client:
        _first_requests(client)
    assert dependency_trees_built == []


def test_without_it_the_first_request_builds_every_route_table(
    settings_for: Callable[..., Settings], dependency_trees_built: list[str]
) -> None:
    app = create_app(settings_for())
    dependency_trees_built.clear()
    with TestClient(app) as client:
        _first_requests(client)
    assert "/v1/runs" in dependency_trees_built  # built during the requests


def test_serve_builds_the_route_tables_of_the_app_it_serves(
    settings_for: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    import uvicorn

    import app.edge.route_tables as route_tables
    from app import cli

    served: list[Any] = []
    monkeypatch.setattr(cli, "get_settings", lambda: settings_for())
    monkeypatch.setattr(uvicorn.Server, "run", lambda self: served.append(self.config.app))
    monkeypatch.setattr(cli, "PRELOADED", ())
    monkeypatch.setattr(gc, "freeze", lambda: None)  # not this test process's heap
    monkeypatch.setattr(sys, "setswitchinterval", lambda interval: None)
    built: list[Any] = []
    original = route_tables.build_route_tables

    def recording(app: Any) -> int:
        built.append(app)
        return original(app)

    monkeypatch.setattr(route_tables, "build_route_tables", recording)
    assert cli._serve("127.0.0.1", 0) == 0
    assert built and served and built[0] is served[0]
