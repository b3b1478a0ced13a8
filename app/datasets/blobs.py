"""Array blobs written in place: the bytes of :func:`engine.serialization.encode_arrays`
without its intermediate copies.

``encode_arrays`` copies every array (``tobytes``) and then the whole container
(``b"".join``): three times a dataset's size at its peak. :func:`encode_arrays`
here allocates the container once and copies each array into it, giving the same
bytes (so the same ``sha256``); it returns a ``bytearray``, which the database
drivers store as they store ``bytes``.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from engine.serialization import ALLOWED_DTYPES, MAGIC, SerializationError


def encode_arrays(arrays: Mapping[str, NDArray[Any]]) -> bytearray:
    """The container of ``arrays`` (no metadata), byte for byte ``encode_arrays``'s."""
    entries: list[dict[str, Any]] = []
    prepared: list[tuple[NDArray[Any], int]] = []
    offset = 0
    for name, value in arrays.items():
        array = np.asarray(value)
        dtype = array.dtype.newbyteorder("<") if array.dtype.byteorder == ">" else array.dtype
        if dtype.str not in ALLOWED_DTYPES:
            raise SerializationError(f"array {name!r} has unsupported dtype {array.dtype}")
        nbytes = int(array.size) * dtype.itemsize
        entries.append(
            {
                "name": name,
                "dtype": dtype.str,
                "shape": list(array.shape),
                "offset": offset,
                "nbytes": nbytes,
            }
        )
        prepared.append((array.astype(dtype, copy=False), offset))
        offset += nbytes
    header = json.dumps(
        {"arrays": entries, "meta": {}}, separators=(",", ":"), allow_nan=True
    ).encode()
    start = len(MAGIC) + 4 + len(header)
    blob = bytearray(start + offset)
    blob[: len(MAGIC)] = MAGIC
    struct.pack_into("<I", blob, len(MAGIC), len(header))
    blob[len(MAGIC) + 4 : start] = header
    for array, array_offset in prepared:
        target = np.ndarray(array.shape, array.dtype, buffer=blob, offset=start + array_offset)
        target[...] = array
    return blob


def pack(arrays: Mapping[str, NDArray[Any]]) -> tuple[bytearray, dict[str, NDArray[Any]]]:
    """:func:`encode_arrays`, and read-only views of each array inside the container.

    Replacing the arrays by the views stores them once: the originals can be freed
    before the container is written to the database.
    """
    blob = encode_arrays(arrays)
    (header_length,) = struct.unpack_from("<I", blob, len(MAGIC))
    start = len(MAGIC) + 4 + header_length
    entries = json.loads(bytes(blob[len(MAGIC) + 4 : start]))["arrays"]
    views: dict[str, NDArray[Any]] = {}
    for entry in entries:
        view = np.ndarray(
            tuple(entry["shape"]),
            np.dtype(entry["dtype"]),
            buffer=blob,
            offset=start + entry["offset"],
        )
        view.setflags(write=False)
        views[entry["name"]] = view
    return blob, views


def allocate(
    layout: Mapping[str, tuple[tuple[int, ...], str]],
) -> tuple[bytearray, dict[str, NDArray[Any]]]:
    """An empty container for arrays of the given shapes and dtypes, and writable views
    of each array inside it: fill the views and the container is
    :func:`encode_arrays`'s bytes for those arrays, with no array outside it.

    Parameters
    ----------
    layout : mapping of name to (shape, dtype string)
        The arrays in container order; dtypes from ``ALLOWED_DTYPES`` (``"<f8"``...).
    """
    entries: list[dict[str, Any]] = []
    offset = 0
    for name, (shape, dtype) in layout.items():
        if dtype not in ALLOWED_DTYPES:
            raise SerializationError(f"array {name!r} has unsupported dtype {dtype}")
        nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        entry = {"name": name, "dtype": dtype, "shape": list(shape), "offset": offset}
        entries.append({**entry, "nbytes": nbytes})
        offset += nbytes
    header = json.dumps(
        {"arrays": entries, "meta": {}}, separators=(",", ":"), allow_nan=True
    ).encode()
    start = len(MAGIC) + 4 + len(header)
    blob = bytearray(start + offset)
    blob[: len(MAGIC)] = MAGIC
    struct.pack_into("<I", blob, len(MAGIC), len(header))
    blob[len(MAGIC) + 4 : start] = header
    views = {
        entry["name"]: np.ndarray(
            tuple(entry["shape"]),
            np.dtype(entry["dtype"]),
            buffer=blob,
            offset=start + entry["offset"],
        )
        for entry in entries
    }
    return blob, views
