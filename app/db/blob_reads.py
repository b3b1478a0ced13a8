"""Read one large blob without holding the GIL for the whole of it.

``SELECT data`` on SQLite makes the driver fetch the row with the GIL held:
``sqlite3_column_blob`` reads the blob's whole chain of overflow pages into SQLite's
memory and Python then copies it into a ``bytes``, both under the GIL. For an 80 MB
dataset that kept every other thread, the event loop's among them, waiting 50-70 ms
(``/healthz`` during ``GET /v1/datasets/{id}/data``), and it made two copies.
:func:`read_blob` reads it with incremental blob I/O instead, :data:`READ_BYTES` at a
time (each ``Blob.read`` releases the GIL), into one buffer.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, literal_column
from sqlmodel import Session, select

READ_BYTES = 1 << 20
"""Bytes per incremental read."""


def read_blob(
    session: Session,
    column: Any,
    key: Any,
    value: object,
) -> bytes | bytearray | None:
    """The blob in ``column`` of the row whose ``key`` is ``value``, or None when there
    is no such row (or the column is NULL); both are a model's attributes
    (``DatasetArrays.data``, ``DatasetArrays.dataset_id``).

    On SQLite, a ``bytearray`` read piece by piece through ``blobopen`` in the
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
    buffer = bytearray(size)
    view = memoryview(buffer)
    driver = session.connection().connection.driver_connection
    table = column.class_.__tablename__
    with driver.blobopen(table, column.key, rowid, readonly=True) as stored:  # type: ignore[union-attr]
        for start in range(0, size, READ_BYTES):
            view[start : start + READ_BYTES] = stored.read(READ_BYTES)
    return buffer
