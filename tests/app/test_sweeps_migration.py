"""Migration 0010 (sweeps) downgrades to 0009 and upgrades again, with rows in place."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text

from alembic import command
from app.db.migrations import alembic_config
from tests.support.services import PostgresServer

SWEEP_TABLES = {"sweep", "sweep_tag", "sweep_rung"}
RUN_COLUMNS = {"sweep_trial", "pause_at_epoch"}


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'sweeps.db'}"
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    url = server.create_database(prefix="bp_sweeps_migration")
    yield url
    server.drop_database(url)


def _schema(url: str) -> tuple[set[str], set[str], set[str]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            inspector = inspect(conn)
            tables = set(inspector.get_table_names())
            columns = {column["name"] for column in inspector.get_columns("run")}
            indexes = {index["name"] or "" for index in inspector.get_indexes("run")}
    finally:
        engine.dispose()
    return tables, columns, indexes


def test_0010_round_trip_keeps_runs(fresh_url: str) -> None:
    config = alembic_config(fresh_url)
    command.upgrade(config, "head")
    tables, columns, indexes = _schema(fresh_url)
    assert tables >= SWEEP_TABLES and columns >= RUN_COLUMNS and "ux_run_sweep_trial" in indexes
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
            conn.execute(
                text(
                    "INSERT INTO run (id, owner, status, network_id, config, epochs, epoch, "
                    "metrics, created_at, attempts, sweep_id, sweep_trial, pause_at_epoch) "
                    "VALUES ('r', 'default', 'queued', 'n', '{}', 10, 0, '{}', "
                    "'2026-01-01 00:00:00', 0, 's', 0, 3)"
                )
            )
        command.downgrade(config, "0009")
        tables, columns, indexes = _schema(fresh_url)
        assert not SWEEP_TABLES & tables and not RUN_COLUMNS & columns
        assert "ux_run_sweep_trial" not in indexes
        command.upgrade(config, "head")
        tables, columns, _ = _schema(fresh_url)
        assert tables >= SWEEP_TABLES and columns >= RUN_COLUMNS
        with engine.connect() as conn:
            row = conn.execute(text("SELECT sweep_id, sweep_trial, pause_at_epoch FROM run")).one()
        assert tuple(row) == ("s", None, None)  # the run survived; the new columns start null
    finally:
        engine.dispose()
