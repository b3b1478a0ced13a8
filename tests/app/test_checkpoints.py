"""A large blob's commit leaves the WAL checkpoint to a thread (app.db.checkpoints), on SQLite."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import event, text

from app.db.blob_io import insert_blob, read_blob
from app.db.checkpoints import AUTOCHECKPOINT_PAGES, thread_of
from app.db.database import Database
from app.db.models import DatasetArrays
from tests.support.rows import bare_dataset

BLOB_BYTES = 12 * 2**20
"""About 3,000 pages of 4 KiB: past the automatic checkpoint's 1,000."""


def _insert(db: Database, dataset_id: str, data: bytes) -> None:
    with db.writing() as session:
        session.add(bare_dataset(dataset_id, len(data)))
        session.flush()
        insert_blob(session, DatasetArrays, {"dataset_id": dataset_id}, "data", data)
        session.commit()


def _autocheckpoint(driver: Any) -> int:
    return int(driver.execute("PRAGMA wal_autocheckpoint").fetchone()[0])


def _committing_connections(db: Database) -> list[tuple[Any, int]]:
    """Each commit's driver connection and its ``wal_autocheckpoint`` just before COMMIT."""
    seen: list[tuple[Any, int]] = []

    @event.listens_for(db.reader, "commit")
    def _record(connection: Any) -> None:
        driver = connection.connection.driver_connection
        seen.append((driver, _autocheckpoint(driver)))

    return seen


def _wait_for(condition: Any, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the checkpoint thread did not run"
        time.sleep(0.01)


def test_a_blob_commits_without_checkpointing_and_a_thread_checkpoints_after(
    db_path: Path,
) -> None:
    db = Database(f"sqlite:///{db_path}")
    commits = _committing_connections(db)
    thread = thread_of(db.reader)
    assert thread is not None
    before = thread.completed
    data = np.random.default_rng(1).integers(0, 256, BLOB_BYTES, dtype=np.uint8).tobytes()
    size_before = db_path.stat().st_size
    _insert(db, "dataset_big", data)
    assert [pages for _, pages in commits] == [0]  # the commit itself checkpoints nothing
    _wait_for(lambda: thread.completed > before)
    assert db_path.stat().st_size >= size_before + BLOB_BYTES  # copied into the file
    with db.reader.connect() as connection:
        busy, frames, done = connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").one()
    assert busy == 0 and frames == done  # nothing left in the log
    assert _autocheckpoint(commits[0][0]) == AUTOCHECKPOINT_PAGES  # back to normal
    with db.reading() as session:
        stored = read_blob(session, DatasetArrays.data, DatasetArrays.dataset_id, "dataset_big")
    assert stored is not None and bytes(stored) == data
    db.dispose()


def test_other_writes_keep_automatic_checkpoints(db_path: Path) -> None:
    db = Database(f"sqlite:///{db_path}")
    thread = thread_of(db.reader)
    assert thread is not None
    commits = _committing_connections(db)
    with db.writing() as session:
        session.add(bare_dataset("dataset_row", 0))
        session.commit()
    assert [pages for _, pages in commits] == [AUTOCHECKPOINT_PAGES]
    assert thread.completed == 0
    db.dispose()


def test_a_rolled_back_blob_write_restores_automatic_checkpoints(db_path: Path) -> None:
    db = Database(f"sqlite:///{db_path}")
    with db.writing() as session:
        session.add(bare_dataset("dataset_gone", 10))
        session.flush()
        insert_blob(session, DatasetArrays, {"dataset_id": "dataset_gone"}, "data", b"x" * 10)
        driver = session.connection().connection.driver_connection
        session.rollback()
    assert _autocheckpoint(driver) == AUTOCHECKPOINT_PAGES
    with db.reading() as session:
        assert session.execute(text("SELECT count(*) FROM dataset")).scalar_one() == 0
    db.dispose()


def test_postgresql_has_no_checkpoint_thread(postgres_url: str) -> None:
    db = Database(postgres_url)
    assert thread_of(db.reader) is None
    db.dispose()
