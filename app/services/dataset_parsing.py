"""Turn JSON or CSV input into dataset arrays, with errors that name the place.

``X`` becomes float64 of shape (n_samples, n_features). ``y`` becomes float64 of
shape (n_samples, n_targets), or int64 of shape (n_samples,) when it is a 1-D
list of non-negative integers (class labels; runs with a loss other than
``cross_entropy`` use them as a single numeric column).
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from app.errors import InvalidInputError

MAX_LABEL = 2**31 - 1
NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
"""A CSV cell that is a number: plain decimal or exponent notation, nothing a
spreadsheet would evaluate (``=SUM(A1:A3)``) and none of Python's extras
(``1_000``, ``inf``, ``nan``, ``0x10``)."""


@dataclass(frozen=True)
class ParsedDataset:
    """Validated arrays of a dataset."""

    X: NDArray[np.float64]
    y: NDArray[Any]
    target_type: str

    @property
    def n_targets(self) -> int:
        """Columns of ``y`` (1 for labels)."""
        return 1 if self.y.ndim == 1 else int(self.y.shape[1])


def check_cells(parsed: ParsedDataset, max_cells: int) -> None:
    """Reject a dataset of more than ``max_cells`` values in ``X`` and ``y`` together."""
    cells = int(parsed.X.size) + int(parsed.y.size)
    if cells > max_cells:
        raise InvalidInputError(
            ("body",),
            f"the dataset has {cells} values in X and y; at most {max_cells} "
            "(BACKPROP_MAX_DATASET_CELLS)",
        )


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_x(X: Sequence[Sequence[float]]) -> NDArray[np.float64]:
    if len(X) == 0:
        raise InvalidInputError(("body", "X"), "must contain at least one sample")
    width = len(X[0])
    if width == 0:
        raise InvalidInputError(("body", "X", 0), "a sample must have at least one feature")
    for index, row in enumerate(X):
        if len(row) != width:
            raise InvalidInputError(
                ("body", "X", index),
                f"ragged rows: row {index} has {len(row)} values, row 0 has {width}",
            )
    return np.asarray(X, dtype=np.float64).reshape(len(X), width)


def _check_number(value: Any, loc: tuple[str | int, ...]) -> float:
    if not _is_number(value):
        raise InvalidInputError(loc, f"must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise InvalidInputError(loc, f"must be finite, got {value!r}")
    return number


def _check_y(y: Sequence[Any]) -> tuple[NDArray[Any], str]:
    if len(y) == 0:
        raise InvalidInputError(("body", "y"), "must contain at least one sample")
    if isinstance(y[0], list):
        width = len(y[0])
        if width == 0:
            raise InvalidInputError(("body", "y", 0), "a sample must have at least one target")
        rows: list[list[float]] = []
        for i, row in enumerate(y):
            if not isinstance(row, list):
                raise InvalidInputError(("body", "y", i), "mixes lists and numbers")
            if len(row) != width:
                raise InvalidInputError(
                    ("body", "y", i),
                    f"ragged rows: row {i} has {len(row)} values, row 0 has {width}",
                )
            rows.append([_check_number(v, ("body", "y", i, j)) for j, v in enumerate(row)])
        return np.asarray(rows, dtype=np.float64).reshape(len(rows), width), "values"
    values = [_check_number(v, ("body", "y", i)) for i, v in enumerate(y)]
    if all(isinstance(v, int) and 0 <= v <= MAX_LABEL for v in y):
        return np.asarray(y, dtype=np.int64), "labels"
    return np.asarray(values, dtype=np.float64).reshape(-1, 1), "values"


def parse_json(X: Sequence[Sequence[float]], y: Sequence[Any]) -> ParsedDataset:
    """Validate a JSON dataset body.

    Raises
    ------
    InvalidInputError
        On empty data, ragged rows, non-numeric or non-finite values, or X and y of
        different lengths.
    """
    X_array = _check_x(X)
    y_array, target_type = _check_y(y)
    if y_array.shape[0] != X_array.shape[0]:
        raise InvalidInputError(
            ("body", "y"),
            f"y has {y_array.shape[0]} samples but X has {X_array.shape[0]}",
        )
    return ParsedDataset(X=X_array, y=y_array, target_type=target_type)


def _parse_cell(text: str, line: int, column: str) -> float:
    if NUMBER.fullmatch(text.strip()) is None:
        reason = "is not a number"
        if text.strip().lower().lstrip("+-") in {"nan", "inf", "infinity"}:
            reason = "is not finite"
        raise InvalidInputError(
            ("body", "file"), f"line {line}, column {column!r}: {text!r} {reason}"
        )
    number = float(text)
    if not math.isfinite(number):
        raise InvalidInputError(
            ("body", "file"), f"line {line}, column {column!r}: {text!r} is not finite"
        )
    return number


def parse_csv(
    content: bytes, targets: Sequence[str], max_cells: int | None = None
) -> ParsedDataset:
    """Parse a CSV file with a header row; ``targets`` name the y column(s).

    A single target column of non-negative integers becomes class labels. A UTF-8
    byte order mark is skipped, blank lines are skipped, fields may be quoted.
    Cells are parsed as numbers by :data:`NUMBER`, never evaluated.

    Raises
    ------
    InvalidInputError
        With the line number for malformed rows and cells, bytes that are not
        UTF-8, and a file of more than ``max_cells`` values (as soon as it is seen).
    """
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        start = exc.start + (3 if content.startswith(b"\xef\xbb\xbf") else 0)
        line = content[:start].count(b"\n") + 1
        raise InvalidInputError(
            ("body", "file"), f"line {line}: not UTF-8 text (byte {start} is {content[start]:#04x})"
        ) from None
    targets = [t.strip() for t in targets if t.strip()]
    if not targets:
        raise InvalidInputError(("body", "target"), "name at least one target column")
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
        if header is None or not any(cell.strip() for cell in header):
            raise InvalidInputError(("body", "file"), "line 1: a header row is required")
        header = [cell.strip() for cell in header]
        duplicates = sorted({name for name in header if header.count(name) > 1})
        if duplicates:
            raise InvalidInputError(("body", "file"), f"line 1: duplicate column(s) {duplicates}")
        missing = [t for t in targets if t not in header]
        if missing:
            raise InvalidInputError(
                ("body", "target"), f"column(s) {missing} not in the header {header}"
            )
        target_idx = [header.index(t) for t in targets]
        feature_idx = [i for i in range(len(header)) if i not in target_idx]
        if not feature_idx:
            raise InvalidInputError(
                ("body", "target"), "every column is a target; no features left"
            )
        X_rows: list[list[float]] = []
        y_rows: list[list[float]] = []
        y_text: list[str] = []
        for row in reader:
            line = reader.line_num
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise InvalidInputError(
                    ("body", "file"),
                    f"line {line}: expected {len(header)} fields, got {len(row)}",
                )
            if max_cells is not None and (len(X_rows) + 1) * len(header) > max_cells:
                raise InvalidInputError(
                    ("body", "file"),
                    f"line {line}: more than {max_cells} values (BACKPROP_MAX_DATASET_CELLS)",
                )
            X_rows.append([_parse_cell(row[i], line, header[i]) for i in feature_idx])
            y_rows.append([_parse_cell(row[i], line, header[i]) for i in target_idx])
            if len(target_idx) == 1:
                y_text.append(row[target_idx[0]].strip())
    except csv.Error as exc:
        raise InvalidInputError(("body", "file"), f"line {reader.line_num}: {exc}") from None
    if not X_rows:
        raise InvalidInputError(("body", "file"), "no data rows after the header")
    X = np.asarray(X_rows, dtype=np.float64)
    if y_text and all(t.isdigit() and int(t) <= MAX_LABEL for t in y_text):
        return ParsedDataset(
            X=X, y=np.asarray([int(t) for t in y_text], np.int64), target_type="labels"
        )
    return ParsedDataset(X=X, y=np.asarray(y_rows, dtype=np.float64), target_type="values")
