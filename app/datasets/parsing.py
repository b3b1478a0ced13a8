"""Turn JSON or CSV input into dataset arrays, with errors that name the place.

``X`` becomes float64 of shape (n_samples, n_features). ``y`` becomes float64 of
shape (n_samples, n_targets), or int64 of shape (n_samples,) when it is a 1-D
list of non-negative integers (class labels; runs with a loss other than
``cross_entropy`` use them as a single numeric column).

JSON bodies are read by :mod:`app.datasets.json_arrays` (numbers straight into arrays) and
turned into a dataset by :func:`dataset_from_arrays`. CSV files take a vectorized
path (:func:`numpy.loadtxt`, after checking that the data rows hold nothing but
number characters) and fall back to an exact, cell-by-cell path that either parses
what the fast path does not (lines of empty cells, which are skipped) or finds the
first bad cell and names its line and column. Both are linear in the file's size.
"""

from __future__ import annotations

import csv
import io
import math
import re
import warnings
from array import array
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from app.datasets.blobs import pack
from app.datasets.json_arrays import MAX_LABEL, NumericArray
from app.datasets.tabular import MAX_CATEGORIES, Column, Missing, encode_table
from app.errors import InvalidInputError

NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
"""A CSV cell that is a number: plain decimal or exponent notation, nothing a
spreadsheet would evaluate (``=SUM(A1:A3)``) and none of Python's extras
(``1_000``, ``inf``, ``nan``, ``0x10``)."""

_NOT_NUMERIC = re.compile(rb'[^0-9eE+\-.,"\s]')
"""A byte that no numeric CSV data row contains: when the data rows have none, every
cell is made of number characters only, so NumPy's parser accepts exactly the cells
:data:`NUMBER` accepts (it rejects the malformed ones, such as ``1..2``)."""

_NOT_DIGIT = re.compile(rb"[.eE+\-]")
_ANY_CELL = re.compile(rb"[^\s,]")
_BOM = b"\xef\xbb\xbf"
CELLS_MESSAGE = "more than {max_cells} values (BACKPROP_MAX_DATASET_CELLS)"


@dataclass(frozen=True)
class ParsedDataset:
    """Validated arrays of a dataset.

    ``blob``, when set, is the encoded container (:func:`app.datasets.blobs.encode_arrays`)
    that ``X`` and ``y`` are read-only views into (:func:`packed`).
    """

    X: NDArray[np.float64]
    y: NDArray[Any]
    target_type: str
    blob: bytearray | None = None
    feature_names: tuple[str, ...] | None = None
    """Names of the (encoded) features; None: ``x0, x1, ...``."""
    target_names: tuple[str, ...] | None = None
    """Names of the target columns; None: ``y0, y1, ...``."""
    classes: tuple[str, ...] | None = None
    """Class names of a categorical target (label ``i`` is ``classes[i]``)."""
    columns: tuple[dict[str, Any], ...] | None = None
    """The raw feature columns (:mod:`app.datasets.transforms`); None: all numeric."""
    transform: dict[str, Any] | None = None
    """Set by :func:`app.datasets.options.finish`."""

    @property
    def n_targets(self) -> int:
        """Columns of ``y`` (1 for labels)."""
        return 1 if self.y.ndim == 1 else int(self.y.shape[1])


def packed(parsed: ParsedDataset) -> ParsedDataset:
    """The same dataset with ``X`` and ``y`` moved into their encoded blob: once the
    caller drops ``parsed``, the arrays exist once (a large upload's peak is the blob
    plus what the database driver copies, not the arrays besides)."""
    blob, views = pack({"X": parsed.X, "y": parsed.y})
    return replace(parsed, X=views["X"], y=views["y"], blob=blob)


def check_cells(parsed: ParsedDataset, max_cells: int) -> None:
    """Reject a dataset of more than ``max_cells`` values in ``X`` and ``y`` together."""
    cells = int(parsed.X.size) + int(parsed.y.size)
    if cells > max_cells:
        raise InvalidInputError(
            ("body",),
            f"the dataset has {cells} values in X and y; at most {max_cells} "
            "(BACKPROP_MAX_DATASET_CELLS)",
        )


# --------------------------------------------------------------------------- JSON


