"""Checkpoint SQLite's write-ahead log in a thread of its own after a large write.

In WAL mode the transaction that pushes the log past ``wal_autocheckpoint`` pages
(1,000 by default) copies the whole log back into the database file as part of its
``COMMIT``. After a 75 MB dataset that copy was half of the upload's time on the
server (the request waited for it, though the data was already durable in the log),
and a later small commit could be the one that paid for it.

A transaction that writes a large blob (:func:`app.db.blob_io.insert_blob`) calls
:func:`defer_checkpoint`: its connection commits with automatic checkpoints off, and
when the pool takes the connection back they are switched on again and the
engine's :class:`CheckpointThread` runs a ``PASSIVE`` checkpoint (it never waits for
readers or writers, and SQLite lets only one checkpoint run at a time: an automatic
one that starts meanwhile finds it running and returns). Nothing is less durable:
a committed transaction is in the log, and whatever is not checkpointed yet is
checkpointed by the next checkpoint, or when the last connection closes.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from sqlalchemy import Engine, event
from sqlmodel import Session

logger = logging.getLogger(__name__)

AUTOCHECKPOINT_PAGES = 1000
"""SQLite's default ``wal_autocheckpoint``, restored after a deferred commit."""
IDLE_SECONDS = 30.0
"""A checkpoint thread with nothing to do for this long exits (a later write starts another)."""
_DEFERRED = "backprop_checkpoint_deferred"
_THREAD = "_backprop_checkpoints"


def defer_checkpoint(session: Session) -> None:
    """Commit the session's SQLite transaction without an automatic checkpoint, and
    checkpoint in the background once its connection is back in the pool."""
    fairy: Any = session.connection().connection
    fairy.info[_DEFERRED] = True
    fairy.driver_connection.execute("PRAGMA wal_autocheckpoint = 0")


class CheckpointThread:
    """Runs ``PRAGMA wal_checkpoint(PASSIVE)`` on an engine when woken.

    Parameters
    ----------
    engine : Engine
        A SQLite engine whose connections run in autocommit mode (no open
        transaction, which a checkpoint needs).
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._wanted = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.completed = 0
        """Checkpoints run (for tests)."""

    def wake(self) -> None:
        """Ask for a checkpoint soon (starts the thread when none is running)."""
        self._wanted.set()
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="sqlite-checkpoint", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while self._wanted.wait(IDLE_SECONDS):
            self._wanted.clear()
            try:
                self.checkpoint()
            except Exception as error:  # the next checkpoint, or closing, does it instead
                logger.warning("WAL checkpoint failed (%s); it is retried later", error)
        with self._lock:
            self._thread = None
        if self._wanted.is_set():  # woken while exiting
            self.wake()

    def checkpoint(self) -> tuple[int, int, int]:
        """Run one passive checkpoint: (busy, log frames, frames checkpointed)."""
        raw = self.engine.raw_connection()
        driver: Any = raw.driver_connection
        try:
            row = driver.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        finally:
            raw.close()
        busy, frames, done = (int(value) for value in row)
        self.completed += 1
        logger.debug("WAL checkpoint: %d of %d frames (busy %d)", done, frames, busy)
        return busy, frames, done


def install(engine: Engine) -> CheckpointThread:
    """Give a SQLite ``engine`` the checkpoint thread that deferred commits wake
    (:func:`thread_of` finds it)."""
    thread = CheckpointThread(engine)
    setattr(engine, _THREAD, thread)

    @event.listens_for(engine, "checkin")
    def _on_checkin(dbapi_connection: Any, record: Any) -> None:
        if not record.info.pop(_DEFERRED, False):
            return
        if dbapi_connection is not None:
            dbapi_connection.execute(f"PRAGMA wal_autocheckpoint = {AUTOCHECKPOINT_PAGES}")
        thread.wake()

    return thread


def thread_of(engine: Engine) -> CheckpointThread | None:
    """The checkpoint thread :func:`install` gave ``engine``, or None (not SQLite)."""
    thread: CheckpointThread | None = getattr(engine, _THREAD, None)
    return thread
