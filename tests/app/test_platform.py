"""Migrations, SQLite configuration, offline docs, health, API keys, schema examples."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlmodel import SQLModel

import app.db.models  # noqa: F401
from app.db.database import Database
from app.db.migrations import migrate


def test_migrations_match_models(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    migrate(url)
    db = Database(url)
    try:
        with db.reader.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    finally:
        db.dispose()
    assert diff == []


def test_migrate_is_idempotent(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'twice.db'}"
    migrate(url)
    migrate(url)


def test_sqlite_pragmas(db_path: Path) -> None:
    db = Database(f"sqlite:///{db_path}")
    try:
        with db.reader.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
            assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 30_000
    finally:
        db.dispose()


def test_write_transactions_begin_immediate(db_path: Path) -> None:
    """A second writer waits for the first (busy timeout) instead of failing."""
    db = Database(f"sqlite:///{db_path}")
    order: list[str] = []
    try:
        with db.writer.connect() as first:
            first.execute(text("SELECT 1"))  # BEGIN IMMEDIATE: holds the write lock now
            assert first.in_transaction()

            def second_writer() -> None:
                with db.writer.connect() as second:
                    second.execute(text("SELECT 1"))
                    order.append("second")
                    second.commit()

            thread = threading.Thread(target=second_writer)
            thread.start()
            time.sleep(0.3)
            order.append("first")
            with db.reader.connect() as reader:  # readers are never blocked
                assert reader.execute(text("SELECT count(*) FROM run")).scalar() == 0
            first.commit()
            thread.join(10)
        assert order == ["first", "second"]
    finally:
        db.dispose()


def test_healthz(client: Any) -> None:
    assert client.get("/healthz").json() == {"status": "ok", "database": "ok"}


def test_docs_are_served_offline(client: Any) -> None:
    for page in ("/docs", "/redoc"):
        html = client.get(page).text
        assert "cdn.jsdelivr" not in html and "/static-offline-docs/" in html
    assert client.get("/static-offline-docs/swagger-ui-bundle.js").status_code == 200
    assert client.get("/static-offline-docs/swagger-ui.css").status_code == 200
    assert client.get("/static-offline-docs/redoc.standalone.js").status_code == 200


def test_every_request_body_has_an_example(client: Any) -> None:
    schema = client.get("/openapi.json").json()
    bodies = 0
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            content = operation.get("requestBody", {}).get("content", {})
            if "application/json" not in content:
                continue
            bodies += 1
            ref = content["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
            component = schema["components"]["schemas"][ref]
            assert component.get("examples"), f"{method} {path}: {ref} has no example"
    assert bodies == 10  # issue 13 added PATCH of runs, networks and datasets, evaluate, sweeps


def test_examples_run_the_xor_walkthrough(client: Any) -> None:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    network = client.post("/v1/networks", json=schemas["NetworkCreate"]["examples"][0])
    dataset = client.post("/v1/datasets", json=schemas["DatasetCreate"]["examples"][0])
    body = dict(schemas["RunCreate"]["examples"][0])
    body.update(network_id=network.json()["id"], dataset_id=dataset.json()["id"])
    assert client.post("/v1/runs", json=body).status_code == 202


def test_api_keys(make_client: Any) -> None:
    with make_client(api_keys="alpha, beta") as client:
        assert client.get("/v1/networks").status_code == 401
        wrong = client.get("/v1/networks", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
        for key in ("alpha", "beta"):
            ok = client.get("/v1/networks", headers={"Authorization": f"Bearer {key}"})
            assert ok.status_code == 200
        assert client.get("/healthz").status_code == 200
        assert client.get("/docs").status_code == 200
