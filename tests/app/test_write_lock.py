"""SQLite's write lock: taken by fast tries (app.db.write_lock), and never held by a write
session past the endpoint (app.api.deps.WriteSession), on real database files."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import BackgroundTasks, FastAPI
from sqlalchemy import event, exc, text

from app.api.deps import WriteSession
from app.db import database as database_module
from app.db import write_lock
from app.db.database import Database

HELD_SECONDS = 0.3


def _hold_lock(path: Path, seconds: float, taken: threading.Event) -> threading.Thread:
    """Another connection takes the write lock for ``seconds`` (in a thread)."""

    def hold() -> None:
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        taken.set()
        time.sleep(seconds)
        other.execute("COMMIT")
        other.close()

    thread = threading.Thread(target=hold)
    thread.start()
    return thread


def _busy_timeout(session: Any) -> int:
    return int(session.execute(text("PRAGMA busy_timeout")).scalar_one())


def test_a_waiting_writer_begins_once_the_lock_is_free_with_its_busy_timeout_back(
    db_path: Path,
) -> None:
    db = Database(f"sqlite:///{db_path}")
    statements: list[str] = []

    @event.listens_for(db.reader, "connect")
    def _trace(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.set_trace_callback(statements.append)

    taken = threading.Event()
    holder = _hold_lock(db_path, HELD_SECONDS, taken)
    taken.wait(5)
    started = time.monotonic()
    with db.writing() as session:
        session.execute(text("CREATE TABLE probe (x INTEGER)"))  # the lock is ours
        waited = time.monotonic() - started
        assert _busy_timeout(session) == database_module.BUSY_TIMEOUT_MS
        session.commit()
    holder.join()
    assert waited >= HELD_SECONDS * 0.9  # it waited for the holder, not around it
    # It tried again and again with no busy timeout (at most 1 ms apart: 300 over the
    # hold on an idle machine), not once inside SQLite's sleeping handler.
    tries = statements.count("BEGIN IMMEDIATE")
    assert tries >= 20, statements[:40]
    assert "PRAGMA busy_timeout = 0" in statements
    db.dispose()


def test_writers_of_one_process_take_turns_and_each_begins(db_path: Path) -> None:
    db = Database(f"sqlite:///{db_path}")
    with db.writing() as session:
        session.execute(text("CREATE TABLE counter (n INTEGER)"))
        session.execute(text("INSERT INTO counter VALUES (0)"))
        session.commit()
    taken = threading.Event()
    holder = _hold_lock(db_path, HELD_SECONDS, taken)
    taken.wait(5)

    def increment() -> None:
        with db.writing() as session:  # read, then write: only exact under the lock
            n = session.execute(text("SELECT n FROM counter")).scalar_one()
            session.execute(text("UPDATE counter SET n = :n"), {"n": n + 1})
            session.commit()

    writers = [threading.Thread(target=increment) for _ in range(8)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(30)
    holder.join()
    with db.reading() as session:
        assert session.execute(text("SELECT n FROM counter")).scalar_one() == 8
    db.dispose()


def test_past_the_fast_tries_sqlites_handler_waits_and_sqlalchemy_raises(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(write_lock, "FAST_SECONDS", 0.05)
    monkeypatch.setattr(database_module, "BUSY_TIMEOUT_MS", 200)
    db = Database(f"sqlite:///{db_path}")
    taken = threading.Event()
    holder = _hold_lock(db_path, 2.0, taken)
    taken.wait(5)
    started = time.monotonic()
    with pytest.raises(exc.OperationalError, match="database is locked"), db.writing() as session:
        session.execute(text("SELECT 1"))
    waited = time.monotonic() - started
    assert 0.2 <= waited < 1.5  # the fast tries, then the connection's busy timeout
    holder.join()
    with db.writing() as session:  # the connection is usable again, its timeout restored
        assert _busy_timeout(session) == 200
    db.dispose()


@pytest.mark.anyio
async def test_a_write_session_ends_before_the_response_and_its_background_tasks(
    db_path: Path,
) -> None:
    """A handler that reads after its commit begins another IMMEDIATE transaction: the
    session must be closed before the background tasks run, or they find the lock held."""
    db = Database(f"sqlite:///{db_path}")
    app = FastAPI()
    app.state.db = db
    seen: list[str] = []

    def try_to_write() -> None:
        other = sqlite3.connect(db_path, isolation_level=None, timeout=0)
        try:
            other.execute("BEGIN IMMEDIATE")
            other.execute("ROLLBACK")
            seen.append("free")
        except sqlite3.OperationalError as error:
            seen.append(str(error))
        finally:
            other.close()

    @app.post("/write")
    def write(session: WriteSession, background: BackgroundTasks) -> dict[str, int]:
        session.execute(text("CREATE TABLE IF NOT EXISTS t (x INTEGER)"))
        session.commit()
        count = session.execute(text("SELECT count(*) FROM t")).scalar_one()  # re-begins
        background.add_task(try_to_write)
        return {"count": int(count)}

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.post("/write")
    assert response.json() == {"count": 0}
    assert seen == ["free"]
    db.dispose()
