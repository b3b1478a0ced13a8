"""Dataset files by format: ``.npy``, ``.npz``, Parquet, Arrow IPC, ``.csv``, ``.csv.gz``.

Each reader checks what it can from the file's header (dtype, shape, schema, row
count) before it reads any data, so a pickle, an object array or a file over
``BACKPROP_MAX_DATASET_CELLS`` is refused without being loaded.

- ``.npy``: one 2-D numeric array; ``target`` names its target column(s) by index
  (``"-1"``, ``"784"``, ``"0,1"``); the other columns are the features.
- ``.npz``: arrays ``X`` (2-D) and ``y`` (1-D or 2-D), numeric; ``target`` unused.
  An integer ``y`` of non-negative values is class labels, as a JSON list of
  integers is.
- Parquet (``.parquet``, ``.pq``) and Arrow IPC (``.arrow``, ``.feather``, ``.ipc``):
  columns by name like CSV; numeric columns (nulls are missing cells), string
  columns are categorical; nested, binary or temporal columns are refused.
- ``.csv`` / ``.csv.gz``: :func:`app.datasets.parsing.parse_csv`.
"""

from __future__ import annotations

import gzip
import io
import mmap
import os
import zipfile
import zlib
from collections.abc import Sequence
from typing import Any, BinaryIO, cast

import numpy as np
from numpy.typing import NDArray

from app.datasets.blobs import allocate
from app.datasets.json_arrays import MAX_LABEL
from app.datasets.parsing import ParsedDataset, parse_csv
from app.datasets.tabular import Column, Missing, encode_table, table_of
from app.errors import InvalidInputError

FORMATS = {
    ".npy": "npy",
    ".npz": "npz",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".arrow": "arrow",
    ".feather": "arrow",
    ".ipc": "arrow",
    ".csv": "csv",
    ".csv.gz": "csv.gz",
}
READ_BYTES = 1 << 20
NPY_BLOCK_BYTES = 8 << 20
"""Rows of a ``.npy`` table are copied into the stored container this many bytes at a time."""


def _file_error(message: str) -> InvalidInputError:
    return InvalidInputError(("body", "file"), message)


def file_format(filename: str | None) -> str:
    """The format named by the file's extension.

    Raises
    ------
    InvalidInputError
        At ``["body", "file"]`` for an unknown extension.
    """
    name = (filename or "").lower()
    for suffix in sorted(FORMATS, key=len, reverse=True):
        if name.endswith(suffix):
            return FORMATS[suffix]
    raise _file_error(
        f"cannot tell the format of {filename!r}: the file name must end with one of "
        f"{sorted(FORMATS)}"
    )


def _cells_error(cells: int, max_cells: int) -> InvalidInputError:
    return _file_error(
        f"the dataset has {cells} values; at most {max_cells} (BACKPROP_MAX_DATASET_CELLS)"
    )


# --------------------------------------------------------------------------- NumPy


def _npy_header(file: BinaryIO, what: str, max_cells: int) -> tuple[tuple[int, ...], bool, Any]:
    """The shape, Fortran order and dtype of a ``.npy`` array, checked; ``file`` is
    left at the first data byte."""
    try:
        version = np.lib.format.read_magic(file)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(file)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(file)
    except ValueError as exc:
        raise _file_error(f"{what} is not a .npy array ({exc}); pickles are never loaded") from None
    if dtype.hasobject or dtype.fields is not None or dtype.kind not in "biuf":
        raise _file_error(
            f"{what} has dtype {dtype.str!r}: only numeric (bool, integer, float) arrays are "
            "accepted; object arrays and pickles are never loaded"
        )
    cells = int(np.prod(shape, dtype=np.int64))
    if cells > max_cells:
        raise _cells_error(cells, max_cells)
    return shape, fortran, dtype


