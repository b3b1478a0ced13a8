"""Migration 0004: the two request booleans become ``run.requested``, on real rows."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text

from alembic import command
from app.db.migrations import alembic_config
from tests.support.services import PostgresServer

# (id, status, cancel_requested, pause_requested) -> (status, requested)
ROWS = {
    ("r_run_cancel", "running", True, False): ("running", "cancel"),
    ("r_run_both", "running", True, True): ("running", "cancel"),
    ("r_run_pause", "running", False, True): ("running", "pause"),
    ("r_run", "running", False, False): ("running", None),
    ("r_paused_cancel", "paused", True, False): ("cancelled", None),  # the old race
    ("r_queued_cancel", "queued", True, False): ("cancelled", None),  # queued forever
    ("r_queued", "queued", False, False): ("queued", None),
    ("r_done_stale", "succeeded", True, True): ("succeeded", None),
    ("r_cancelled_stale", "cancelled", True, False): ("cancelled", None),
}


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.db'}"
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    url = server.create_database(prefix="bp_migration")
    yield url
    server.drop_database(url)


def test_requests_are_carried_over_and_stranded_runs_cancelled(fresh_url: str) -> None:
    config = alembic_config(fresh_url)
    command.upgrade(config, "0003")
    engine = create_engine(fresh_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO network (id, owner, name, spec, input_size, output_size, "
                    "n_parameters, created_at) VALUES ('n', 'default', 'n', '{}', 1, 1, 2, "
                    "'2026-01-01 00:00:00')"
                )
            )
            for run_id, status, cancel, pause in ROWS:
                conn.execute(
                    text(
                        "INSERT INTO run (id, owner, status, network_id, config, epochs, epoch, "
                        "metrics, created_at, attempts, cancel_requested, pause_requested) "
                        "VALUES (:id, 'default', :status, 'n', '{}', 10, 1, '{}', "
                        "'2026-01-01 00:00:00', 1, :cancel, :pause)"
                    ),
                    {"id": run_id, "status": status, "cancel": cancel, "pause": pause},
                )
        command.upgrade(config, "head")
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT id, status, requested, stop_reason FROM run")).all()
            columns = {column["name"] for column in inspect(conn).get_columns("run")}
        found = {run_id: (status, requested) for run_id, status, requested, _ in rows}
        assert found == {key[0]: value for key, value in ROWS.items()}
        reasons = {run_id: reason for run_id, _, _, reason in rows}
        assert reasons["r_paused_cancel"] == reasons["r_queued_cancel"] == "cancelled"
        assert "cancel_requested" not in columns and "pause_requested" not in columns
        assert {"requested", "lease_supervisor"} <= columns

        command.downgrade(config, "0003")
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT id, cancel_requested, pause_requested FROM run WHERE status = 'running'"
                )
            ).all()
        assert {run_id: (bool(c), bool(p)) for run_id, c, p in rows} == {
            "r_run_cancel": (True, False),
            "r_run_both": (True, False),
            "r_run_pause": (False, True),
            "r_run": (False, False),
        }
    finally:
        engine.dispose()
