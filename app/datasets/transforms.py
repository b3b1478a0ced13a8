"""The preprocessing stored with a dataset and applied again to raw rows at predict time.

A transform is a JSON document (stored in ``dataset.transform`` and copied into
``run.transform`` when a run is created)::

    {
      "version": 1,
      "columns": [{"name": "sepal_length", "kind": "numeric"},
                  {"name": "color", "kind": "categorical", "categories": ["blue", "red"]}],
      "feature_names": ["sepal_length", "color=blue", "color=red"],
      "mean": [5.8, 0.0, 0.0] | null,
      "scale": [0.83, 1.0, 1.0] | null,
      "target_names": ["species"],
      "classes": ["setosa", "versicolor", "virginica"] | null
    }

``columns`` are the raw input columns, in order; a categorical one becomes one
one-hot feature per category (sorted). ``mean``/``scale`` are per *encoded*
feature: ``(x - mean) / scale``; one-hot features and zero-variance features keep
mean 0 and scale 1. ``classes`` name the class labels of a categorical target.

:func:`apply_transform` is the one function that turns raw rows into the network's
input; training data is stored already transformed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from app.errors import InvalidInputError

TRANSFORM_VERSION = 1
Transform = dict[str, Any]


def default_feature_names(n: int) -> list[str]:
    """``x0, x1, ...``."""
    return [f"x{i}" for i in range(n)]


def default_target_names(n: int) -> list[str]:
    """``y0, y1, ...``."""
    return [f"y{i}" for i in range(n)]


def make_transform(
    *,
    columns: list[dict[str, Any]],
    feature_names: list[str],
    target_names: list[str],
    classes: list[str] | None,
    mean: NDArray[np.float64] | None,
    scale: NDArray[np.float64] | None,
) -> Transform | None:
    """The transform document, or None when it would do nothing (numeric columns, no
    scaling, no class names)."""
    categorical = any(column["kind"] == "categorical" for column in columns)
    if not categorical and mean is None and classes is None:
        return None
    return {
        "version": TRANSFORM_VERSION,
        "columns": columns,
        "feature_names": feature_names,
        "mean": None if mean is None else [float(v) for v in mean],
        "scale": None if scale is None else [float(v) for v in scale],
        "target_names": target_names,
        "classes": classes,
    }


def standardization(
    X: NDArray[np.float64], numeric: Sequence[bool]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Per-feature mean and scale of ``X`` (n_samples, n_features) for the features
    flagged ``numeric``; others (one-hot) and zero-variance ones get mean 0, scale 1."""
    mean = X.mean(axis=0)
    std = X.std(axis=0)
    keep = np.asarray(numeric, dtype=bool) & (std > 0)
    mean = np.where(keep, mean, 0.0)
    scale = np.where(keep, std, 1.0)
    return mean, scale


def standardize_in_place(
    X: NDArray[np.float64], mean: NDArray[np.float64], scale: NDArray[np.float64]
) -> None:
    """``X = (X - mean) / scale`` without a temporary as large as ``X``."""
    X -= mean
    X /= scale


def is_categorical(transform: Mapping[str, Any] | None) -> bool:
    """Whether raw rows for ``transform`` may hold category names."""
    if not transform:
        return False
    return any(column["kind"] == "categorical" for column in transform["columns"])


def raw_width(transform: Mapping[str, Any]) -> int:
    """Columns of a raw row."""
    return len(transform["columns"])


def _row_error(row: int, message: str) -> InvalidInputError:
    return InvalidInputError(("body", "X", row), message)


def _encode_rows(transform: Mapping[str, Any], rows: Sequence[Sequence[Any]]) -> NDArray[Any]:
    columns = transform["columns"]
    width = len(transform["feature_names"])
    out = np.zeros((len(rows), width), dtype=np.float64)
    lookups = [
        {name: j for j, name in enumerate(column["categories"])}
        if column["kind"] == "categorical"
        else None
        for column in columns
    ]
    for i, row in enumerate(rows):
        if not isinstance(row, list | tuple):
            raise _row_error(i, "must be a list of values")
        if len(row) != len(columns):
            raise _row_error(
                i,
                f"has {len(row)} values; the dataset has {len(columns)} columns "
                f"{[c['name'] for c in columns]}",
            )
        position = 0
        for j, (column, lookup) in enumerate(zip(columns, lookups, strict=True)):
            value = row[j]
            if lookup is None:
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise InvalidInputError(
                        ("body", "X", i, j),
                        f"column {column['name']!r} is numeric; got {value!r}",
                    )
                number = float(value)
                if not np.isfinite(number):
                    raise InvalidInputError(("body", "X", i, j), "must be finite")
                out[i, position] = number
                position += 1
                continue
            key = value if isinstance(value, str) else _category_key(value)
            index = lookup.get(key) if key is not None else None
            if index is None:
                raise InvalidInputError(
                    ("body", "X", i, j),
                    f"{value!r} is not a category of column {column['name']!r} seen in "
                    f"training (one of {column['categories'][:20]})",
                )
            out[i, position + index] = 1.0
            position += len(column["categories"])
    return out


def _category_key(value: Any) -> str | None:
    """A JSON number given for a categorical column, as its CSV text would read."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return str(value)


def apply_transform(transform: Mapping[str, Any] | None, raw_rows: Any) -> NDArray[np.float64]:
    """The network's input for raw rows: one-hot encoding, then ``(x - mean) / scale``.

    Parameters
    ----------
    transform : dict or None
        A dataset's (or run's) transform; None is the identity.
    raw_rows : ndarray of shape (n, n_columns) or sequence of rows
        Numbers (an array) or rows mixing numbers and category names.

    Returns
    -------
    ndarray of shape (n, n_features), float64

    Raises
    ------
    InvalidInputError
        At ``["body", "X", row, column]``: a category never seen in training, text in a
        numeric column, a row of the wrong width.
    """
    if transform is None:
        return np.asarray(raw_rows, dtype=np.float64)
    if is_categorical(transform):
        if isinstance(raw_rows, np.ndarray):
            raw_rows = raw_rows.tolist()
        X = _encode_rows(transform, raw_rows)
    else:
        X = np.array(raw_rows, dtype=np.float64)
        if X.ndim == 2 and X.shape[1] != raw_width(transform):
            raise InvalidInputError(
                ("body", "X"),
                f"rows have {X.shape[1]} values; the dataset has {raw_width(transform)} columns",
            )
    if transform.get("mean") is not None:
        standardize_in_place(
            X,
            np.asarray(transform["mean"], dtype=np.float64),
            np.asarray(transform["scale"], dtype=np.float64),
        )
    return X


def labels_of(transform: Mapping[str, Any], outputs: NDArray[Any]) -> list[str]:
    """Class names of the argmax of each row of ``outputs`` (n, n_classes); a network
    with more outputs than named classes answers ``"<index>"`` for the extra ones."""
    classes = transform["classes"]
    indices = np.argmax(outputs, axis=1)
    return [classes[i] if i < len(classes) else str(i) for i in indices.tolist()]