def _mapped(file: BinaryIO, what: str, shape: tuple[int, ...], fortran: bool, dtype: Any) -> Any:
    """The array's data mapped from ``file`` (a real file at its first data byte), without
    reading it; None when ``file`` has no file descriptor (a zip member)."""
    try:
        descriptor = file.fileno()  # a SpooledTemporaryFile rolls over to disk here
    except (AttributeError, OSError, io.UnsupportedOperation):
        return None
    start = file.tell()
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    available = os.fstat(descriptor).st_size - start
    if available < nbytes:
        raise _file_error(f"{what} is truncated: {max(available, 0)} of {nbytes} data bytes")
    if nbytes == 0:
        return np.empty(shape, dtype=dtype)
    mapping = mmap.mmap(descriptor, start + nbytes, access=mmap.ACCESS_READ)
    return np.ndarray(
        shape, dtype=dtype, buffer=mapping, offset=start, order="F" if fortran else "C"
    )


def _npy_array(file: BinaryIO, what: str, max_cells: int) -> NDArray[Any]:
    """One ``.npy`` array, its header checked before its data is read: a read-only map
    of the file's data when ``file`` is a real file, else read into memory."""
    shape, fortran, dtype = _npy_header(file, what, max_cells)
    mapped = _mapped(file, what, shape, fortran, dtype)
    if mapped is not None:
        return cast(NDArray[Any], mapped)
    data = np.empty(shape, dtype=dtype, order="F" if fortran else "C")
    view = memoryview(data.reshape(-1, order="A").view(np.uint8))  # type: ignore[arg-type]
    read = 0
    while read < len(view):
        got = file.readinto(view[read : read + READ_BYTES])  # type: ignore[attr-defined]
        if not got:
            raise _file_error(f"{what} is truncated: {read} of {len(view)} data bytes")
        read += got
    return data


def _finite(array: NDArray[Any], what: str) -> None:
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        index = np.unravel_index(int(np.argmax(~np.isfinite(array))), array.shape)
        raise _file_error(f"{what}{list(map(int, index))} is not finite")


def _targets_of(y: NDArray[Any]) -> tuple[NDArray[Any], str]:
    """``y`` as a JSON upload would store it: labels for whole non-negative integers."""
    if y.ndim == 1 and y.dtype.kind in "biu" and y.size and y.min() >= 0 and y.max() <= MAX_LABEL:
        return y.astype(np.int64), "labels"
    values = np.asarray(y, dtype=np.float64)
    return (values.reshape(-1, 1) if values.ndim == 1 else values), "values"


def _from_xy(X: NDArray[Any], y: NDArray[Any]) -> ParsedDataset:
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise _file_error(f"X must be 2-D with at least one row and column, got shape {X.shape}")
    if y.ndim not in (1, 2) or y.shape[0] != X.shape[0] or (y.ndim == 2 and y.shape[1] == 0):
        raise _file_error(f"y must be 1-D or 2-D with {X.shape[0]} rows, got shape {y.shape}")
    _finite(X, "X")
    _finite(y, "y")
    targets, target_type = _targets_of(y)
    return ParsedDataset(
        X=np.ascontiguousarray(X, dtype=np.float64), y=targets, target_type=target_type
    )


def read_npz(file: BinaryIO, max_cells: int) -> ParsedDataset:
    """``X`` and ``y`` of an ``.npz`` file (plain or compressed)."""
    try:
        archive = zipfile.ZipFile(file)
    except zipfile.BadZipFile:
        raise _file_error("not an .npz file (a zip archive of .npy arrays)") from None
    with archive:
        names = set(archive.namelist())
        missing = [name for name in ("X", "y") if f"{name}.npy" not in names]
        if missing:
            raise _file_error(f"the .npz file has no array(s) {missing}; it has {sorted(names)}")
        arrays = {}
        budget = max_cells
        for name in ("X", "y"):
            try:
                with archive.open(f"{name}.npy") as member:
                    arrays[name] = _npy_array(member, name, budget)  # type: ignore[arg-type]
            except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, OSError) as exc:
                raise _file_error(f"{name}.npy in the .npz file cannot be read: {exc}") from None
            budget -= int(arrays[name].size)
    return _from_xy(arrays["X"], arrays["y"])


