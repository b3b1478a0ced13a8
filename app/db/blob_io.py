"""Read and write one large blob without holding the GIL for the whole of it.

``SELECT data`` on SQLite makes the driver fetch the row with the GIL held:
``sqlite3_column_blob`` reads the blob's whole chain of overflow pages into SQLite's
memory and Python then copies it into a ``bytes``, both under the GIL. For an 80 MB
dataset that kept every other thread, the event loop's among them, waiting 50-70 ms
(``/healthz`` during ``GET /v1/datasets/{id}/data``), and it made two copies.
:func:`read_blob` reads it with incremental blob I/O instead, :data:`READ_BYTES` at a
time (each ``Blob.read`` releases the GIL), into one buffer.

Written as a bound parameter, a blob is copied whole by SQLite (``SQLITE_TRANSIENT``)
with the GIL held, and the copy stays in the cached prepared statement until it runs
again: :func:`insert_blob` inserts a ``zeroblob`` and writes it piece by piece, in a
transaction that leaves the write-ahead log's checkpoint to a thread of its own
(:func:`app.db.checkpoints.defer_checkpoint`).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, insert, literal_column
from sqlmodel import Session, SQLModel, select

from app.db.checkpoints import defer_checkpoint
from engine.serialization import Blob, blank_buffer

READ_BYTES = 1 << 20
"""Bytes per incremental read."""

WRITE_BYTES = 1 << 20
"""Bytes per incremental write."""


def read_blob(
    session: Session,
    column: Any,
    key: Any,
    value: object,
) -> bytes | memoryview | None:
    """The blob in ``column`` of the row whose ``key`` is ``value``, or None when there
    is no such row (or the column is NULL); both are a model's attributes
    (``DatasetArrays.data``, ``DatasetArrays.dataset_id``).

    On SQLite, a :func:`~engine.serialization.blank_buffer` read piece by piece through ``blobopen`` in the
    session's own transaction; on other databases the value the driver fetches.
    """
    if session.get_bind().dialect.name != "sqlite":
        return session.exec(select(column).where(key == value)).first()
    found: Any = session.exec(
        select(literal_column("rowid"), func.length(column)).where(key == value)
    ).first()
    if found is None or found[1] is None:
        return None
    rowid, size = int(found[0]), int(found[1])
    view = blank_buffer(size)
    driver = session.connection().connection.driver_connection
    table = column.class_.__tablename__
    with driver.blobopen(table, column.key, rowid, readonly=True) as stored:  # type: ignore[union-attr]
        for start in range(0, size, READ_BYTES):
            view[start : start + READ_BYTES] = stored.read(READ_BYTES)
    return view


def insert_blob(
    session: Session, model: type[SQLModel], values: dict[str, Any], column: str, blob: Blob
) -> None:
    """Insert a ``model`` row of ``values`` with ``blob`` in its ``column``, in the
    session's transaction; the rows it refers to must be flushed first.

    On SQLite a ``zeroblob`` of the blob's length, then written through ``blobopen``
    :data:`WRITE_BYTES` at a time (each ``Blob.write`` releases the GIL); other
    databases take the bytes-like object as a parameter (psycopg stores any buffer as
    ``bytea``, no ``bytes()`` copy). On SQLite the transaction's commit does not
    checkpoint the log: a thread does it after (:func:`~app.db.checkpoints.defer_checkpoint`).
    """
    if session.get_bind().dialect.name != "sqlite":
        session.add(model(**values, **{column: blob}))
        return
    session.flush()
    defer_checkpoint(session)
    table = model.__tablename__
    result: Any = session.execute(
        insert(model).values(**values, **{column: func.zeroblob(len(blob))})
    )
    rowid = int(result.lastrowid)
    driver = session.connection().connection.driver_connection
    view = memoryview(blob)
    with driver.blobopen(table, column, rowid) as stored:  # type: ignore[union-attr]
        for start in range(0, len(view), WRITE_BYTES):
            stored.write(view[start : start + WRITE_BYTES])
