"""Rows written straight into the database, for tests below the API."""

from __future__ import annotations

from app.db.models import Dataset, utcnow


def bare_dataset(dataset_id: str, stored_bytes: int) -> Dataset:
    """A one-sample ``dataset`` row of tenant ``tenant`` (its arrays go in separately)."""
    return Dataset(
        id=dataset_id,
        name=dataset_id,
        owner="tenant",
        n_samples=1,
        n_features=1,
        n_targets=1,
        target_type="values",
        sha256="0" * 64,
        created_at=utcnow(),
        stored_bytes=stored_bytes,
    )
