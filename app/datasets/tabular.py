"""Named columns (numeric or categorical, possibly with missing cells) into dataset arrays.

Both the CSV reader (:mod:`app.datasets.parsing`) and the Parquet / Arrow
reader (:mod:`app.datasets.files`) produce :class:`Column` objects; :func:`encode_table`
chooses targets and features, handles missing cells, one-hot encodes categorical
features (``column=value``, categories sorted), label-encodes a categorical target
(``classes`` sorted) and returns a :class:`~app.datasets.parsing.ParsedDataset`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from numpy.typing import NDArray

from app.datasets.json_arrays import MAX_LABEL
from app.errors import InvalidInputError

if TYPE_CHECKING:
    from app.datasets.parsing import ParsedDataset

Missing = Literal["error", "drop", "mean", "most_frequent"]
MISSING_OPTIONS: tuple[str, ...] = ("error", "drop", "mean", "most_frequent")
MAX_CATEGORIES = 1024
"""Distinct values a categorical column may have (each becomes a feature)."""

Locate = Callable[[int], str]
"""Names data row ``i`` in a message (``"line 7"`` for CSV, ``"row 6"`` otherwise)."""


@dataclass
class Column:
    """One input column.

    Attributes
    ----------
    name : str
    values : ndarray of shape (n,), float64, or None
        Numeric column; NaN marks a missing cell.
    codes : ndarray of shape (n,), int64, or None
        Categorical column: index into ``categories``, -1 for a missing cell.
    categories : list of str or None
        Distinct values of a categorical column (any order; sorted here).
    whole : bool
        A numeric column written as non-negative whole numbers (class labels).
    """

    name: str
    values: NDArray[np.float64] | None = None
    codes: NDArray[np.int64] | None = None
    categories: list[str] | None = None
    whole: bool = False

    @property
    def categorical(self) -> bool:
        """Whether the column holds category names."""
        return self.codes is not None

    def missing_mask(self) -> NDArray[np.bool_]:
        """True where the cell is missing."""
        if self.codes is not None:
            return self.codes < 0
        assert self.values is not None
        return np.isnan(self.values)


def _file_error(message: str) -> InvalidInputError:
    return InvalidInputError(("body", "file"), message)


def _sorted_categories(column: Column) -> Column:
    """The same column with categories in sorted order (codes renumbered)."""
    assert column.codes is not None and column.categories is not None
    order = sorted(range(len(column.categories)), key=lambda i: column.categories[i])  # type: ignore[index]
    remap = np.empty(len(order) + 1, dtype=np.int64)
    remap[-1] = -1
    remap[np.asarray(order, dtype=np.int64)] = np.arange(len(order))
    return Column(
        name=column.name,
        codes=remap[column.codes],
        categories=[column.categories[i] for i in order],
    )


def _check_categories(column: Column) -> None:
    if column.categories is not None and len(column.categories) > MAX_CATEGORIES:
        raise _file_error(
            f"column {column.name!r} has {len(column.categories)} distinct non-numeric values; "
            f"a categorical column may have at most {MAX_CATEGORIES} (an id column? leave it out)"
        )


def _first_missing(columns: Sequence[Column], order: Sequence[int]) -> tuple[int, int] | None:
    """``(row, column index)`` of the first missing cell in row-major order."""
    best: tuple[int, int] | None = None
    for index in order:
        mask = columns[index].missing_mask()
        if mask.any():
            row = int(np.argmax(mask))
            if best is None or (row, index) < best:
                best = (row, index)
    return best


def _most_frequent(values: NDArray[Any]) -> Any:
    found, counts = np.unique(values, return_counts=True)
    return found[int(np.argmax(counts))]  # ties: the smallest value


def _fill(column: Column, missing: Missing, locate: Locate, mask: NDArray[np.bool_]) -> Column:
    """The column with its missing cells imputed."""
    present = ~mask
    if not present.any():
        raise _file_error(f"column {column.name!r} has no values to impute missing cells from")
    if column.codes is not None:
        if missing == "mean":
            row = int(np.argmax(mask))
            raise _file_error(
                f"{locate(row)}, column {column.name!r}: missing value in a categorical column; "
                "missing=mean imputes numeric columns only (use most_frequent)"
            )
        codes = column.codes.copy()
        codes[mask] = _most_frequent(codes[present])
        return Column(name=column.name, codes=codes, categories=column.categories)
    assert column.values is not None
    values = column.values.copy()
    fill = (
        float(values[present].mean())
        if missing == "mean"
        else float(_most_frequent(values[present]))
    )
    values[mask] = fill
    return Column(name=column.name, values=values, whole=column.whole and missing != "mean")


def _target(columns: list[Column], names: list[str]) -> tuple[NDArray[Any], str, list[str] | None]:
    categorical = [column for column in columns if column.categorical]
    if categorical:
        if len(columns) > 1:
            raise InvalidInputError(
                ("body", "target"),
                f"column {categorical[0].name!r} holds class names: a categorical target "
                f"must be the only target (targets {names})",
            )
        column = categorical[0]
        assert column.codes is not None
        return column.codes.astype(np.int64), "labels", list(column.categories or [])
    values = [column.values for column in columns]
    if len(columns) == 1 and columns[0].whole:
        assert values[0] is not None
        if values[0].size and float(values[0].max()) <= MAX_LABEL:
            return values[0].astype(np.int64), "labels", None
    y = np.empty((values[0].shape[0], len(values)), dtype=np.float64)  # type: ignore[union-attr]
    for j, column_values in enumerate(values):
        y[:, j] = column_values
    return y, "values", None


def encode_table(
    columns: list[Column],
    targets: Sequence[str],
    *,
    missing: Missing = "error",
    locate: Locate,
    max_cells: int | None = None,
) -> ParsedDataset:
    """The dataset of named columns: ``targets`` name y, every other column is a feature.

    Returns
    -------
    ParsedDataset
        With ``feature_names`` (one-hot features as ``column=value``), ``target_names``,
        ``classes`` (categorical target) and ``columns`` (the raw columns' kinds, for
        the transform).

    Raises
    ------
    InvalidInputError
        A column named twice, unknown or no targets, a missing cell (by default), too many
        categories, more than ``max_cells`` encoded values.
    """
    from app.datasets.parsing import ParsedDataset  # it imports this module

    names = [column.name for column in columns]
    position = _positions(names, targets)
    target_idx = [position[t] for t in targets]
    feature_idx = [i for i in range(len(columns)) if i not in set(target_idx)]
    if not feature_idx:
        raise InvalidInputError(("body", "target"), "every column is a target; no features left")
    columns = [_sorted_categories(c) if c.categorical else c for c in columns]
    for column in columns:
        _check_categories(column)
    columns = _handle_missing(columns, target_idx, feature_idx, missing, locate)
    n_rows = _rows(columns)
    if n_rows == 0:
        raise _file_error("no data rows left after dropping the rows with missing values")
    features = [columns[i] for i in feature_idx]
    width = sum(len(c.categories or []) if c.categorical else 1 for c in features)
    if max_cells is not None and n_rows * (width + len(target_idx)) > max_cells:
        raise _file_error(
            f"{n_rows} rows x {width + len(target_idx)} encoded columns is more than "
            f"{max_cells} values (BACKPROP_MAX_DATASET_CELLS)"
        )
    X, feature_names = _features(features, n_rows, width)
    y, target_type, classes = _target([columns[i] for i in target_idx], list(targets))
    return ParsedDataset(
        X=X,
        y=y,
        target_type=target_type,
        feature_names=tuple(feature_names),
        target_names=tuple(targets),
        classes=None if classes is None else tuple(classes),
        columns=tuple(_column_kind(c) for c in features),
    )


def _positions(names: list[str], targets: Sequence[str]) -> dict[str, int]:
    seen: dict[str, int] = {}
    for index, name in enumerate(names):
        if name in seen:
            raise _file_error(f"duplicate column(s) [{name!r}]: a column is named twice")
        seen[name] = index
    unknown = [t for t in targets if t not in seen]
    if unknown:
        raise InvalidInputError(
            ("body", "target"), f"column(s) {unknown} not in the columns {names}"
        )
    return seen


def _rows(columns: list[Column]) -> int:
    first = columns[0]
    data = first.codes if first.codes is not None else first.values
    assert data is not None
    return int(data.shape[0])


def _handle_missing(
    columns: list[Column],
    target_idx: list[int],
    feature_idx: list[int],
    missing: Missing,
    locate: Locate,
) -> list[Column]:
    used = sorted(target_idx + feature_idx)
    if missing == "error":
        first = _first_missing(columns, used)
        if first is not None:
            row, index = first
            raise _file_error(
                f"{locate(row)}, column {columns[index].name!r}: missing value (empty cell); "
                "upload with missing=drop, mean or most_frequent"
            )
        return columns
    if missing == "drop":
        drop = np.zeros(_rows(columns), dtype=bool)
        for index in used:
            drop |= columns[index].missing_mask()
        keep = ~drop
        return [_take(column, keep) for column in columns]
    first_target = _first_missing(columns, target_idx)
    if first_target is not None:
        row, index = first_target
        raise _file_error(
            f"{locate(row)}, column {columns[index].name!r}: missing target value; "
            f"missing={missing} imputes features only (use drop)"
        )
    out = list(columns)
    for index in feature_idx:
        mask = columns[index].missing_mask()
        if mask.any():
            out[index] = _fill(columns[index], missing, locate, mask)
    return out


def _take(column: Column, keep: NDArray[np.bool_]) -> Column:
    if column.codes is not None:
        return Column(name=column.name, codes=column.codes[keep], categories=column.categories)
    assert column.values is not None
    return Column(name=column.name, values=column.values[keep], whole=column.whole)


def _features(
    features: list[Column], n_rows: int, width: int
) -> tuple[NDArray[np.float64], list[str]]:
    X = np.zeros((n_rows, width), dtype=np.float64)
    names: list[str] = []
    position = 0
    for column in features:
        if column.codes is None:
            X[:, position] = column.values
            names.append(column.name)
            position += 1
            continue
        categories = column.categories or []
        X[np.arange(n_rows), position + column.codes] = 1.0
        names.extend(f"{column.name}={value}" for value in categories)
        position += len(categories)
    return X, names


def _column_kind(column: Column) -> dict[str, Any]:
    if column.categorical:
        return {"name": column.name, "kind": "categorical", "categories": column.categories}
    return {"name": column.name, "kind": "numeric"}
