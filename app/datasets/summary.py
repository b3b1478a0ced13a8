"""What a dataset must satisfy to train a network, kept as a small summary of its arrays.

``POST /v1/runs`` used to decode the whole dataset and run :func:`engine.check_data`
on it inside the write transaction. :func:`summarize` records, once, when the
dataset is stored, the few values every check of :func:`engine.check_data`
depends on; :func:`check_summary` then checks a run against them in time
independent of the number of samples.

It does so by building a *witness*: a handful of rows taken from the dataset
(the extreme values, the worst probability row, the first class label a
network of ``k`` outputs rejects) on which every predicate of
:func:`engine.data.prepare` has the same truth value as on the whole dataset,
and running the engine's own checks on it. The error messages and locations
are therefore the engine's, not a copy of them. Only the validation split,
whose message names the number of samples, is checked with the summary's
count (:func:`engine.data.validation_size`).

The summary describes arrays as the service stores them: ``X`` float64 of shape
(n_samples, n_features) and ``y`` either int64 labels of shape (n_samples,) or
float64 of shape (n_samples, n_targets), all finite.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from engine import serialization
from engine.config import FitConfig
from engine.data import check_compatible, prepare, validation_size
from engine.network import Network
from engine.schedules import check_onecycle

SUMMARY_VERSION = 1


def targets_for_loss(loss: str, y: NDArray[Any]) -> NDArray[Any]:
    """Return ``y`` as the engine should see it for ``loss``.

    Integer labels stay 1-D for ``cross_entropy``; for any other loss a 1-D ``y``
    is one numeric target column.
    """
    if y.ndim == 1 and loss != "cross_entropy":
        return y.astype(np.float64).reshape(-1, 1)
    return y


@dataclass(frozen=True)
class LabelRecords:
    """The running maxima of a one-column, whole-number ``y``.

    ``index[j]`` is the first sample whose value exceeds every earlier one, and
    ``value[j]`` that value (strictly increasing), so the first sample whose
    value is at least ``k`` is ``index[searchsorted(value, k)]``.

    Attributes
    ----------
    index : ndarray of shape (n_records,), int64
    value : ndarray of shape (n_records,), float64
    """

    index: NDArray[np.int64]
    value: NDArray[np.float64]

    def first_at_least(self, k: float) -> tuple[int, float] | None:
        """``(sample, value)`` of the first sample whose value is ``>= k``, or None."""
        j = int(np.searchsorted(self.value, k, side="left"))
        if j == self.value.size:
            return None
        return int(self.index[j]), float(self.value[j])

    def encode(self) -> bytes:
        """The stored form (:func:`engine.serialization.encode_arrays`)."""
        return serialization.encode_arrays({"index": self.index, "value": self.value})

    @classmethod
    def decode(cls, blob: bytes) -> LabelRecords:
        """Inverse of :meth:`encode`."""
        arrays = serialization.decode_arrays(blob)
        return cls(index=arrays["index"], value=arrays["value"])


@dataclass(frozen=True)
class DataSummary:
    """The values :func:`engine.check_data` depends on, for one stored dataset.

    Attributes
    ----------
    n_samples, n_features : int
        Shape of ``X``.
    y_ndim : int
        1 for class labels, 2 for value columns.
    y_columns : int
        Columns of ``y`` (1 for labels).
    x_extreme : float
        The value of ``X`` with the largest magnitude (it overflows float32 first).
    y_min, y_max : float
        Smallest and largest value of ``y``.
    fraction_example : float or None
        One column only: a value of ``y`` that is not a whole number, if any.
    first_negative : tuple of (int, float) or None
        One whole-number column only: the first negative value and its sample.
    n_records : int
        One whole-number column only: the size of its :class:`LabelRecords`.
    rows : list of list of float, or None
        Several columns only: the rows holding ``y_min`` and ``y_max`` and the row
        whose sum is farthest from 1.
    """

    n_samples: int
    n_features: int
    y_ndim: int
    y_columns: int
    x_extreme: float
    y_min: float
    y_max: float
    fraction_example: float | None = None
    first_negative: tuple[int, float] | None = None
    n_records: int = 0
    rows: list[list[float]] | None = None

    @property
    def one_column(self) -> bool:
        """Whether ``y`` is one column (labels, or a single value column)."""
        return self.y_columns == 1

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (stored in ``dataset_summary.summary``)."""
        return {"version": SUMMARY_VERSION, **asdict(self)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DataSummary | None:
        """The summary stored by :meth:`to_json`; None if written by another version."""
        if data.get("version") != SUMMARY_VERSION:
            return None
        fields = {key: value for key, value in data.items() if key != "version"}
        negative = fields.get("first_negative")
        fields["first_negative"] = None if negative is None else (int(negative[0]), negative[1])
        return cls(**fields)


def summarize(X: NDArray[np.float64], y: NDArray[Any]) -> tuple[DataSummary, LabelRecords | None]:
    """Summarize stored arrays (one pass each; no temporary as large as ``X``).

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), float64
    y : ndarray of shape (n_samples,) int64, or (n_samples, n_targets) float64

    Returns
    -------
    tuple
        The summary and, for a one-column whole-number ``y``, its label records.
    """
    high, low = float(X.max()), float(X.min())
    values = np.asarray(y, dtype=np.float64)
    columns = 1 if y.ndim == 1 else int(y.shape[1])
    common: dict[str, Any] = {
        "n_samples": int(X.shape[0]),
        "n_features": int(X.shape[1]),
        "y_ndim": int(y.ndim),
        "y_columns": columns,
        "x_extreme": high if high >= -low else low,
        "y_min": float(values.min()),
        "y_max": float(values.max()),
    }
    if columns == 1:
        return _summarize_column(values.reshape(-1), common)
    return DataSummary(**common, rows=_witness_rows(values)), None


def _summarize_column(
    column: NDArray[np.float64], common: dict[str, Any]
) -> tuple[DataSummary, LabelRecords | None]:
    fractional = np.flatnonzero(column != np.round(column))
    if fractional.size:
        return DataSummary(**common, fraction_example=float(column[fractional[0]])), None
    negative = np.flatnonzero(column < 0)
    first_negative = (int(negative[0]), float(column[negative[0]])) if negative.size else None
    running_max = np.maximum.accumulate(column)
    is_record = np.empty(column.size, dtype=bool)
    is_record[0] = True
    np.greater(column[1:], running_max[:-1], out=is_record[1:])
    index = np.flatnonzero(is_record).astype(np.int64)
    records = LabelRecords(index=index, value=np.ascontiguousarray(column[index]))
    summary = DataSummary(**common, first_negative=first_negative, n_records=int(index.size))
    return summary, records


def _witness_rows(values: NDArray[np.float64]) -> list[list[float]]:
    """The rows of a multi-column ``y`` that decide every check of it."""
    width = values.shape[1]
    low_row = int(np.argmin(values)) // width
    high_row = int(np.argmax(values)) // width
    worst_row = int(np.argmax(np.abs(values.sum(axis=1) - 1)))
    chosen = sorted({low_row, high_row, worst_row})
    return [[float(v) for v in values[row]] for row in chosen]


RecordsLoader = Callable[[], LabelRecords]
"""Reads a dataset's label records (only needed when a class label is out of range)."""


def witness(
    summary: DataSummary, n_classes: int | None, records: RecordsLoader
) -> tuple[NDArray[np.float64], NDArray[Any]]:
    """Rows on which the engine's data checks fail exactly as on the whole dataset.

    Parameters
    ----------
    summary : DataSummary
        The dataset's summary.
    n_classes : int or None
        The network's output units when the loss is ``cross_entropy`` (class labels
        must be below it), else None.
    records : callable
        Returns the label records; called only when a label may be out of range.

    Returns
    -------
    tuple
        ``X`` of shape (w, n_features) and ``y`` of shape (w,) (labels) or
        (w, y_columns), with ``w`` at most 4, in the stored dtypes.
    """
    if summary.rows is not None:
        y: NDArray[Any] = np.asarray(summary.rows, dtype=np.float64)
    else:
        values = [summary.y_min, summary.y_max]
        if summary.fraction_example is not None:
            values.append(summary.fraction_example)
        elif n_classes is not None:
            bad = _first_bad_label(summary, n_classes, records)
            if bad is not None:
                values.insert(0, bad)
        if summary.y_ndim == 1:
            y = np.asarray(values, dtype=np.int64)
        else:
            y = np.asarray(values, dtype=np.float64).reshape(-1, 1)
    X = np.full((y.shape[0], summary.n_features), summary.x_extreme, dtype=np.float64)
    return X, y


def _first_bad_label(summary: DataSummary, n_classes: int, records: RecordsLoader) -> float | None:
    """The value of the first sample whose label is negative or ``>= n_classes``."""
    candidates: list[tuple[int, float]] = []
    if summary.first_negative is not None:
        candidates.append(summary.first_negative)
    if summary.y_max >= n_classes:
        too_large = records().first_at_least(n_classes)
        if too_large is not None:
            candidates.append(too_large)
    return min(candidates)[1] if candidates else None


def check_summary(
    network: Network, config: FitConfig, summary: DataSummary, records: RecordsLoader
) -> None:
    """Raise the :class:`engine.ConfigError` that :func:`engine.check_data` would raise.

    Equivalent to ``check_data(network, config, X, targets_for_loss(config.loss, y))``
    on the summarized arrays, in time independent of ``n_samples``.
    """
    check_compatible(network, config)
    n_classes = network.output_size if config.loss == "cross_entropy" else None
    X, y = witness(summary, n_classes, records)
    prepare(network, config, X, targets_for_loss(config.loss, y))
    n_train = summary.n_samples  # the rest of check_data, on the sample count
    if config.validation is not None and config.validation.fraction is not None:
        n_train -= validation_size(summary.n_samples, config.validation.fraction)
    batch = n_train if config.batch_size is None else min(config.batch_size, n_train)
    check_onecycle(config.lr_schedule, config.epochs * -(-n_train // batch))
