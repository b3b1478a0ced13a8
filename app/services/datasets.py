"""Datasets: store validated arrays with their summary, read them back, delete when unused."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from numpy.typing import NDArray
from sqlalchemy import delete, update
from sqlmodel import Session, col, or_, select

from app.datasets.blobs import encode_arrays
from app.datasets.parsing import ParsedDataset
from app.datasets.summary import DataSummary, LabelRecords, RecordsLoader, summarize
from app.db.blob_io import insert_blob, read_blob
from app.db.ids import new_id
from app.db.models import Dataset, DatasetArrays, DatasetSummary, Run, utcnow
from app.errors import ConflictError, NotFoundError
from app.services import labels, storage
from app.services.deletes import count_runs, refuse_unless_cascade
from app.services.pagination import PageResult, paginate
from engine import serialization


@dataclass(frozen=True)
class ComputedSummary:
    """A summary computed from a dataset's arrays, to be stored by :func:`store_summary`."""

    dataset_id: str
    summary: DataSummary
    records: bytes | None
    stored_bytes: int
    """The dataset's exact charge: its arrays' blob plus ``records``."""


def _summarized(
    dataset_id: str, X: NDArray[Any], y: NDArray[Any], blob_bytes: int
) -> ComputedSummary:
    summary, records = summarize(X, y)
    encoded = None if records is None else records.encode()
    return ComputedSummary(
        dataset_id=dataset_id,
        summary=summary,
        records=encoded,
        stored_bytes=blob_bytes + len(encoded or b""),
    )


def create_dataset(
    *,
    session: Session,
    owner: str,
    name: str,
    parsed: ParsedDataset,
    storage_quota: int = 0,
    read_session: Session | None = None,
    tags: list[str] | None = None,
    metadata: dict[str, Any] | None = None,
) -> Dataset:
    """Store a validated dataset and its summary; ``sha256`` is the hash of the encoded arrays.

    With a ``storage_quota`` (bytes; 0 = none), the dataset is charged its stored
    bytes (:mod:`app.services.storage`) in the transaction that stores it, after the
    tenant lock; ``read_session`` (else ``session``) reads what that needs first.

    Raises
    ------
    StorageQuotaError
        When the dataset does not fit the quota.
    """
    settlement = storage.Settlement()
    if storage_quota:
        reads = read_session if read_session is not None else session
        settlement = storage.settle(session=reads, owner=owner, keep_auto_checkpoints=0)
        if read_session is not None:
            read_session.rollback()
    blob = parsed.blob if parsed.blob is not None else encode_arrays({"X": parsed.X, "y": parsed.y})
    dataset_id = new_id("dataset")
    computed = _summarized(dataset_id, parsed.X, parsed.y, len(blob))
    dataset = Dataset(
        id=dataset_id,
        owner=owner,
        name=name,
        n_samples=int(parsed.X.shape[0]),
        n_features=int(parsed.X.shape[1]),
        n_targets=parsed.n_targets,
        target_type=parsed.target_type,
        sha256=hashlib.sha256(blob).hexdigest(),
        created_at=utcnow(),
        stored_bytes=computed.stored_bytes,
        feature_names=None if parsed.feature_names is None else list(parsed.feature_names),
        target_names=None if parsed.target_names is None else list(parsed.target_names),
        classes=None if parsed.classes is None else list(parsed.classes),
        transform=parsed.transform,
        tags=list(tags or []),
        meta=dict(metadata or {}),
    )
    if storage_quota:
        from app.services.runs import lock_active_runs  # runs imports this module

        lock_active_runs(session=session, owner=owner)
        storage.charge(
            session=session,
            owner=owner,
            needed=computed.stored_bytes,
            quota=storage_quota,
            settlement=settlement,
            what=f"this dataset ({parsed.X.shape[0]} samples)",
        )
    session.add(dataset)
    labels.add_tags(session, dataset, dataset.tags)
    session.flush()  # the dataset row first (the foreign key)
    insert_blob(session, DatasetArrays, {"dataset_id": dataset.id}, "data", blob)
    session.add(_summary_row(computed))
    session.commit()
    return dataset


def _summary_row(computed: ComputedSummary) -> DatasetSummary:
    return DatasetSummary(
        dataset_id=computed.dataset_id,
        summary=computed.summary.to_json(),
        label_records=computed.records,
    )


