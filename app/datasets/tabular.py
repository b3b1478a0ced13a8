"""Named columns (numeric or categorical, possibly with missing cells) into dataset arrays.

Both the CSV reader (:mod:`app.datasets.parsing`) and the Parquet / Arrow
reader (:mod:`app.datasets.files`) produce a :class:`Table`: the numeric columns as
one 2-D block (:class:`Numbers`), the categorical ones as :class:`Column` objects.
:func:`encode_table` chooses targets and features, handles missing cells, one-hot
encodes categorical features (``column=value``, categories sorted), label-encodes a
categorical target (``classes`` sorted) and returns a
:class:`~app.datasets.parsing.ParsedDataset`.

The numeric columns are handled block-wise (one NumPy call for all of them, never one
per column): a CSV of 100,000 columns has about 0.45 us per column to be parsed at
20 MB/s. Python loops run over the categorical columns, the targets and the columns
that have missing cells only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal, overload

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


@dataclass(frozen=True)
class Numbers:
    """The numeric columns of a table, as one block.

    Attributes
    ----------
    values : ndarray of shape (n_rows, n_numeric), float64
        The columns side by side; NaN marks a missing cell.
    positions : ndarray of shape (n_numeric,), intp
        Each column's position in the table, increasing.
    whole : ndarray of shape (n_numeric,), bool
        Columns written as non-negative whole numbers (class labels).
    """

    values: NDArray[np.float64]
    positions: NDArray[np.intp]
    whole: NDArray[np.bool_]


@dataclass(frozen=True)
class Table:
    """Named columns: the numeric ones as one block, the categorical ones one by one.

    Attributes
    ----------
    names : list of str, of length n_columns
        Every column's name, in table order.
    numbers : Numbers
        The numeric columns.
    categorical : dict of int to Column
        The categorical columns (``codes`` and ``categories``) by position.
    distinct : bool
        Whether ``names`` are known to be distinct (a CSV header the parser checked):
        :func:`encode_table` then does not check them again.
    """

    names: list[str]
    numbers: Numbers
    categorical: dict[int, Column]
    distinct: bool = False

    @property
    def n_rows(self) -> int:
        """Rows of every column."""
        return int(self.numbers.values.shape[0])


class ColumnKinds(Sequence[dict[str, Any]]):
    """The raw feature columns' kinds (:mod:`app.datasets.transforms`), in order:
    ``{"name": ..., "kind": "numeric"}`` or ``{"name": ..., "kind": "categorical",
    "categories": [...]}``, each dict made when asked for (a new one each time).

    One dict per column costs about 0.1 us, where a CSV of 100,000 columns has 0.45 us
    per column to be parsed at 20 MB/s: the transform's document builds them once
    (:func:`app.datasets.options.finish`), the parse never. Equal to any sequence of the
    same dicts (a tuple of them included).

    Parameters
    ----------
    names : sequence of str, of length n_features
        The raw feature columns' names.
    categories : dict of int to list of str
        The categories of the categorical ones, by index into ``names``.
    """

    def __init__(self, names: Sequence[str], categories: dict[int, list[str]]) -> None:
        self._names = names
        self._categories = categories

    def __len__(self) -> int:
        return len(self._names)

    def _kind(self, index: int) -> dict[str, Any]:
        categories = self._categories.get(index)
        if categories is None:
            return {"name": self._names[index], "kind": "numeric"}
        return {"name": self._names[index], "kind": "categorical", "categories": categories}

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...

    @overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...

    def __getitem__(self, index: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(index, slice):
            return [self._kind(i) for i in range(len(self._names))[index]]
        return self._kind(range(len(self._names))[index])

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return map(self._kind, range(len(self._names)))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, str | bytes):
            return NotImplemented
        return len(other) == len(self) and all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"ColumnKinds({list(self)!r})"


def table_of(columns: Sequence[Column]) -> Table:
    """The :class:`Table` of columns given one by one (their values are copied into one
    block: drop ``columns`` after, or the numbers exist twice)."""
    numeric = [i for i, column in enumerate(columns) if not column.categorical]
    rows = 0
    if columns:
        data = columns[0].codes if columns[0].codes is not None else columns[0].values
        assert data is not None
        rows = int(data.shape[0])
    values = np.empty((rows, len(numeric)), dtype=np.float64)
    for j, i in enumerate(numeric):
        values[:, j] = columns[i].values
    numbers = Numbers(
        values=values,
        positions=np.asarray(numeric, dtype=np.intp),
        whole=np.asarray([columns[i].whole for i in numeric], dtype=bool),
    )
    categorical = {i: column for i, column in enumerate(columns) if column.categorical}
    return Table(
        names=[column.name for column in columns], numbers=numbers, categorical=categorical
    )


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


@dataclass(frozen=True)
class _Missing:
    """Where a table's cells are missing."""

    numbers: NDArray[np.bool_]
    """(n_rows, n_numeric): True at a missing numeric cell."""
    counts: NDArray[np.intp]
    """(n_numeric,): missing cells per numeric column."""
    categorical: dict[int, NDArray[np.bool_]]
    """Position -> (n_rows,): True at a missing cell of a categorical column."""


