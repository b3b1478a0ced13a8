"""Per-column statistics of a stored dataset (``GET /v1/datasets/{id}/stats``)."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from app.api.schemas import ColumnStats, DatasetPublic, DatasetStats
from app.datasets.arrays import finite_or_none

STATS_ROWS = 65_536
"""Rows per pass: no temporary larger than this many rows of ``X``."""


def column_stats(names: list[str], values: NDArray[Any]) -> list[ColumnStats]:
    """Count, min, max, mean and population std of each column of ``values`` (n, k).

    Sums go block by block in float64, the std from the mean in a second pass (no
    cancellation of ``E[x^2] - E[x]^2``)."""
    n, k = values.shape
    low = np.full(k, np.inf)
    high = np.full(k, -np.inf)
    total = np.zeros(k)
    for start in range(0, n, STATS_ROWS):
        block = np.asarray(values[start : start + STATS_ROWS], dtype=np.float64)
        np.minimum(low, block.min(axis=0), out=low)
        np.maximum(high, block.max(axis=0), out=high)
        total += block.sum(axis=0)
    mean = total / n
    squares = np.zeros(k)
    for start in range(0, n, STATS_ROWS):
        block = np.asarray(values[start : start + STATS_ROWS], dtype=np.float64)
        squares += ((block - mean) ** 2).sum(axis=0)
    std = np.sqrt(squares / n)
    return [
        ColumnStats(
            name=name,
            count=n,
            missing=0,
            min=finite_or_none(float(low[j])),
            max=finite_or_none(float(high[j])),
            mean=finite_or_none(float(mean[j])),
            std=finite_or_none(float(std[j])),
        )
        for j, name in enumerate(names)
    ]


def dataset_stats(dataset: DatasetPublic, X: NDArray[Any], y: NDArray[Any]) -> DatasetStats:
    """The statistics of a dataset's stored ``X`` and ``y``."""
    targets = y.reshape(-1, 1) if y.ndim == 1 else y
    counts = None
    if dataset.target_type == "labels":
        found, numbers = np.unique(y, return_counts=True)
        classes = dataset.classes
        counts = {
            (
                classes[int(label)] if classes and int(label) < len(classes) else str(int(label))
            ): int(count)
            for label, count in zip(found, numbers, strict=True)
        }
    return DatasetStats(
        n_samples=int(X.shape[0]),
        features=column_stats(dataset.feature_names, X),
        targets=column_stats(dataset.target_names, targets),
        class_counts=counts,
    )
