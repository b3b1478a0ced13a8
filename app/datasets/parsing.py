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
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from itertools import chain, compress
from operator import itemgetter
from typing import Any, cast

import numpy as np
from numpy.typing import NDArray

from app.datasets.blobs import pack
from app.datasets.json_arrays import MAX_LABEL, NumericArray
from app.datasets.tabular import MAX_CATEGORIES, Column, Missing, Numbers, Table, encode_table
from app.errors import InvalidInputError

NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
"""A CSV cell that is a number: plain decimal or exponent notation, nothing a
spreadsheet would evaluate (``=SUM(A1:A3)``) and none of Python's extras
(``1_000``, ``inf``, ``nan``, ``0x10``)."""

NUMERIC_BYTES = b'0123456789eE+-.,"' + b" \t\n\r\f\v"
"""The bytes of numeric CSV data rows (digits, exponent and sign characters, the
point, the separator, quotes and whitespace): when the data rows have no other byte,
every cell is made of number characters only, so NumPy's parser accepts exactly the
cells :data:`NUMBER` accepts (it rejects the malformed ones, such as ``1..2``)."""


SCAN_BYTES = 1 << 16
"""Bytes per call when a whole file is scanned (a regular expression, a count): the
call holds the GIL, so a 54 MiB file in one call kept the event loop waiting 0.1 s,
and a regular expression over 1 MiB at a time 6 ms per call (/healthz answered in
up to 136 ms during a 54 MiB CSV upload); 64 KiB is under a third of a millisecond."""


def found_in(pattern: re.Pattern[bytes], content: bytes, start: int) -> bool:
    """Whether ``pattern`` (a match and what it looks ahead at: at most 8 bytes) occurs
    in ``content[start:]``, searched :data:`SCAN_BYTES` at a time (each window overlaps
    the next by 8 bytes; a match starting in the overlap is the next window's)."""
    for position in range(start, len(content), SCAN_BYTES):
        found = pattern.search(content, position, min(len(content), position + SCAN_BYTES + 8))
        if found is not None and found.start() < position + SCAN_BYTES:
            return True
    return False


def any_byte_outside(allowed: bytes, content: bytes, start: int) -> bool:
    """Whether ``content[start:]`` has a byte that is not in ``allowed``, looked for
    :data:`SCAN_BYTES` at a time (``bytes.translate`` deleting the allowed bytes: ten
    times the speed of a regular expression's negated character class)."""
    return any(
        content[position : position + SCAN_BYTES].translate(None, allowed)
        for position in range(start, len(content), SCAN_BYTES)
    )


def count_in(content: bytes, needle: bytes, start: int) -> int:
    """``content.count(needle, start)`` for a one-byte ``needle``, :data:`SCAN_BYTES`
    at a time."""
    return sum(
        content.count(needle, position, position + SCAN_BYTES)
        for position in range(start, len(content), SCAN_BYTES)
    )


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
    blob: memoryview | None = None
    feature_names: tuple[str, ...] | None = None
    """Names of the (encoded) features; None: ``x0, x1, ...``."""
    target_names: tuple[str, ...] | None = None
    """Names of the target columns; None: ``y0, y1, ...``."""
    classes: tuple[str, ...] | None = None
    """Class names of a categorical target (label ``i`` is ``classes[i]``)."""
    columns: Sequence[dict[str, Any]] | None = None
    """The raw feature columns (:mod:`app.datasets.transforms`; a
    :class:`~app.datasets.tabular.ColumnKinds`); None: all numeric."""
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
    return _Header(names=list(map(str.strip, header)), data_offset=position, lines=lines)


def repeated(names: Sequence[str]) -> list[str]:
    """The names that occur more than once, sorted. A set first: distinct names, the
    usual case, cost no ``Counter`` (100,000 names: 9 ms instead of 26)."""
    if len(set(names)) == len(names):
        return []
    return sorted(name for name, seen in Counter(names).items() if seen > 1)


def _columns(header: list[str], targets: Sequence[str]) -> tuple[list[int], list[int]]:
    """The target and feature column indices (linear in the number of columns, and
    little Python work per column: a 100,000-column header has about 45 ms to be read
    and parsed at 20 MB/s)."""
    duplicates = repeated(header)
    if duplicates:
        raise _file_error(f"line 1: duplicate column(s) {duplicates}")
    position = dict(zip(header, range(len(header)), strict=True)) if len(targets) > 8 else None
    missing = [t for t in targets if t not in (header if position is None else position)]
    if missing:
        raise InvalidInputError(
            ("body", "target"), f"column(s) {missing} not in the header {header}"
        )
    target_idx = [header.index(t) if position is None else position[t] for t in targets]
    feature = np.ones(len(header), dtype=bool)
    feature[target_idx] = False
    feature_idx: list[int] = np.flatnonzero(feature).tolist()
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
        feature_names=tuple(map(header.names.__getitem__, feature_idx)),
        target_names=tuple(map(header.names.__getitem__, target_idx)),
    )