def _missing_cells(table: Table) -> _Missing:
    numbers = np.isnan(table.numbers.values)
    return _Missing(
        numbers=numbers,
        counts=np.count_nonzero(numbers, axis=0),  # one reduction: each costs ~3 ms a 1M cells
        categorical={p: column.missing_mask() for p, column in table.categorical.items()},
    )


def _first_missing(
    table: Table, missing: _Missing, chosen: NDArray[np.bool_]
) -> tuple[int, int] | None:
    """``(row, position)`` of the first missing cell in row-major order among the
    ``chosen`` columns (a mask of shape (n_columns,))."""
    best: tuple[int, int] | None = None
    among = chosen[table.numbers.positions] & (missing.counts > 0)
    if among.any():
        cells = missing.numbers if among.all() else missing.numbers[:, among]
        row, column = divmod(int(np.argmax(cells.ravel())), cells.shape[1])  # the first True
        best = (row, int(table.numbers.positions[among][column]))
    for position, mask in missing.categorical.items():
        if chosen[position] and mask.any():
            found = (int(np.argmax(mask)), position)
            if best is None or found < best:
                best = found
    return best


def _most_frequent(values: NDArray[Any]) -> Any:
    found, counts = np.unique(values, return_counts=True)
    return found[int(np.argmax(counts))]  # ties: the smallest value


def encode_table(
    table: Table | Sequence[Column],
    targets: Sequence[str],
    *,
    missing: Missing = "error",
    locate: Locate,
    max_cells: int | None = None,
) -> ParsedDataset:
    """The dataset of named columns: ``targets`` name y, every other column is a feature.

    Parameters
    ----------
    table : Table or sequence of Column
        The columns (one by one: converted by :func:`table_of`). Not modified.

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

    if not isinstance(table, Table):
        table = table_of(table)
    target_idx = _target_positions(table.names, targets, table.distinct)
    is_target = np.zeros(len(table.names), dtype=bool)
    is_target[target_idx] = True
    if is_target.all():
        raise InvalidInputError(("body", "target"), "every column is a target; no features left")
    categorical = {p: _sorted_categories(c) for p, c in sorted(table.categorical.items())}
    for column in categorical.values():
        _check_categories(column)
    table = replace(table, categorical=categorical)
    table, fills = _handle_missing(table, is_target, target_idx, missing, locate)
    n_rows = table.n_rows
    if n_rows == 0:
        raise _file_error("no data rows left after dropping the rows with missing values")
    width = _encoded_width(table, is_target)
    n_targets = len(target_idx)
    if max_cells is not None and n_rows * (width + n_targets) > max_cells:
        raise _file_error(
            f"{n_rows} rows x {width + n_targets} encoded columns is more than "
            f"{max_cells} values (BACKPROP_MAX_DATASET_CELLS)"
        )
    X, feature_names, kinds, features = _features(table, is_target, width)
    fills.apply(X, features)
    y, target_type, classes = _target(table, target_idx, list(targets))
    return ParsedDataset(
        X=X,
        y=y,
        target_type=target_type,
        feature_names=tuple(feature_names),
        target_names=tuple(targets),
        classes=None if classes is None else tuple(classes),
        columns=kinds,
    )


def _target_positions(names: list[str], targets: Sequence[str], distinct: bool) -> list[int]:
    """The position of each target (linear in the columns, whatever the targets), after
    checking that no column is named twice (unless known to be ``distinct``)."""
    if not distinct and len(set(names)) != len(names):
        seen: set[str] = set()
        for name in names:
            if name in seen:
                raise _file_error(f"duplicate column(s) [{name!r}]: a column is named twice")
            seen.add(name)
    position = dict(zip(names, range(len(names)), strict=True)) if len(targets) > 8 else None
    unknown = [t for t in targets if (t not in position if position else t not in names)]
    if unknown:
        raise InvalidInputError(
            ("body", "target"), f"column(s) {unknown} not in the columns {names}"
        )
    return [position[t] if position else names.index(t) for t in targets]


FILL_CELLS = 1 << 18
"""Cells of the numeric block imputed at a time: bounds the temporary arrays (2 MiB)."""


def _chunks(columns: int, rows: int) -> Iterator[slice]:
    """Slices of ``range(columns)`` of at most :data:`FILL_CELLS` cells of ``rows``."""
    step = max(1, FILL_CELLS // max(rows, 1))
    return (slice(start, start + step) for start in range(0, columns, step))


@dataclass(frozen=True)
class _Fills:
    """Values imputed into a dataset's numeric features (missing=mean or most_frequent)."""

    columns: NDArray[np.intp]
    """(n_filled,): indices into the table's numeric block."""
    values: NDArray[np.float64]
    """(n_filled,): the value each column's missing cells take."""
    missing: NDArray[np.bool_]
    """(n_rows, n_numeric): the table's missing numeric cells."""

    def apply(self, X: NDArray[np.float64], features: NDArray[np.intp]) -> None:
        """Write the values into ``X`` of shape (n_rows, n_features), whose column
        ``features[j]`` is the numeric block's column ``j``."""
        for chunk in _chunks(self.columns.size, X.shape[0]):
            columns = self.columns[chunk]
            at = features[columns]
            part = X[:, at]
            np.copyto(part, self.values[chunk], where=self.missing[:, columns])
            X[:, at] = part


