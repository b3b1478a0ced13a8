"""Migration 0005 on a database with data, and what run creation then fills in lazily.

Rows are made at the head revision, the database is downgraded to 0003 (dropping
the summaries and the storage accounting) and upgraded again, so the upgrade runs
on datasets and runs that have neither.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import text
from sqlmodel import select

from alembic import command
from app.db.database import Database
from app.db.migrations import alembic_config
from app.db.models import DEFAULT_OWNER, Dataset, DatasetArrays, DatasetSummary, Run, RunStorage
from app.services import storage
from app.services.history import make_chunk
from tests.conftest import create_xor, run_body


def _legacy(database_url: str) -> None:
    """Back to 0003 and up again: the new tables and column are made afresh."""
    config = alembic_config(database_url)
    command.downgrade(config, "0003")
    db = Database(database_url)
    try:
        with db.reading() as session:
            tables = session.execute(text("SELECT * FROM alembic_version")).scalar()
            assert tables == "0003"
    finally:
        db.dispose()
    command.upgrade(config, "head")


def test_upgrade_charges_existing_data_and_run_creation_settles_it(
    make_client: Callable[..., Any], database_url: str
) -> None:
    with make_client() as client:
        network_id, dataset_id = create_xor(client)
        labels = client.post("/v1/datasets", json={"name": "l", "X": [[0, 0], [1, 1]], "y": [0, 1]})
        labels_id = labels.json()["id"]
        body = run_body(network_id, dataset_id, epochs=50)
        finished_id = client.post("/v1/runs", json=body).json()["id"]
        queued_id = client.post("/v1/runs", json=body).json()["id"]
        db: Database = client.app.state.db  # type: ignore[attr-defined]
        with db.writing() as session:  # the first run "trained": a stored history
            chunk = make_chunk(
                finished_id, {"epoch": [1, 2], "loss": [0.5, 0.4], "val_loss": [None] * 2}
            )
            assert chunk is not None
            session.add(chunk)
            run = session.get(Run, finished_id)
            assert run is not None
            run.status = "succeeded"
            session.add(run)
            session.commit()
            history_bytes = len(chunk.data)

    _legacy(database_url)

    db = Database(database_url)
    try:
        with db.reading() as session:
            blobs = {row.dataset_id: len(row.data) for row in session.exec(select(DatasetArrays))}
            charged = {row.id: row.stored_bytes for row in session.exec(select(Dataset))}
            # One-target datasets are charged their arrays plus the most label records take.
            assert charged == {key: size + 16 * 4 + 256 for key, size in blobs.items()} | {
                labels_id: blobs[labels_id] + 16 * 2 + 256
            }
            assert session.exec(select(DatasetSummary)).all() == []
            rows = {row.run_id: row for row in session.exec(select(RunStorage))}
            assert set(rows) == {finished_id, queued_id}
            assert all(r.reserved_bytes is None and r.stored_bytes is None for r in rows.values())
    finally:
        db.dispose()

    with make_client(storage_quota_bytes=10**9) as client:
        created = client.post("/v1/runs", json=run_body(network_id, labels_id, epochs=50))
        assert created.status_code == 202, created.text
        db = client.app.state.db  # type: ignore[attr-defined]
        with db.reading() as session:
            summary = session.get(DatasetSummary, labels_id)
            assert summary is not None and summary.label_records is not None
            labels_row = session.get(Dataset, labels_id)
            assert labels_row is not None
            assert labels_row.stored_bytes == blobs[labels_id] + len(summary.label_records)
            rows = {row.run_id: row for row in session.exec(select(RunStorage))}
            assert rows[finished_id].stored_bytes == history_bytes
            assert rows[queued_id].stored_bytes is None
            assert rows[queued_id].reserved_bytes == rows[created.json()["id"]].reserved_bytes
            used = storage.usage(session=session, owner=DEFAULT_OWNER)
        assert used.runs_stored == history_bytes
        assert used.runs_reserved == 2 * rows[queued_id].reserved_bytes