_DIGITS = r"^[0-9]+$"

ARROW_MAX_COLUMNS = 1024
"""Widest file pyarrow's CSV reader parses. It costs about 4.2 KB and 5.5 us per column
whatever the rows (100,000 columns: 424 MiB for a one-row file; 2,048 x 2,000: 132 MiB,
27 MB/s), where NumPy's blockwise ``loadtxt`` (:func:`_fast_parse`) takes 20 MiB and
42 MiB (52 MB/s). pyarrow is the faster below about 1,000 columns (20 columns: 108
against 81 MB/s; 784: 89 against 88; 1,500: 77 against 88)."""


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
    then decide, with their line-numbered errors. Also None past
    :data:`ARROW_MAX_COLUMNS` columns."""
    if len(header.names) > ARROW_MAX_COLUMNS:
        return None
    start = header.data_offset
    if any_byte_outside(NUMERIC_BYTES, content, start) or content.find(b'"', start) >= 0:
        return None
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pa_csv

    names = [f"c{i}" for i in range(len(header.names))]
    types = {name: pa.float64() for name in names}
    labels = len(target_idx) == 1
    if labels:
        types[names[target_idx[0]]] = pa.string()
    capacity = count_in(content, b"\n", start) + 1  # at least the data rows
    if max_cells is not None:
        capacity = min(capacity, max_cells // len(names) + 1)
    X = np.empty((capacity, len(feature_idx)))
    y = np.empty((capacity, len(target_idx)))
    rows = 0
    whole = labels
    try:
        reader = pa_csv.open_csv(
            pa.py_buffer(memoryview(content)[start:]),
            read_options=pa_csv.ReadOptions(
                column_names=names, block_size=ARROW_BLOCK_BYTES, use_threads=False
            ),
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


ARROW_BLOCK_BYTES = 1 << 20
"""Bytes of CSV per pyarrow batch: the parsed batch is copied into ``X`` and dropped.
Read on one thread (the server's other requests keep the other core): for a 54 MiB
12,000 x 785 file the parse peaked 172 MiB above the baseline with 4 MiB blocks on
pyarrow's threads (87 MB/s), 124 MiB with 1 MiB blocks on one (83 MB/s)."""


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


WIDE_COLUMNS = 16_384
"""Columns past which :func:`_fast_parse` reads each data row in segments
(:func:`_wide_table`): one :func:`numpy.loadtxt` call holds the GIL for the whole of
its input, 16 ms for one 100,000-cell row on an idle machine and twice that under load,
while the event loop's thread waits for it."""

SEGMENT_BYTES = 32 * 1024
"""Bytes of a wide row per :func:`numpy.loadtxt` call (cut at the next comma)."""


def _segments(line: bytes) -> Iterator[bytes]:
    """``line`` in pieces of about SEGMENT_BYTES, each cut just before a comma that is
    dropped: the pieces' cells are the line's cells, in order."""
    start = 0
    while True:
        comma = line.find(b",", start + SEGMENT_BYTES)
        if comma < 0:
            yield line[start:]
            return
        yield line[start:comma]
        start = comma + 1


def _wide_table(block: bytes, width: int) -> NDArray[np.float64] | None:
    """The rows of ``block``, shape (n_rows, width), parsed a segment of each row at a
    time; None when a row is not ``width`` numbers (the exact path then decides).

    Only for blocks without quotes or lone carriage returns (a segment must not cut a
    quoted field; a lone ``\r`` ends a line for :func:`numpy.loadtxt`): others are
    parsed whole, as :func:`numpy.loadtxt` does.
    """
    rows = []
    for line in _lines(block):
        parts = [_loadtxt(segment, dtype=np.float64) for segment in _segments(line)]
        if any(part.shape[0] != 1 for part in parts):
            return None
        row = np.concatenate([part[0] for part in parts])
        if row.shape[0] != width:
            return None
        rows.append(row)
    return np.stack(rows) if rows else np.empty((0, width))


def _table(block: bytes, width: int) -> NDArray[np.float64] | None:
    """The numbers of ``block``, shape (n_rows, width), or None when it is not that."""
    if _segmented(block, width):
        return _wide_table(block, width)
    table = _loadtxt(block, dtype=np.float64)
    return table if table.shape[1] == width else None


def _segmented(block: bytes, width: int) -> bool:
    """Whether ``block`` is read a row segment at a time (see :func:`_wide_table`)."""
    return (
        width > WIDE_COLUMNS and block.find(b'"') < 0 and block.count(b"\r") == block.count(b"\r\n")
    )


def _cells_of_column(block: bytes, column: int, width: int) -> list[bytes]:
    """The cells of ``column`` in the non-empty lines of ``block`` (no quotes in it), split
    from the nearer end of each line."""
    if column < width // 2:
        return [line.split(b",", column + 1)[column] for line in _lines(block)]
    return [line.rsplit(b",", width - column)[1] for line in _lines(block)]


def _lines(block: bytes) -> list[bytes]:
    """The non-empty lines of ``block``, without their ``\n`` or ``\r\n`` (empty lines
    are skipped, as :func:`numpy.loadtxt` skips them)."""
    return [line for raw in block.split(b"\n") if (line := raw.removesuffix(b"\r"))]


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
    if any_byte_outside(NUMERIC_BYTES, content, header.data_offset):
        return None  # bytes no number has: an error to locate (or a line of empty cells)
    allowed = None if max_cells is None else max_cells // width
    if allowed == 0:
        return None  # not even one row fits: the exact path refuses at the first one
    capacity = count_in(content, b"\n", header.data_offset) + 1  # at least the data rows
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
            table = _table(block, width)
        except ValueError:
            return None
        if table is None:
            return None
        if allowed is not None and rows + table.shape[0] > allowed:
            if content.find(b'"', header.data_offset) >= 0:
                return None  # a record may span lines: the exact path counts them
            line = _line_of_row(content, header, allowed)
            raise _file_error(f"line {line}: {CELLS_MESSAGE.format(max_cells=max_cells)}")
        X[rows : rows + table.shape[0]] = table[:, feature_idx]
        y[rows : rows + table.shape[0]] = table[:, target_idx]
        labels = labels and _are_labels(block, target_idx[0], width, table[:, target_idx[0]])
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


def _are_labels(block: bytes, column: int, width: int, values: NDArray[np.float64]) -> bool:
    """Whether a block's target cells are class labels: digits only (as text) and at
    most MAX_LABEL."""
    if not (np.all(values >= 0) and np.all(values <= MAX_LABEL)):
        return False
    if _NOT_DIGIT.search(block) is None:
        return True
    if _segmented(block, width):  # not a whole wide row per loadtxt call
        return all(cell.strip().isdigit() for cell in _cells_of_column(block, column, width))
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


_NOT_NUMBER_CHARACTER = re.compile(r"[^0-9eE+\-.\x00]")
"""A character of no :data:`NUMBER`. Over the others (digits, ``eE+-.``) ``float``
accepts exactly what :data:`NUMBER` does, so cells joined by NUL without such a
character are numbers when ``float`` takes each (no ``inf``, ``nan``, ``1_000``)."""

_NOT_DIGIT_CHARACTER = re.compile(r"[^0-9\x00]")

_CHARACTER_KIND = np.full(129, 2, dtype=np.uint8)
"""Kind of a character by its code point (the last entry for every code from 128):
0 a digit or NUL, 1 another character of :data:`NUMBER` (``eE+-.``), 2 any other
(:data:`_NOT_NUMBER_CHARACTER`)."""
_CHARACTER_KIND[np.frombuffer(b"0123456789\x00", dtype=np.uint8)] = 0
_CHARACTER_KIND[np.frombuffer(b"eE+-.", dtype=np.uint8)] = 1

EXACT_BLOCK_CELLS = 1 << 16
"""Cells the exact path holds as Python strings at once (rows of a block x columns)."""

WIDE_COLUMNS = 256
"""Columns from which the exact path reads a block's numeric columns all at once
(:func:`_wide_numbers`) instead of one by one (:meth:`_CellTable.add_columns`: about
13 us of NumPy calls per column and block, 1.3 s for a one-row file of 100,000 columns
where 20 MB/s leaves 0.45 us per column). Measured (CPU time, rows from :mod:`csv`,
4-decimal numbers, one text column): 128 columns 31 MB/s one by one against 31 at
once; 256: 29 against 32; 1,024: 23 against 33; 128 columns of which half text: 23
against 18 (the text columns go one by one either way)."""


@dataclass(frozen=True)
class _Numbers:
    """A column's part of a block that is numbers and empty cells only."""

    values: NDArray[np.float64]
    """(rows,): the numbers, NaN for empty cells."""
    any_number: bool
    """Whether a cell is not empty."""
    labels: bool
    """Whether every number is written with digits only."""
    cell: Callable[[int], str]
    """The cell of a row as read (for the message of a number that overflows)."""


@dataclass(frozen=True)
class _Wide:
    """A block's cells read at once: its numeric columns converted, its others found.

    A column is numeric when none of its cells has a character of no number
    (:data:`_NOT_NUMBER_CHARACTER`); the others go column by column."""

    values: NDArray[np.float64]
    """(rows, columns): the numbers; NaN for empty cells and the other columns' cells."""
    text: list[int]
    """The other columns (a character of no number), in order."""
    any_number: NDArray[np.bool_]
    """(columns,): numeric columns with a cell that is not empty."""
    labels: NDArray[np.bool_]
    """(columns,): numeric columns whose numbers are written with digits only and are
    at most MAX_LABEL."""
    first_infinite: tuple[int, int] | None
    """(row, column) of the first cell in row-major order that overflows (``1e400``)."""


def _wide_numbers(rows: list[list[str]], width: int) -> _Wide | None:
    """The cells of ``rows`` (each of ``width`` cells) read at once (see :class:`_Wide`),
    or None when a cell holds a NUL or a malformed number (``1..2``): the block then
    goes column by column, for the same result or error.

    The stripped cells are joined by NUL and classified character by character by NumPy
    (:func:`_character_kinds`); the numeric columns' cells are converted by one ``map``
    of ``float``."""
    cells = list(map(str.strip, chain.from_iterable(rows)))
    found = _character_kinds(cells)
    if found is None:
        return None  # a NUL inside a cell
    empty, text_cells = found
    numeric = np.ones(width, dtype=bool)
    numeric[text_cells % width] = False
    chosen = ~empty.reshape(len(rows), width) & numeric
    try:
        numbers = np.fromiter(
            map(float, compress(cells, chosen.ravel().tolist())),
            np.float64,
            count=int(np.count_nonzero(chosen)),
        )
    except ValueError:
        return None  # a malformed number
    values = np.full(chosen.shape, np.nan)
    values[chosen] = numbers
    infinite = np.isinf(values)
    return _Wide(
        values=values,
        text=np.flatnonzero(~numeric).tolist(),
        any_number=np.any(chosen, axis=0),
        labels=_labels(cells, values, chosen),
        first_infinite=divmod(int(np.argmax(infinite)), width) if infinite.any() else None,
    )


def _character_kinds(
    cells: list[str], kind: int = 2
) -> tuple[NDArray[np.bool_], NDArray[np.intp]] | None:
    """Which cells are empty (shape (len(cells),)) and the indices of those with a
    character of at least ``kind`` (:data:`_CHARACTER_KIND`; 2: of no number, 1: not a
    digit; shape (n_found,), sorted, an index once per run of such characters). None
    when a cell holds a NUL."""
    joined = "\x00".join(cells)
    codes = np.frombuffer(joined.encode("utf-32-le", "surrogatepass"), dtype="<u4")
    ends = np.flatnonzero(codes == 0)  # after each cell but the last
    if ends.size != len(cells) - 1:
        return None
    lengths = np.diff(ends, prepend=-1, append=codes.size) - 1
    text = _CHARACTER_KIND[np.minimum(codes, 128)] >= kind
    runs = np.flatnonzero(text[1:] & ~text[:-1]) + 1  # where a run of such characters starts
    if text[:1].any():
        runs = np.concatenate(([0], runs))
    return lengths == 0, np.searchsorted(ends, runs)


def _labels(
    cells: list[str], values: NDArray[np.float64], chosen: NDArray[np.bool_]
) -> NDArray[np.bool_]:
    """(columns,): the columns whose ``chosen`` cells (shape (rows, columns): of the
    stripped ``cells``, row by row) are digits only and at most MAX_LABEL. The text is
    looked at in the columns of whole numbers in range only."""
    with np.errstate(invalid="ignore"):
        whole = (values >= 0) & (values <= MAX_LABEL) & (np.floor(values) == values)
    labels: NDArray[np.bool_] = ~np.any(chosen & ~whole, axis=0)
    looked = (chosen & labels).ravel()  # the cells of those columns
    if not looked.any():
        return labels
    texts = cells if looked.all() else list(compress(cells, looked.tolist()))
    found = _character_kinds(texts, kind=1)
    assert found is not None  # the cells hold no NUL: _wide_numbers checked them
    cell = found[1]
    if cell.size:
        labels[np.flatnonzero(looked)[cell] % chosen.shape[1]] = False
    return labels


@dataclass
class _Block:
    """The cells of some rows as the exact path stores them."""

    values: NDArray[np.float64]
    """(rows, columns): numbers, NaN for missing and text cells."""
    codes: dict[int, NDArray[np.int64]]
    """Column -> (rows,) category codes (-1 for other cells), for columns with text."""


def _columns_of(rows: list[list[str]], columns: list[int]) -> dict[int, Sequence[str]]:
    """The cells of ``columns`` (column -> its cells, row by row)."""
    if len(columns) == 1:
        return {columns[0]: [row[columns[0]] for row in rows]}
    if not columns:
        return {}
    return dict(zip(columns, zip(*map(itemgetter(*columns), rows), strict=True), strict=True))


class _CellTable:
    """CSV columns as the exact path reads them, block of rows by block of rows:
    numbers (NaN when not a number) and category codes (-1 when not text), so each
    column can still become either kind.

    A column's part of a block that is numbers and empty cells only (the usual case)
    is checked by one regex and converted by one NumPy call (in a block of at least
    :data:`WIDE_COLUMNS` columns, all such columns together: :func:`_wide_numbers`); the
    cells of the other columns go one by one through :meth:`_add_cell`, in row order, so
    errors are the ones (and in the order) a cell-by-cell reading gives.
    """

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.blocks: list[_Block] = []
        self.categories: defaultdict[int, dict[str, int]] = defaultdict(dict)
        self.first_text: dict[int, tuple[int, str]] = {}
        self.has_number = np.zeros(len(names), dtype=bool)
        self.whole = np.ones(len(names), dtype=bool)

    def add_rows(self, rows: list[list[str]], lines: list[int]) -> None:
        """Add the cells of ``rows`` (each of ``len(names)`` cells) read at ``lines``."""
        if not rows:
            return
        wide = _wide_numbers(rows, len(self.names)) if len(self.names) >= WIDE_COLUMNS else None
        if wide is None:
            self.add_columns(list(zip(*rows, strict=True)), lines)
            return
        self.has_number |= wide.any_number
        self.whole &= wide.labels | ~wide.any_number
        first = None
        if wide.first_infinite is not None:
            row, j = wide.first_infinite
            call = partial(_parse_cell, rows[row][j], lines[row], self.names[j])
            first = (row, j, _error_of(call))
        self._add_block(_Block(wide.values, {}), _columns_of(rows, wide.text), lines, first)

    def add_columns(self, columns: Sequence[Sequence[str] | _Numbers], lines: list[int]) -> None:
        """Add the cells of some rows, given column by column (the cells, or a column
        already known to be numbers), read at ``lines``."""
        block = _Block(np.full((len(lines), len(self.names)), np.nan), {})
        self._add_block(block, dict(enumerate(columns)), lines, None)

    def _add_block(
        self,
        block: _Block,
        columns: Mapping[int, Sequence[str] | _Numbers],
        lines: list[int],
        first: tuple[int, int, InvalidInputError] | None,
    ) -> None:
        """Add ``columns`` (column -> its cells of the block) to ``block``, whose other
        columns are stored, then the block. ``first``: the row, column and error of the
        earliest bad cell of those other columns, if any; the earliest of all is raised."""
        slow: list[int] = []
        for j, cells in columns.items():
            if isinstance(cells, _Numbers):
                found: tuple[int, InvalidInputError | None] | None = self.add_numbers(
                    j, cells, lines, block
                )
            else:
                found = self._add_column(j, cells, lines, block)
            if found is None:
                slow.append(j)
            elif found[1] is not None and (first is None or (found[0], j) < first[:2]):
                first = (found[0], j, found[1])
        for r, line in enumerate(lines):
            for j in slow:
                if first is not None and (r, j) > first[:2]:
                    raise first[2]
                self._add_cell(j, cast(Sequence[str], columns[j])[r], line, r, block)
        if first is not None:
            raise first[2]
        self.blocks.append(block)

    def _add_column(
        self, j: int, cells: Sequence[str], lines: list[int], block: _Block
    ) -> tuple[int, InvalidInputError | None] | None:
        """Column ``j``'s cells of a block at once when they are numbers and empty cells
        only, or text and empty cells only. Returns the row and error of its first bad
        cell, ``(-1, None)`` when there is none, or None, storing nothing, when the cells
        must go one by one."""
        stripped = list(map(str.strip, cells))
        joined = "\x00".join(stripped)
        if joined.count("\x00") != len(cells) - 1:
            return None  # a NUL inside a cell
        if _NOT_NUMBER_CHARACTER.search(joined) is None:
            return self._add_numbers(j, cells, stripped, joined, lines, block)
        return self._add_text(j, cells, stripped, lines, block)

    def _add_numbers(
        self,
        j: int,
        cells: Sequence[str],
        stripped: list[str],
        joined: str,
        lines: list[int],
        block: _Block,
    ) -> tuple[int, InvalidInputError | None] | None:
        empty = stripped.count("")
        try:
            numbers = list(map(float, [c or "nan" for c in stripped] if empty else stripped))
        except ValueError:
            return None  # a malformed number (1..2): one by one, for its error
        labels = _NOT_DIGIT_CHARACTER.search(joined) is None
        numeric = _Numbers(
            np.array(numbers, np.float64), empty < len(cells), labels, cells.__getitem__
        )
        return self.add_numbers(j, numeric, lines, block)

    def add_numbers(
        self, j: int, numbers: _Numbers, lines: list[int], block: _Block
    ) -> tuple[int, InvalidInputError | None]:
        """Store column ``j``'s part of a block known to be numbers and empty cells;
        the row and error of its first number that overflows (``1e400``), if any."""
        values = numbers.values
        block.values[:, j] = values
        if numbers.any_number:
            self.has_number[j] = True
            if self.whole[j]:
                self.whole[j] = numbers.labels and bool(np.nanmax(values) <= MAX_LABEL)
        infinite = np.flatnonzero(np.isinf(values))
        if not infinite.size:
            return -1, None
        row = int(infinite[0])  # the error _parse_cell gives
        text = numbers.cell(row)
        return row, _error_of(partial(_parse_cell, text, lines[row], self.names[j]))

    def _add_text(
        self,
        j: int,
        cells: Sequence[str],
        stripped: list[str],
        lines: list[int],
        block: _Block,
    ) -> tuple[int, InvalidInputError | None] | None:
        categories = self.categories[j]
        for value in [v for v in dict.fromkeys(stripped) if v and v not in categories]:
            if NUMBER.fullmatch(value) is not None:
                return None  # numbers among the text: one by one
            if _looks_numeric(value) or value[0] in "=@" or len(categories) == MAX_CATEGORIES:
                row = stripped.index(value)  # its first cell is the column's first error
                error = _error_of(partial(self._add_cell, j, cells[row], lines[row], row, block))
                return row, error
            categories[value] = len(categories)
        if j not in self.first_text:
            row = next(r for r, value in enumerate(stripped) if value)
            self.first_text[j] = (lines[row], cells[row])
        block.codes[j] = np.array([categories.get(v, -1) for v in stripped], np.int64)
        return -1, None

    def _add_cell(self, j: int, text: str, line: int, row: int, block: _Block) -> None:
        cell = text.strip()
        if not cell:
            return
        name = self.names[j]
        if NUMBER.fullmatch(cell) is not None:
            block.values[row, j] = _parse_cell(text, line, name)
            self.has_number[j] = True
            self.whole[j] = self.whole[j] and cell.isdigit() and int(cell) <= MAX_LABEL
            return
        if _looks_numeric(cell):
            _parse_cell(text, line, name)  # raises: a malformed number, not a category
        self.first_text.setdefault(j, (line, text))
        if cell[0] in "=@":
            raise _file_error(
                f"line {line}, column {name!r}: {text!r} is not a number, and a "
                "category may not start with = or @ (a spreadsheet formula)"
            )
        categories = self.categories[j]
        code = categories.setdefault(cell, len(categories))
        if len(categories) > MAX_CATEGORIES:
            raise _file_error(
                f"line {line}, column {name!r}: more than {MAX_CATEGORIES} distinct "
                "non-numeric values; a categorical column may have at most "
                f"{MAX_CATEGORIES} (an id column? leave it out)"
            )
        codes = block.codes.get(j)
        if codes is None:
            codes = block.codes[j] = np.full(block.values.shape[0], -1, np.int64)
        codes[row] = code

    def mixed_error(self) -> InvalidInputError | None:
        """A column of numbers with text in it: its first text cell is the error (the
        earliest such cell of all columns)."""
        errors: list[tuple[int, InvalidInputError]] = []
        for j, (line, text) in self.first_text.items():
            if not self.has_number[j]:
                continue
            try:
                _parse_cell(text, line, self.names[j])
            except InvalidInputError as error:
                errors.append((line, error))
        return min(errors, key=lambda found: found[0])[1] if errors else None

    def table(self, distinct: bool) -> Table:
        """The columns over every block: the text ones categorical, the others one block
        of numbers (``distinct``: whether the names are known to be). The blocks are
        released as they are copied."""
        text = sorted(self.first_text)
        categorical = {}
        for j in text:
            parts = [b.codes.get(j, np.full(b.values.shape[0], -1)) for b in self.blocks]
            codes = np.concatenate(parts).astype(np.int64, copy=False)
            categories = list(self.categories[j])
            categorical[j] = Column(name=self.names[j], codes=codes, categories=categories)
        numeric = np.ones(len(self.names), dtype=bool)
        numeric[text] = False
        positions = np.flatnonzero(numeric)
        values = np.empty((sum(b.values.shape[0] for b in self.blocks), positions.size))
        blocks, self.blocks = self.blocks[::-1], []
        row = 0
        while blocks:
            part = blocks.pop().values
            values[row : row + part.shape[0]] = part[:, positions] if text else part
            row += part.shape[0]
        numbers = Numbers(values=values, positions=positions, whole=self.whole[positions])
        return Table(self.names, numbers, categorical, distinct=distinct)


def _error_of(call: Callable[[], object]) -> InvalidInputError:
    """The error ``call`` raises (it must raise one)."""
    try:
        call()
    except InvalidInputError as error:
        return error
    raise AssertionError("unreachable: the cell was expected to be refused")  # pragma: no cover


def _exact_parse(
    content: bytes,
    header: _Header,
    target_idx: list[int],
    feature_idx: list[int],
    max_cells: int | None,
    missing: Missing = "error",
) -> ParsedDataset:
    """Cell by cell: parses what the fast paths left (text columns, empty cells), or
    raises the exact error (line, column, reason). Values go into arrays block by block
    (:class:`_CellTable`), never lists of lists. The rows come from pyarrow's reader
    when the file allows it (:func:`_arrow_cells`), else from :mod:`csv`.

    A column whose non-empty cells are all text is categorical; a column mixing numbers
    and text is an error at its first text cell."""
    names = header.names
    used = sorted(target_idx + feature_idx)
    used_names = names if len(used) == len(names) else [names[i] for i in used]
    table = _CellTable(used_names)
    lines = _arrow_cells(content, header, used, max_cells, table)
    if lines is None:
        table = _CellTable(used_names)
        lines = _csv_cells(content, header, used, max_cells, table)
    if not len(lines):
        raise _file_error("no data rows after the header")
    mixed = table.mixed_error()
    if mixed is not None:
        raise mixed
    found_lines = np.frombuffer(lines, dtype=np.int64)
    return encode_table(
        table.table(distinct=used_names is names),  # the header's names: checked
        [names[i] for i in target_idx],
        missing=missing,
        locate=lambda row: f"line {int(found_lines[row])}",
        max_cells=max_cells,
    )


def _csv_cells(
    content: bytes, header: _Header, used: list[int], max_cells: int | None, table: _CellTable
) -> array[int]:
    """The data rows read by :mod:`csv` into ``table``; their lines."""
    try:
        text = content[header.data_offset :].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _decode_error(content, exc, header.data_offset) from None
    width = len(header.names)
    block_rows = max(1, EXACT_BLOCK_CELLS // width)
    rows: list[list[str]] = []
    row_lines: list[int] = []
    lines = array("q")
    failure: InvalidInputError | None = None
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    all_used = len(used) == width
    max_rows = max_cells // width if max_cells is not None else -1
    count = 0
    try:
        for row in reader:
            line = header.lines + reader.line_num
            if len(row) != width or not row[0].strip():  # else: not blank, the right width
                if not row or all(not cell.strip() for cell in row):
                    continue
                if len(row) != width:
                    failure = _file_error(f"line {line}: expected {width} fields, got {len(row)}")
                    break
            count += 1
            if count > max_rows >= 0:
                failure = _file_error(f"line {line}: {CELLS_MESSAGE.format(max_cells=max_cells)}")
                break
            rows.append(row if all_used else [row[i] for i in used])
            row_lines.append(line)
            if len(rows) == block_rows:
                table.add_rows(rows, row_lines)
                lines.extend(row_lines)
                rows, row_lines = [], []
    except csv.Error as exc:
        failure = _file_error(f"line {header.lines + reader.line_num}: {exc}")
    table.add_rows(rows, row_lines)  # its cells come first: they precede the failure
    lines.extend(row_lines)
    if failure is not None:
        raise failure
    return lines


_SKIPPED_LINE = re.compile(rb"\n\r?\n|\r(?!\n)")
"""An empty line or a lone carriage return: a line pyarrow's reader and :mod:`csv`
would number differently."""


def _arrow_cells(
    content: bytes, header: _Header, used: list[int], max_cells: int | None, table: _CellTable
) -> array[int] | None:
    """The data rows read by pyarrow's reader (C++) into ``table``, column by column;
    their lines. None, for :func:`_csv_cells` to read the file from the start, when the
    file has quotes, empty lines, more than :data:`ARROW_MAX_COLUMNS` columns, unused
    columns or blank rows, or when pyarrow refuses it (ragged rows, bad UTF-8) or the
    cells pass ``max_cells``: then :mod:`csv` decides, with the line of the error.

    Without quotes and empty lines each row is one line, and the cells are the same
    strings :mod:`csv` reads; :class:`_CellTable` then makes of them what it makes of
    the rows of :mod:`csv`, errors included."""
    start = header.data_offset
    width = len(header.names)
    data = memoryview(content)[start:]
    if (
        width > ARROW_MAX_COLUMNS
        or len(used) != width
        or content.find(b'"', start) >= 0
        or content.startswith((b"\n", b"\r"), start)
        or found_in(_SKIPPED_LINE, content, start)
    ):
        return None
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    names = [f"c{i}" for i in range(width)]
    lines = array("q")
    max_rows = max_cells // width if max_cells is not None else -1
    try:
        reader = pa_csv.open_csv(
            pa.py_buffer(data),
            read_options=pa_csv.ReadOptions(
                column_names=names, block_size=ARROW_BLOCK_BYTES, use_threads=False
            ),
            parse_options=pa_csv.ParseOptions(delimiter=",", quote_char=False),
            convert_options=pa_csv.ConvertOptions(
                column_types=dict.fromkeys(names, pa.string()),
                null_values=[],
                strings_can_be_null=False,
            ),
            memory_pool=pa.system_memory_pool(),
        )
        for batch in reader:
            first = len(lines)
            if first + batch.num_rows > max_rows >= 0:
                return None
            columns = _arrow_columns(batch)
            if columns is None:
                return None  # a row of blank cells
            row_lines = list(range(header.lines + 1 + first, header.lines + 1 + len(batch) + first))
            table.add_columns(columns, row_lines)
            lines.extend(row_lines)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    return lines


def _arrow_cell(column: Any, row: int) -> str:
    return str(column[row].as_py())


def _arrow_columns(batch: Any) -> list[Sequence[str] | _Numbers] | None:
    """The columns of a pyarrow batch of strings for :meth:`_CellTable.add_columns`:
    a column of numbers and empty cells converted by pyarrow, any other as Python
    strings. None when a row has only blank cells (:mod:`csv` skips it; pyarrow does
    not).

    pyarrow's parser refuses every cell :data:`NUMBER` refuses except ``nan``, ``inf``
    and the like, and overflows (``1e400``) to infinity: so a column it converts to
    finite numbers is one :data:`NUMBER` accepts, with ``float``'s values (both round
    correctly). Others (padded cells, Unicode digits, non-finite) go as strings."""
    columns: list[Sequence[str] | _Numbers] = []
    blank: list[int] | None = None  # rows whose cells so far are all blank
    for column in batch.columns:
        numbers = _arrow_numbers(column)
        if numbers is not None:
            columns.append(numbers)
            empty = np.isnan(numbers.values)
            blank = (
                [r for r in blank if empty[r]] if blank is not None else list(np.flatnonzero(empty))
            )
        else:
            cells = column.to_pylist()
            columns.append(cells)
            rows = blank if blank is not None else range(len(cells))
            blank = [r for r in rows if not cells[r].strip()]
    return None if blank else columns


def _arrow_numbers(column: Any) -> _Numbers | None:
    """A pyarrow string column as numbers, or None (see :func:`_arrow_columns`)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    empty = pc.equal(column, "")
    n_empty = int(pc.sum(empty).as_py() or 0)
    try:
        parsed = pc.cast(pc.if_else(empty, None, column) if n_empty else column, pa.float64())
    except pa.ArrowInvalid:
        return None
    values = parsed.fill_null(math.nan).to_numpy(zero_copy_only=False)
    finite = np.isfinite(values)
    if n_empty:
        finite |= empty.to_numpy(zero_copy_only=False)
    if not finite.all():
        return None
    known = values[~np.isnan(values)] if n_empty else values
    labels = bool(
        np.all(known >= 0)
        and np.all(known <= MAX_LABEL)
        and np.all(known == np.floor(known))
        and pc.all(pc.or_(empty, pc.utf8_is_digit(column))).as_py()
    )
    return _Numbers(values, n_empty < len(column), labels, partial(_arrow_cell, column))