_NO_FILLS = _Fills(columns=np.empty(0, np.intp), values=np.empty(0), missing=np.empty((0, 0), bool))


def _handle_missing(
    table: Table,
    is_target: NDArray[np.bool_],
    target_idx: list[int],
    missing: Missing,
    locate: Locate,
) -> tuple[Table, _Fills]:
    """The table as ``missing`` leaves it (rows dropped, categorical cells imputed) and
    the numeric values to impute into the features."""
    cells = _missing_cells(table)
    if missing == "error":
        first = _first_missing(table, cells, np.ones_like(is_target))
        if first is not None:
            row, index = first
            raise _file_error(
                f"{locate(row)}, column {table.names[index]!r}: missing value (empty cell); "
                "upload with missing=drop, mean or most_frequent"
            )
        return table, _NO_FILLS
    if missing == "drop":
        return _drop(table, cells), _NO_FILLS
    first_target = _first_missing(table, cells, is_target)
    if first_target is not None:
        row, index = first_target
        raise _file_error(
            f"{locate(row)}, column {table.names[index]!r}: missing target value; "
            f"missing={missing} imputes features only (use drop)"
        )
    _check_imputable(table, cells, is_target, missing, locate)
    categorical = dict(table.categorical)
    for position, mask in cells.categorical.items():
        if not is_target[position] and mask.any():
            column = categorical[position]
            assert column.codes is not None
            codes = column.codes.copy()
            codes[mask] = _most_frequent(codes[~mask])
            categorical[position] = Column(
                name=column.name, codes=codes, categories=column.categories
            )
    return replace(table, categorical=categorical), _numeric_fills(table, cells, is_target, missing)


def _drop(table: Table, cells: _Missing) -> Table:
    """The table without the rows that have a missing cell."""
    drop = np.zeros(table.n_rows, dtype=bool)
    if cells.counts.any():
        drop |= cells.numbers.any(axis=1)
    for mask in cells.categorical.values():
        drop |= mask
    if not drop.any():
        return table
    keep = ~drop
    numbers = replace(table.numbers, values=table.numbers.values[keep])
    categorical = {
        p: Column(name=c.name, codes=c.codes[keep], categories=c.categories)  # type: ignore[index]
        for p, c in table.categorical.items()
    }
    return replace(table, numbers=numbers, categorical=categorical)


def _check_imputable(
    table: Table,
    cells: _Missing,
    is_target: NDArray[np.bool_],
    missing: Missing,
    locate: Locate,
) -> None:
    """Raise for the first feature column (in table order) whose missing cells cannot be
    imputed: it has no values, or it is categorical and ``missing`` is mean."""
    positions = table.numbers.positions
    empty = (cells.counts == table.n_rows) & (cells.counts > 0) & ~is_target[positions]
    errors: list[tuple[int, InvalidInputError]] = []
    if empty.any():
        position = int(positions[np.argmax(empty)])
        errors.append((position, _no_values(table.names[position])))
    for position, mask in cells.categorical.items():
        if is_target[position] or not mask.any():
            continue
        name = table.names[position]
        if mask.all():
            errors.append((position, _no_values(name)))
        elif missing == "mean":
            message = (
                f"{locate(int(np.argmax(mask)))}, column {name!r}: missing value in a "
                "categorical column; missing=mean imputes numeric columns only (use most_frequent)"
            )
            errors.append((position, _file_error(message)))
    if errors:
        raise min(errors, key=lambda found: found[0])[1]