def dataset_from_arrays(X: NumericArray, y: NumericArray) -> ParsedDataset:
    """The dataset of a JSON body's ``X`` and ``y`` as :mod:`app.datasets.json_arrays` read them.

    Raises
    ------
    InvalidInputError
        On empty ``X`` or ``y``, or X and y of different lengths (the reader already
        refused ragged rows and entries that are not finite numbers).
    """
    if X.rows == 0:
        raise InvalidInputError(("body", "X"), "must contain at least one sample")
    if y.rows == 0:
        raise InvalidInputError(("body", "y"), "must contain at least one sample")
    if y.rows != X.rows:
        raise InvalidInputError(("body", "y"), f"y has {y.rows} samples but X has {X.rows}")
    if y.values.ndim == 2:
        return ParsedDataset(X=X.values, y=y.values, target_type="values")
    if y.all_labels:
        return ParsedDataset(X=X.values, y=y.values.astype(np.int64), target_type="labels")
    return ParsedDataset(X=X.values, y=y.values.reshape(-1, 1), target_type="values")


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
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        shown = "an integer too large for a float" if isinstance(value, int) else repr(value)
        raise InvalidInputError(loc, f"must be finite, got {shown}")
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
    """Validate a dataset given as Python lists (the built-in datasets, the client's tests).

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


# --------------------------------------------------------------------------- CSV


@dataclass(frozen=True)
class _Header:
    names: list[str]
    data_offset: int
    """Byte offset of the first data line in the file."""
    lines: int
    """Physical lines the header took."""


def _file_error(message: str) -> InvalidInputError:
    return InvalidInputError(("body", "file"), message)


def _decode_error(content: bytes, exc: UnicodeDecodeError, offset: int) -> InvalidInputError:
    start = exc.start + offset
    line = content[:start].count(b"\n") + 1
    return _file_error(f"line {line}: not UTF-8 text (byte {start} is {content[start]:#04x})")


def _read_header(content: bytes) -> _Header:
    """The first CSV record (it may span lines inside quotes) and where the data starts."""
    offset = len(_BOM) if content.startswith(_BOM) else 0
    position = offset
    lines = 0

    def physical_lines() -> Iterator[str]:
        nonlocal position, lines
        while position < len(content):
            end = content.find(b"\n", position)
            end = len(content) if end < 0 else end + 1
            try:
                line = content[position:end].decode("utf-8")
            except UnicodeDecodeError as exc:
                raise _decode_error(content, exc, position) from None
            position = end
            lines += 1
            yield line

    reader = csv.reader(physical_lines(), strict=True)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise _file_error(f"line {lines}: {exc}") from None
    if header is None or not any(cell.strip() for cell in header):
        raise _file_error("line 1: a header row is required")
    return _Header(names=[cell.strip() for cell in header], data_offset=position, lines=lines)


def _columns(header: list[str], targets: Sequence[str]) -> tuple[list[int], list[int]]:
    """The target and feature column indices (linear in the number of columns)."""
    duplicates = sorted(name for name, count in Counter(header).items() if count > 1)
    if duplicates:
        raise _file_error(f"line 1: duplicate column(s) {duplicates}")
    position = {name: index for index, name in enumerate(header)}
    missing = [t for t in targets if t not in position]
    if missing:
        raise InvalidInputError(
            ("body", "target"), f"column(s) {missing} not in the header {header}"
        )
    target_idx = [position[t] for t in targets]
    chosen = set(target_idx)
    feature_idx = [i for i in range(len(header)) if i not in chosen]
    if not feature_idx:
        raise InvalidInputError(("body", "target"), "every column is a target; no features left")
    return target_idx, feature_idx


def parse_csv(
    content: bytes,
    targets: Sequence[str],
    max_cells: int | None = None,
    missing: Missing = "error",
) -> ParsedDataset:
    """Parse a CSV file with a header row; ``targets`` name the y column(s).

    A single target column of non-negative integers (digits only) becomes class
    labels. A UTF-8 byte order mark is skipped, blank lines are skipped, fields may
    be quoted. Cells are parsed as numbers by :data:`NUMBER`, never evaluated.
    A column of text cells is categorical (:mod:`app.datasets.tabular`); empty cells are
    missing, handled as ``missing`` says.

    Raises
    ------
    InvalidInputError
        With the line number for malformed rows and cells, bytes that are not
        UTF-8, and a file of more than ``max_cells`` values (the line where the
        limit is crossed).
    """
    targets = [t.strip() for t in targets if t.strip()]
    if not targets:
        raise InvalidInputError(("body", "target"), "name at least one target column")
    header = _read_header(content)
    target_idx, feature_idx = _columns(header.names, targets)
    fast = _arrow_parse(content, header, target_idx, feature_idx, max_cells)
    if fast is None:
        fast = _fast_parse(content, header, target_idx, feature_idx, max_cells)
    if fast is None:
        return _exact_parse(content, header, target_idx, feature_idx, max_cells, missing)
    return replace(
        fast,
        feature_names=tuple(header.names[i] for i in feature_idx),
        target_names=tuple(header.names[i] for i in target_idx),
    )


_DIGITS = r"^[0-9]+$"


def _arrow_parse(
    content: bytes,
    header: _Header,
    target_idx: list[int],
    feature_idx: list[int],
    max_cells: int | None,
) -> ParsedDataset | None:
    """The dataset by pyarrow's CSV reader (C++, without the GIL) for the common file:
    unquoted numbers only. None whenever anything is unusual (quotes, whitespace
    around a number, an empty or malformed cell, a ragged row, a value that is not
    finite, more than ``max_cells`` values): :func:`_fast_parse` and the exact path
    then decide, with their line-numbered errors."""
    start = header.data_offset
    if _NOT_NUMERIC.search(content, start) is not None or content.find(b'"', start) >= 0:
        return None
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pa_csv

    names = [f"c{i}" for i in range(len(header.names))]
    types = {name: pa.float64() for name in names}
    labels = len(target_idx) == 1
    if labels:
        types[names[target_idx[0]]] = pa.string()
    capacity = content.count(b"\n", start) + 1  # at least the data rows
    if max_cells is not None:
        capacity = min(capacity, max_cells // len(names) + 1)
    X = np.empty((capacity, len(feature_idx)))
    y = np.empty((capacity, len(target_idx)))
    rows = 0
    whole = labels
    try:
        reader = pa_csv.open_csv(
            pa.py_buffer(memoryview(content)[start:]),
            read_options=pa_csv.ReadOptions(column_names=names, block_size=ARROW_BLOCK_BYTES),
            parse_options=pa_csv.ParseOptions(delimiter=",", quote_char=False),
            convert_options=pa_csv.ConvertOptions(
                column_types=types, null_values=[], strings_can_be_null=False
            ),
            memory_pool=pa.system_memory_pool(),
        )
        for batch in reader:
            n = batch.num_rows
            if rows + n > capacity:
                return None  # past the cell limit: the other paths name the line
            for j, index in enumerate(feature_idx):
                X[rows : rows + n, j] = batch.column(index).to_numpy()
            for j, index in enumerate(target_idx):
                column = batch.column(index)
                if labels:
                    whole = whole and bool(
                        pc.all(pc.match_substring_regex(column, _DIGITS)).as_py()
                    )
                    column = column.cast(pa.float64())
                y[rows : rows + n, j] = column.to_numpy()
            rows += n
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    if rows == 0 or (max_cells is not None and rows * len(names) > max_cells):
        return None
    X, y = X[:rows], y[:rows]
    if not (np.isfinite(X).all() and np.isfinite(y).all()):
        return None
    if whole and float(y.max()) <= MAX_LABEL:
        return ParsedDataset(X=X, y=y[:, 0].astype(np.int64), target_type="labels")
    return ParsedDataset(X=X, y=y, target_type="values")


ARROW_BLOCK_BYTES = 4 << 20
"""Bytes of CSV per pyarrow batch: the parsed batch is copied into ``X`` and dropped."""


BLOCK_BYTES = 1 << 20
"""Bytes of data rows per :func:`numpy.loadtxt` call: its C parser holds the GIL for
one call, so blocks keep that short (the event loop's thread waits for the GIL)."""


def _loadtxt(block: bytes, **options: Any) -> NDArray[Any]:
    with warnings.catch_warnings():
        # "Input line 3 contained no data": blank lines are skipped, as they should be.
        warnings.simplefilter("ignore", UserWarning)
        return np.loadtxt(
            io.BytesIO(block),
            delimiter=",",
            quotechar='"',
            comments=None,
            ndmin=2,
            encoding="ascii",
            **options,
        )


def _blocks(content: bytes, start: int) -> Iterator[bytes]:
    """The data rows in pieces of about BLOCK_BYTES, cut after a newline that is outside
    quotes (an even number of ``"`` before it: a quoted field may hold a newline)."""
    while start < len(content):
        end = content.rfind(b"\n", start, start + BLOCK_BYTES) + 1
        if end <= start:  # a line longer than a block: up to its end
            end = start + BLOCK_BYTES
        while end < len(content) and content.count(b'"', start, end) % 2:
            newline = content.find(b"\n", end)
            end = len(content) if newline < 0 else newline + 1
        if end < len(content) and content[end - 1 : end] != b"\n":
            newline = content.find(b"\n", end)
            end = len(content) if newline < 0 else newline + 1
        yield content[start:end]
        start = end


def _fast_parse(
    content: bytes,
    header: _Header,
    target_idx: list[int],
    feature_idx: list[int],
    max_cells: int | None,
) -> ParsedDataset | None:
    """The dataset by NumPy's parser, block by block into preallocated arrays, or None
    when the exact path must decide (an unusual but valid file, or an error to locate).

    Raises
    ------
    InvalidInputError
        When the file has more than ``max_cells`` values, at the line that crosses it.
    """
    width = len(header.names)
    if _NOT_NUMERIC.search(content, header.data_offset) is not None:
        return None  # bytes no number has: an error to locate (or a line of empty cells)
    allowed = None if max_cells is None else max_cells // width
    if allowed == 0:
        return None  # not even one row fits: the exact path refuses at the first one
    capacity = content.count(b"\n", header.data_offset) + 1  # at least the data rows
    if allowed is not None:
        capacity = min(capacity, allowed)
    X = np.empty((capacity, len(feature_idx)))
    y = np.empty((capacity, len(target_idx)))
    labels = len(target_idx) == 1
    rows = 0
    for block in _blocks(content, header.data_offset):
        if _ANY_CELL.search(block) is None:
            continue
        try:
            table = _loadtxt(block, dtype=np.float64)
        except ValueError:
            return None
        if table.shape[1] != width:
            return None
        if allowed is not None and rows + table.shape[0] > allowed:
            if content.find(b'"', header.data_offset) >= 0:
                return None  # a record may span lines: the exact path counts them
            line = _line_of_row(content, header, allowed)
            raise _file_error(f"line {line}: {CELLS_MESSAGE.format(max_cells=max_cells)}")
        X[rows : rows + table.shape[0]] = table[:, feature_idx]
        y[rows : rows + table.shape[0]] = table[:, target_idx]
        labels = labels and _are_labels(block, target_idx[0], table[:, target_idx[0]])
        rows += table.shape[0]
    if rows == 0:
        return None  # no data rows: the exact path says so
    X, y = X[:rows], y[:rows]
    if labels:
        return ParsedDataset(X=X, y=y[:, 0].astype(np.int64), target_type="labels")
    return ParsedDataset(X=X, y=y, target_type="values")


def _line_of_row(content: bytes, header: _Header, row: int) -> int:
    """The line number of data row ``row`` (0-based; blank lines are not rows) of a
    file without quotes (one record per line)."""
    position = header.data_offset
    line = header.lines
    seen = -1
    while seen < row:
        end = content.find(b"\n", position)
        end = len(content) if end < 0 else end
        line += 1
        if content[position:end].strip():
            seen += 1
        position = end + 1
    return line


def _are_labels(block: bytes, column: int, values: NDArray[np.float64]) -> bool:
    """Whether a block's target cells are class labels: digits only (as text) and at
    most MAX_LABEL."""
    if not (np.all(values >= 0) and np.all(values <= MAX_LABEL)):
        return False
    if _NOT_DIGIT.search(block) is None:
        return True
    cells = _loadtxt(block, dtype=str, usecols=[column])[:, 0]
    return bool(np.all(np.char.isdigit(np.char.strip(cells))))


def _parse_cell(text: str, line: int, column: str) -> float:
    if NUMBER.fullmatch(text.strip()) is None:
        reason = "is not a number"
        if text.strip().lower().lstrip("+-") in {"nan", "inf", "infinity"}:
            reason = "is not finite"
        raise _file_error(f"line {line}, column {column!r}: {text!r} {reason}")
    number = float(text)
    if not math.isfinite(number):
        raise _file_error(f"line {line}, column {column!r}: {text!r} is not finite")
    return number


_NUMBER_LIKE = re.compile(r"[0-9eE+\-.,_]+|[+-]?0[xXoObB][0-9a-fA-F_]+")


def _looks_numeric(cell: str) -> bool:
    """A cell meant as a number though :data:`NUMBER` refuses it (``1_000``, ``0x10``,
    ``1..2``, ``inf``): an error, never a category."""
    if _NUMBER_LIKE.fullmatch(cell) is not None:
        return True
    try:
        float(cell)
    except ValueError:
        return False
    return True


class _CellColumn:
    """One CSV column as the exact path reads it: numbers (NaN when not a number) and
    category codes (-1 when not text), so it can still become either kind."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.values = array("d")
        self.codes = array("q")
        self.categories: dict[str, int] = {}
        self.first_text: tuple[int, str] | None = None
        self.has_number = False
        self.whole = True

    def add(self, text: str, line: int) -> None:
        cell = text.strip()
        if not cell:
            self.values.append(math.nan)
            self.codes.append(-1)
            return
        if NUMBER.fullmatch(cell) is not None:
            self.values.append(_parse_cell(text, line, self.name))
            self.codes.append(-1)
            self.has_number = True
            self.whole = self.whole and cell.isdigit() and int(cell) <= MAX_LABEL
            return
        if _looks_numeric(cell):
            _parse_cell(text, line, self.name)  # raises: a malformed number, not a category
        if self.first_text is None:
            self.first_text = (line, text)
        if cell[0] in "=@":
            raise _file_error(
                f"line {line}, column {self.name!r}: {text!r} is not a number, and a "
                "category may not start with = or @ (a spreadsheet formula)"
            )
        code = self.categories.setdefault(cell, len(self.categories))
        if len(self.categories) > MAX_CATEGORIES:
            raise _file_error(
                f"line {line}, column {self.name!r}: more than {MAX_CATEGORIES} distinct "
                "non-numeric values; a categorical column may have at most "
                f"{MAX_CATEGORIES} (an id column? leave it out)"
            )
        self.values.append(math.nan)
        self.codes.append(code)

    def mixed_error(self) -> tuple[int, InvalidInputError] | None:
        """A column of numbers with text in it: the first text cell is the error."""
        if self.first_text is None or not self.has_number:
            return None
        line, text = self.first_text
        try:
            _parse_cell(text, line, self.name)
        except InvalidInputError as error:
            return line, error
        raise AssertionError("unreachable: a text cell parsed as a number")  # pragma: no cover

    def column(self) -> Column:
        if self.first_text is not None:
            codes = np.frombuffer(self.codes, dtype=np.int64)
            return Column(name=self.name, codes=codes, categories=list(self.categories))
        values = np.frombuffer(self.values, dtype=np.float64)
        return Column(name=self.name, values=values, whole=self.whole)


def _exact_parse(
    content: bytes,
    header: _Header,
    target_idx: list[int],
    feature_idx: list[int],
    max_cells: int | None,
    missing: Missing = "error",
) -> ParsedDataset:
    """Cell by cell with :mod:`csv`: parses what the fast path left (text columns, empty
    cells), or raises the exact error (line, column, reason). Values go into flat
    arrays, never lists of lists.

    A column whose non-empty cells are all text is categorical; a column mixing numbers
    and text is an error at its first text cell."""
    try:
        text = content[header.data_offset :].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _decode_error(content, exc, header.data_offset) from None
    names = header.names
    width = len(names)
    used = sorted(target_idx + feature_idx)
    cells = [_CellColumn(names[i]) for i in used]
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    lines = array("q")
    line = header.lines
    try:
        for row in reader:
            line = header.lines + reader.line_num
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) != width:
                raise _file_error(f"line {line}: expected {width} fields, got {len(row)}")
            if max_cells is not None and (len(lines) + 1) * width > max_cells:
                raise _file_error(f"line {line}: {CELLS_MESSAGE.format(max_cells=max_cells)}")
            for column, index in zip(cells, used, strict=True):
                column.add(row[index], line)
            lines.append(line)
    except csv.Error as exc:
        raise _file_error(f"line {header.lines + reader.line_num}: {exc}") from None
    if not lines:
        raise _file_error("no data rows after the header")
    mixed = [found for column in cells if (found := column.mixed_error()) is not None]
    if mixed:
        raise min(mixed, key=lambda found: found[0])[1]
    row_lines = np.frombuffer(lines, dtype=np.int64)
    return encode_table(
        [column.column() for column in cells],
        [names[i] for i in target_idx],
        missing=missing,
        locate=lambda row: f"line {int(row_lines[row])}",
        max_cells=max_cells,
    )
