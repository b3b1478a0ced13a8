"""Large blobs read and written piece by piece (app.db.blob_io), on SQLite and PostgreSQL."""

from __future__ import annotations

import numpy as np
import pytest

from app.db.blob_io import READ_BYTES, read_blob
from app.db.database import Database
from app.db.models import DatasetArrays
from app.services.datasets import load_arrays
from engine.serialization import encode_arrays
from tests.support.rows import bare_dataset


def _store(db: Database, dataset_id: str, data: bytes) -> None:
    with db.writing() as session:
        session.add(bare_dataset(dataset_id, len(data)))
        session.flush()
        session.add(DatasetArrays(dataset_id=dataset_id, data=data))
        session.commit()


@pytest.mark.parametrize(
    "size", [0, 1, READ_BYTES - 1, READ_BYTES, READ_BYTES + 1, 3 * READ_BYTES + 17]
)
def test_a_blob_reads_back_byte_for_byte_at_every_piece_boundary(
    database_url: str, size: int
) -> None:
    db = Database(database_url)
    data = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes()
    _store(db, "dataset_blob", data)
    with db.reading() as session:
        read = read_blob(session, DatasetArrays.data, DatasetArrays.dataset_id, "dataset_blob")
    assert read is not None and bytes(read) == data
    db.dispose()


def test_a_missing_row_reads_as_none(database_url: str) -> None:
    db = Database(database_url)
    with db.reading() as session:
        assert read_blob(session, DatasetArrays.data, DatasetArrays.dataset_id, "nope") is None
    db.dispose()


def test_load_arrays_gives_private_arrays_or_read_only_views(database_url: str) -> None:
    db = Database(database_url)
    X = np.random.default_rng(0).normal(size=(300, 700))
    y = np.arange(300, dtype=np.int64)
    _store(db, "dataset_arrays", encode_arrays({"X": X, "y": y}))
    with db.reading() as session:
        X1, y1 = load_arrays(session=session, dataset_id="dataset_arrays")
        X2, _ = load_arrays(session=session, dataset_id="dataset_arrays")
        views, _ = load_arrays(session=session, dataset_id="dataset_arrays", copy=False)
    assert np.array_equal(X1, X) and np.array_equal(y1, y) and np.array_equal(views, X)
    X1[0, 0] = 1e9  # a copy of its own: the next load and the other copy do not see it
    assert X2[0, 0] == X[0, 0]
    assert not views.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        views[0, 0] = 0.0
    db.dispose()
