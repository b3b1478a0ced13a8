"""Take SQLite's write lock (``BEGIN IMMEDIATE``) without SQLite's sleeping busy handler.

A connection that finds the database locked waits in SQLite's busy handler, which
sleeps 1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50 and then 100 ms between tries. Write
transactions here take milliseconds, so a writer that has waited a few tries sleeps
far past the moment the lock was free, and writers that arrive meanwhile take it
first: under a burst of 200 ``POST /v1/runs`` from 16 clients a create waited up to
1.3 s, and the two workers' claims and finishes queued behind it, idle.

:func:`begin_immediate` instead

- lets one thread of a process at a time try for the lock (the :class:`WriteGate`):
  the others wait on a Python lock, in arrival order, without polling;
- tries with the busy timeout off, sleeping :data:`FIRST_SLEEP_SECONDS`, doubling up
  to :data:`LONGEST_SLEEP_SECONDS`, for at most :data:`FAST_SECONDS`;
- then, or on any error but "locked", leaves it to SQLite's own handler and
  SQLAlchemy (the connection's busy timeout, the usual wrapped errors).

The gate is held only while trying, never during the transaction, so no code path
can keep it: a transaction that never ends holds SQLite's lock, as before, not this one.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from typing import Any

from sqlalchemy.engine import Connection

FIRST_SLEEP_SECONDS = 0.0001
LONGEST_SLEEP_SECONDS = 0.001
FAST_SECONDS = 2.0
"""How long the fast tries go on before SQLite's busy handler takes over."""


class WriteGate:
    """The process's turn to try for one database's write lock (one per engine)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def begin_immediate(self, conn: Connection, busy_timeout_ms: int) -> None:
        """Emit ``BEGIN IMMEDIATE`` on ``conn``, whose driver connection has
        ``busy_timeout_ms`` set (restored before this returns or raises)."""
        deadline = time.monotonic() + FAST_SECONDS
        if self._lock.acquire(timeout=FAST_SECONDS):
            try:
                if _try_fast(conn.connection.driver_connection, deadline, busy_timeout_ms):
                    return
            finally:
                self._lock.release()
        conn.exec_driver_sql("BEGIN IMMEDIATE")  # SQLite's handler, SQLAlchemy's errors


def _locked(error: sqlite3.OperationalError) -> bool:
    return getattr(error, "sqlite_errorcode", None) == sqlite3.SQLITE_BUSY


def _try_fast(driver: Any, deadline: float, busy_timeout_ms: int) -> bool:
    """Try ``BEGIN IMMEDIATE`` until ``deadline`` with no busy timeout; True once it began."""
    sleep = FIRST_SLEEP_SECONDS
    driver.execute("PRAGMA busy_timeout = 0")
    try:
        while True:
            try:
                driver.execute("BEGIN IMMEDIATE")
                return True
            except sqlite3.OperationalError as error:
                if not _locked(error) or time.monotonic() + sleep > deadline:
                    return False
            time.sleep(sleep)
            sleep = min(2 * sleep, LONGEST_SLEEP_SECONDS)
    finally:
        # A broken connection: its next statement fails, and SQLAlchemy wraps that.
        with contextlib.suppress(sqlite3.Error):
            driver.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