def _column_indices(target: str, width: int) -> list[int]:
    indices: list[int] = []
    for part in (p.strip() for p in target.split(",")):
        if not part:
            continue
        try:
            index = int(part)
        except ValueError:
            raise InvalidInputError(
                ("body", "target"), f"{part!r}: a .npy file's target columns are indices"
            ) from None
        if not -width <= index < width:
            raise InvalidInputError(
                ("body", "target"), f"column {index} is out of range for {width} columns"
            )
        indices.append(index % width)
    if not indices:
        raise InvalidInputError(("body", "target"), "name at least one target column")
    if len(set(indices)) != len(indices):
        raise InvalidInputError(("body", "target"), "a column is named twice")
    if len(indices) == width:
        raise InvalidInputError(("body", "target"), "every column is a target; no features left")
    return indices


def _copy_features(
    table: NDArray[Any], columns: list[int], out: NDArray[np.float64], *, block_rows: int
) -> None:
    """``out[...] = table[:, columns]`` (cast to float64) in blocks of rows, each block
    checked finite as it is copied (the first bad cell is named)."""
    run = columns == list(range(columns[0], columns[-1] + 1))
    for start in range(0, table.shape[0], block_rows):
        part = table[start : start + block_rows]
        target = out[start : start + block_rows]
        target[...] = part[:, columns[0] : columns[-1] + 1] if run else part[:, columns]
        if not np.isfinite(target).all():
            row, column = np.unravel_index(int(np.argmax(~np.isfinite(target))), target.shape)
            raise _file_error(f"X{[start + int(row), int(column)]} is not finite")