def _no_values(name: str) -> InvalidInputError:
    return _file_error(f"column {name!r} has no values to impute missing cells from")


def _numeric_fills(
    table: Table, cells: _Missing, is_target: NDArray[np.bool_], missing: Missing
) -> _Fills:
    """The mean or most frequent value of each numeric feature that has missing cells
    (its present cells': the loop in Python is over those columns for most_frequent)."""
    values = table.numbers.values
    filled = np.flatnonzero((cells.counts > 0) & ~is_target[table.numbers.positions])
    fill = np.empty(filled.size)
    for chunk in _chunks(filled.size, table.n_rows):
        columns = filled[chunk]
        where = cells.numbers[:, columns]
        if missing == "mean":
            part = values[:, columns]
            part[where] = 0.0
            fill[chunk] = part.sum(axis=0) / (table.n_rows - cells.counts[columns])
        else:
            fill[chunk] = [_most_frequent(values[~where[:, k], j]) for k, j in enumerate(columns)]
    return _Fills(columns=filled, values=fill, missing=cells.numbers)


def _encoded_width(table: Table, is_target: NDArray[np.bool_]) -> int:
    """Columns of X: one per numeric feature, one per category of a categorical one."""
    numeric = int(np.count_nonzero(~is_target[table.numbers.positions]))
    return numeric + sum(
        len(c.categories or []) for p, c in table.categorical.items() if not is_target[p]
    )


def _features(
    table: Table, is_target: NDArray[np.bool_], width: int
) -> tuple[NDArray[np.float64], list[str], ColumnKinds, NDArray[np.intp]]:
    """X of shape (n_rows, width), its feature names, the raw feature columns' kinds and
    the column of X of each numeric block column (shape (n_numeric,), -1: a target).

    The numeric features are copied in runs of adjacent columns (a run ends at a target
    or a categorical column): the work per numeric column is NumPy's."""
    X = np.zeros((table.n_rows, width), dtype=np.float64)
    names: list[str] = []
    raw: list[str] = []  # the raw feature columns' names
    categories: dict[int, list[str]] = {}  # their categorical ones'
    features = np.full(table.numbers.positions.shape[0], -1, dtype=np.intp)
    values = table.numbers.values
    n_columns = len(table.names)
    block = 0  # the numeric block's column at the start of the run
    start = 0  # the table's column at the start of the run
    for stop in [*sorted({*np.flatnonzero(is_target).tolist(), *table.categorical}), n_columns]:
        run = table.names[start:stop]  # numeric features
        at = len(names)
        X[:, at : at + len(run)] = values[:, block : block + len(run)]
        features[block : block + len(run)] = np.arange(at, at + len(run))
        names.extend(run)
        raw.extend(run)
        block += len(run)
        start = stop + 1
        column = table.categorical.get(stop)
        if column is None:
            block += 1  # a numeric target (or the end)
        elif not is_target[stop]:
            _one_hot(X, len(names), column)
            names.extend(f"{column.name}={value}" for value in column.categories or [])
            categories[len(raw)] = column.categories or []
            raw.append(column.name)
    return X, names, ColumnKinds(raw, categories), features


def _one_hot(X: NDArray[np.float64], at: int, column: Column) -> None:
    """Set ``X[i, at + code of row i]`` to 1 (X of shape (n_rows, n_features))."""
    assert column.codes is not None
    X[np.arange(X.shape[0]), at + column.codes] = 1.0


def _target(
    table: Table, target_idx: list[int], names: list[str]
) -> tuple[NDArray[Any], str, list[str] | None]:
    """y (labels of shape (n_rows,) or values of shape (n_rows, n_targets)), its type
    and the class names of a categorical target."""
    categorical = [table.categorical[p] for p in target_idx if p in table.categorical]
    if categorical:
        if len(target_idx) > 1:
            raise InvalidInputError(
                ("body", "target"),
                f"column {categorical[0].name!r} holds class names: a categorical target "
                f"must be the only target (targets {names})",
            )
        column = categorical[0]
        assert column.codes is not None
        return column.codes.astype(np.int64), "labels", list(column.categories or [])
    numbers = table.numbers
    block = np.searchsorted(numbers.positions, target_idx)
    if len(target_idx) == 1 and numbers.whole[block[0]]:
        values = numbers.values[:, block[0]]
        if values.size and float(values.max()) <= MAX_LABEL:
            return values.astype(np.int64), "labels", None
    return np.ascontiguousarray(numbers.values[:, block]), "values", None
