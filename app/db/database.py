"""Database engines and sessions.

PostgreSQL (``postgresql+psycopg://…``, psycopg 3) needs nothing special: the
``BEGIN IMMEDIATE`` listener and the pragmas are installed on SQLite engines only.

SQLite is configured for concurrent use by one API process and several worker
processes: WAL journal, a 30 s busy timeout, foreign keys on, and write
transactions that begin ``IMMEDIATE`` (a deferred transaction that reads and
then writes fails at once with "database is locked" when another writer got in
first; an immediate one waits for the busy timeout instead).

Reads use deferred transactions, so pollers never queue behind writers. The
split is by engine: :attr:`Database.writer` shares the pool of
:attr:`Database.reader` and only differs by an execution option that the
``begin`` event turns into ``BEGIN IMMEDIATE``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, event, text
from sqlalchemy.engine import Connection, make_url
from sqlmodel import Session, create_engine

from app.db import checkpoints
from app.db.write_lock import WriteGate

logger = logging.getLogger(__name__)

_IMMEDIATE = "backprop_begin_immediate"
BUSY_TIMEOUT_MS = 30_000
POOL_SIZE = 30
"""Connections an engine keeps for reuse (opened on demand): more than the API admits
requests at once (:data:`app.edge.limits.MAX_CONCURRENT_REQUESTS`), with room for the event
hub, metrics and health reads. With fewer kept than requests in flight, each connection
beyond them is an overflow one, closed when handed back: under 200 pollers the API
opened and closed ~30 connections a second (a PostgreSQL backend each, or a SQLite
file and its caches), and that churn fragmented the heap (RSS crept up for minutes)."""


def _configure_sqlite(engine: Engine) -> None:
    """Install the pysqlite transaction recipe from the SQLAlchemy docs, the write
    lock taken without SQLite's sleeping busy handler (:mod:`app.db.write_lock`) and
    the checkpoint thread of large writes (:mod:`app.db.checkpoints`)."""
    checkpoints.install(engine)
    gate = WriteGate()

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Stop pysqlite from emitting its own BEGIN; we emit ours in "begin".
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys = ON")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        if conn.get_execution_options().get(_IMMEDIATE, False):
            gate.begin_immediate(conn, BUSY_TIMEOUT_MS)
        else:
            conn.exec_driver_sql("BEGIN")


def make_engine(url: str) -> Engine:
    """Create a SQLAlchemy engine for ``url``, configured for this service.

    Parameters
    ----------
    url : str
        SQLAlchemy database URL (``sqlite:///path`` or ``postgresql+psycopg://…``).

    Returns
    -------
    Engine
        A new engine; each process must create its own (never share across fork).
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_MS / 1000},
            pool_size=POOL_SIZE,
            max_overflow=20,
            pool_timeout=30,
        )
        _configure_sqlite(engine)
        return engine
    connect_args: dict[str, Any] = {}
    if parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() == "psycopg":
        # READ COMMITTED (the default) suffices: every claim and lease write is one
        # conditional UPDATE whose WHERE is re-checked on the locked row.
        connect_args = {"connect_timeout": 10, "application_name": "backprop"}
    return create_engine(
        url, pool_pre_ping=True, pool_size=POOL_SIZE, max_overflow=0, connect_args=connect_args
    )


class Database:
    """A reader engine and a writer view of it, sharing one connection pool.

    Parameters
    ----------
    url : str
        SQLAlchemy database URL.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.reader: Engine = make_engine(url)
        self.writer: Engine = self.reader.execution_options(**{_IMMEDIATE: True})

    def read_session(self) -> Session:
        """Open a session whose transactions are deferred (read-only use)."""
        return Session(self.reader, expire_on_commit=False)

    def write_session(self) -> Session:
        """Open a session whose transactions begin IMMEDIATE (takes the write lock)."""
        return Session(self.writer, expire_on_commit=False)

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """Context manager over :meth:`read_session`."""
        with self.read_session() as session:
            yield session

    @contextmanager
    def writing(self) -> Iterator[Session]:
        """Context manager over :meth:`write_session`; rolls back on error."""
        with self.write_session() as session:
            yield session

    def ping(self) -> None:
        """Run ``SELECT 1``; raises when the database does not answer."""
        with self.reader.connect() as conn:
            conn.execute(text("SELECT 1"))

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.reader.dispose()