def read_npy(file: BinaryIO, target: str, max_cells: int) -> ParsedDataset:
    """A 2-D ``.npy`` array split into features and the ``target`` columns (indices).

    The features and targets are copied once, from the file (mapped, not read), into
    their stored container (:func:`app.datasets.blobs.allocate`): the result's ``blob`` is set,
    and ``X`` and ``y`` are writable views into it.
    """
    table = _npy_array(file, "the array", max_cells)
    if table.ndim != 2:
        raise _file_error(f"a .npy dataset must be 2-D (rows x columns), got shape {table.shape}")
    if table.shape[0] == 0 or table.shape[1] == 0:
        raise _file_error(
            f"X must be 2-D with at least one row and column, got shape {table.shape}"
        )
    width = table.shape[1]
    targets = _column_indices(target, width)
    features = [i for i in range(width) if i not in set(targets)]
    raw_y = table[:, targets[0]] if len(targets) == 1 else table[:, targets]
    _finite(raw_y, "y")
    y, target_type = _targets_of(raw_y)
    blob, views = allocate(
        {"X": ((table.shape[0], len(features)), "<f8"), "y": (y.shape, y.dtype.str)}
    )
    views["y"][...] = y
    del y, raw_y
    block_rows = max(1, NPY_BLOCK_BYTES // (width * table.dtype.itemsize))
    _copy_features(table, features, views["X"], block_rows=block_rows)
    del table
    names = [f"c{i}" for i in range(width)]
    return ParsedDataset(
        X=views["X"],
        y=views["y"],
        target_type=target_type,
        blob=blob,
        feature_names=tuple(names[i] for i in features),
        target_names=tuple(names[i] for i in targets),
    )


# --------------------------------------------------------------------------- Arrow


def _arrow_column(name: str, array: Any) -> Column:
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = array.type
    if pa.types.is_dictionary(kind):
        array = array.cast(kind.value_type)
        kind = array.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        encoded = pc.dictionary_encode(array).combine_chunks()
        codes = encoded.indices.to_numpy(zero_copy_only=False)
        codes = np.where(np.isnan(codes.astype(np.float64)), -1, codes).astype(np.int64)
        categories = [str(v) for v in encoded.dictionary.to_pylist()]
        return Column(name=name, codes=codes, categories=categories)
    if pa.types.is_boolean(kind) or pa.types.is_integer(kind) or pa.types.is_floating(kind):
        values = array.cast(pa.float64()).to_numpy(zero_copy_only=False)
        values = np.asarray(values, dtype=np.float64)
        present = values[~np.isnan(values)]
        if array.null_count == 0 and not np.isfinite(values).all():
            raise _file_error(f"column {name!r} has values that are not finite")
        whole = pa.types.is_integer(kind) and bool(present.size == 0 or present.min() >= 0)
        return Column(name=name, values=values, whole=whole)
    raise _file_error(
        f"column {name!r} has type {kind}: only numeric, boolean and string columns can be "
        "encoded (nested, binary and temporal columns cannot)"
    )


def _check_schema(schema: Any, rows: int, max_cells: int) -> None:
    cells = rows * len(schema.names)
    if cells > max_cells:
        raise _cells_error(cells, max_cells)


def read_arrow_table(
    file: BinaryIO, fmt: str, targets: Sequence[str], max_cells: int, missing: Missing
) -> ParsedDataset:
    """A Parquet or Arrow IPC file's columns, encoded like a CSV file's."""
    import pyarrow as pa
    import pyarrow.ipc as ipc
    import pyarrow.parquet as pq

    # malloc, not mimalloc: what the request freed goes back to the system with
    # release_freed_memory, instead of staying in Arrow's pool (the server's RSS).
    pa.set_memory_pool(pa.system_memory_pool())
    try:
        if fmt == "parquet":
            parquet = pq.ParquetFile(file)
            _check_schema(parquet.schema_arrow, parquet.metadata.num_rows, max_cells)
            table = parquet.read()
        else:
            reader = ipc.open_file(file)
            rows = sum(reader.get_batch(i).num_rows for i in range(reader.num_record_batches))
            _check_schema(reader.schema, rows, max_cells)
            table = reader.read_all()
    except (pa.ArrowException, OSError) as exc:
        raise _file_error(f"not a readable {fmt} file: {exc}") from None
    if table.num_rows == 0:
        raise _file_error("no data rows")
    targets = [t.strip() for t in targets if t.strip()]
    if not targets:
        raise InvalidInputError(("body", "target"), "name at least one target column")
    columns = []
    while table.num_columns:  # each Arrow column is released once converted
        columns.append(_arrow_column(table.column_names[0], table.column(0)))
        table = table.remove_column(0)
    del table
    encoded = table_of(columns)  # the numeric columns as one block
    del columns
    return encode_table(
        encoded, targets, missing=missing, locate=lambda row: f"row {row}", max_cells=max_cells
    )


# --------------------------------------------------------------------------- dispatch


def _gunzip(file: BinaryIO, max_bytes: int) -> bytes:
    try:
        with gzip.GzipFile(fileobj=file, mode="rb") as unzipped:
            content = unzipped.read(max_bytes + 1)
    except (OSError, EOFError) as exc:
        raise _file_error(f"not a readable .gz file: {exc}") from None
    if len(content) > max_bytes:
        raise _file_error(
            f"the CSV is more than {max_bytes} bytes uncompressed (BACKPROP_MAX_BODY_BYTES)"
        )
    return content


def read_dataset_file(
    file: BinaryIO,
    filename: str | None,
    *,
    target: str | None,
    max_cells: int,
    max_bytes: int,
    missing: Missing,
) -> ParsedDataset:
    """The dataset in an uploaded file, by the format its name gives.

    Raises
    ------
    InvalidInputError
        At ``["body", "file"]`` or ``["body", "target"]`` with the reason.
    """
    fmt = file_format(filename)
    if fmt == "npz":
        return read_npz(file, max_cells)
    if target is None:
        raise InvalidInputError(("body", "target"), f"a {fmt} file needs target column(s)")
    if fmt == "npy":
        return read_npy(file, target, max_cells)
    if fmt in ("parquet", "arrow"):
        return read_arrow_table(file, fmt, target.split(","), max_cells, missing)
    content = _gunzip(file, max_bytes) if fmt == "csv.gz" else file.read()
    return parse_csv(content, target.split(","), max_cells, missing)
