"""Datasets: store validated arrays, read them back, delete when unused."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlmodel import Session, col, or_, select

from app.errors import ConflictError, NotFoundError
from app.ids import new_id
from app.models import Dataset, DatasetArrays, Run, utcnow
from app.services.dataset_parsing import ParsedDataset
from app.services.pagination import PageResult, paginate
from engine import serialization

ACTIVE_STATUSES = ("queued", "running", "paused")


def create_dataset(*, session: Session, owner: str, name: str, parsed: ParsedDataset) -> Dataset:
    """Store a validated dataset; ``sha256`` is the hash of the encoded arrays."""
    blob = serialization.encode_arrays(
        {"X": np.ascontiguousarray(parsed.X), "y": np.ascontiguousarray(parsed.y)}
    )
    dataset = Dataset(
        id=new_id("dataset"),
        owner=owner,
        name=name,
        n_samples=int(parsed.X.shape[0]),
        n_features=int(parsed.X.shape[1]),
        n_targets=parsed.n_targets,
        target_type=parsed.target_type,
        sha256=hashlib.sha256(blob).hexdigest(),
        created_at=utcnow(),
    )
    session.add(dataset)
    session.add(DatasetArrays(dataset_id=dataset.id, data=blob))
    session.commit()
    return dataset


def get_dataset(*, session: Session, owner: str, dataset_id: str) -> Dataset:
    """Return ``owner``'s dataset or raise :class:`NotFoundError` (also for another tenant's)."""
    dataset = session.get(Dataset, dataset_id)
    if dataset is None or dataset.owner != owner:
        raise NotFoundError("dataset", dataset_id)
    return dataset


def list_datasets(
    *, session: Session, owner: str, limit: int, after: str | None
) -> PageResult[Dataset]:
    """Return one page of ``owner``'s datasets, newest first."""
    statement = select(Dataset).where(Dataset.owner == owner)
    return paginate(
        session=session, statement=statement, id_column=Dataset.id, limit=limit, after=after
    )


def load_arrays(*, session: Session, dataset_id: str) -> tuple[NDArray[Any], NDArray[Any]]:
    """Return ``(X, y)`` of a dataset or raise :class:`NotFoundError`.

    No tenant check: callers check the dataset with :func:`get_dataset` first
    (the worker reads the datasets of the run it claimed).
    """
    arrays = session.get(DatasetArrays, dataset_id)
    if arrays is None:
        raise NotFoundError("dataset", dataset_id)
    decoded = serialization.decode_arrays(arrays.data)
    return decoded["X"], decoded["y"]


def delete_dataset(*, session: Session, owner: str, dataset_id: str) -> None:
    """Delete a dataset; runs that used it keep their results (dataset_id becomes null).

    Raises
    ------
    ConflictError
        While a queued or running run trains or validates on it.
    """
    dataset = get_dataset(session=session, owner=owner, dataset_id=dataset_id)
    active = session.exec(
        select(Run.id).where(
            or_(Run.dataset_id == dataset_id, Run.validation_dataset_id == dataset_id),
            col(Run.status).in_(ACTIVE_STATUSES),
        )
    ).first()
    if active is not None:
        raise ConflictError(
            f"dataset {dataset_id!r} is used by run {active!r}, which is queued or running; "
            "cancel it or wait for it to finish"
        )
    session.delete(dataset)
    session.commit()