def summary_of(
    *, session: Session, dataset_id: str
) -> tuple[DataSummary, RecordsLoader, ComputedSummary | None]:
    """A dataset's summary and a loader of its label records.

    Datasets stored before summaries existed (or by another summary version) get
    theirs computed from their arrays here, once: the third value is then the new
    summary, for the caller to store with :func:`store_summary` in its write
    transaction. Otherwise it is None and nothing but the summary row was read.
    """
    stored = session.exec(
        select(DatasetSummary.summary).where(DatasetSummary.dataset_id == dataset_id)
    ).first()
    summary = None if stored is None else DataSummary.from_json(stored)
    if summary is not None:

        def load_records() -> LabelRecords:
            blob = session.exec(
                select(DatasetSummary.label_records).where(DatasetSummary.dataset_id == dataset_id)
            ).one()
            if blob is None:  # pragma: no cover - written with every whole-number column
                raise NotFoundError("dataset", dataset_id)
            return LabelRecords.decode(blob)

        return summary, load_records, None
    arrays = session.get(DatasetArrays, dataset_id)
    if arrays is None:
        raise NotFoundError("dataset", dataset_id)
    decoded = serialization.decode_arrays(arrays.data)
    computed = _summarized(dataset_id, decoded["X"], decoded["y"], len(arrays.data))
    encoded = computed.records

    def computed_records() -> LabelRecords:
        if encoded is None:  # pragma: no cover - computed for every whole-number column
            raise NotFoundError("dataset", dataset_id)
        return LabelRecords.decode(encoded)

    return computed.summary, computed_records, computed


def store_summary(*, session: Session, computed: ComputedSummary) -> None:
    """Store a dataset's summary (once) and its exact charge; no commit."""
    existing = session.get(DatasetSummary, computed.dataset_id)
    if existing is not None and DataSummary.from_json(existing.summary) is not None:
        return
    if existing is not None:
        session.delete(existing)
        session.flush()
    session.add(_summary_row(computed))
    session.execute(
        update(Dataset)
        .where(col(Dataset.id) == computed.dataset_id)
        .values(stored_bytes=computed.stored_bytes)
    )


def get_dataset(*, session: Session, owner: str, dataset_id: str) -> Dataset:
    """Return ``owner``'s dataset or raise :class:`NotFoundError` (also for another tenant's)."""
    dataset = session.get(Dataset, dataset_id)
    if dataset is None or dataset.owner != owner:
        raise NotFoundError("dataset", dataset_id)
    return dataset


def list_datasets(
    *,
    session: Session,
    owner: str,
    limit: int,
    after: str | None,
    filters: labels.ListFilters | None = None,
) -> PageResult[Dataset]:
    """Return one page of ``owner``'s datasets, newest first, optionally filtered."""
    statement = select(Dataset).where(Dataset.owner == owner)
    statement = labels.filtered(statement, Dataset, owner, filters or labels.ListFilters())
    return paginate(
        session=session, statement=statement, id_column=Dataset.id, limit=limit, after=after
    )


def load_arrays(
    *, session: Session, dataset_id: str, copy: bool = True
) -> tuple[NDArray[Any], NDArray[Any]]:
    """Return ``(X, y)`` of a dataset or raise :class:`NotFoundError`.

    With ``copy=False`` they are read-only views into the fetched blob (the worker's
    cache keeps them read-only anyway): a large dataset is held once, not twice.

    No tenant check: callers check the dataset with :func:`get_dataset` first
    (the worker reads the datasets of the run it claimed).
    """
    # The column, not the row: the session does not keep the blob once it is decoded.
    data = read_blob(session, DatasetArrays.data, DatasetArrays.dataset_id, dataset_id)
    if data is None:
        raise NotFoundError("dataset", dataset_id)
    # A memoryview (SQLite) is this call's own buffer: views into it are as good as copies.
    decoded = serialization.decode_arrays(data, copy=copy and isinstance(data, bytes))
    del data
    if not copy:
        for array in decoded.values():
            array.flags.writeable = False
    return decoded["X"], decoded["y"]


def dataset_sha256(*, session: Session, dataset_id: str) -> str:
    """The ``sha256`` of a dataset's arrays (no tenant check, as :func:`load_arrays`).

    Raises
    ------
    NotFoundError
        When the dataset does not exist (any more).
    """
    found = session.exec(select(Dataset.sha256).where(Dataset.id == dataset_id)).first()
    if found is None:
        raise NotFoundError("dataset", dataset_id)
    return found


def delete_dataset(*, session: Session, owner: str, dataset_id: str, cascade: bool = False) -> int:
    """Delete a dataset; with ``cascade``, also the runs that train or validate on it.

    The rule of :mod:`app.services.deletes`; returns the number
    of runs deleted.

    Raises
    ------
    ConflictError
        Runs use it and ``cascade`` is false; or some of them are unfinished.
    """
    dataset = get_dataset(session=session, owner=owner, dataset_id=dataset_id)
    session.refresh(dataset, with_for_update=True)
    uses = or_(Run.dataset_id == dataset_id, Run.validation_dataset_id == dataset_id)
    using = count_runs(session, uses)
    try:
        refuse_unless_cascade(f"dataset {dataset_id!r}", using, cascade)
    except ConflictError:
        session.rollback()
        raise
    session.exec(delete(Run).where(uses))
    session.delete(dataset)
    session.commit()
    return using.total
