"""Array blobs written in place: the bytes of :func:`engine.serialization.encode_arrays`
without its last copy.

``encode_arrays`` returns ``bytes``, a copy of the container it filled: twice a
dataset's size at its peak. :func:`encode_arrays` here returns the filled
buffer itself (:func:`engine.serialization.blank_buffer`; the database drivers store
it as they store ``bytes``), and
:func:`allocate` gives the views to fill before any array exists outside the
container. The bytes are the same (so the same ``sha256``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from engine.serialization import (
    ALLOWED_DTYPES,
    SerializationError,
    blank_buffer,
    container_layout,
    little_endian,
    write_arrays,
)


def encode_arrays(arrays: Mapping[str, NDArray[Any]]) -> memoryview:
    """The container of ``arrays`` (no metadata), byte for byte ``encode_arrays``'s."""
    prepared = {name: little_endian(np.asarray(value)) for name, value in arrays.items()}
    layout = container_layout([(name, a.dtype, a.shape) for name, a in prepared.items()])
    return write_arrays(list(prepared.values()), layout)


def pack(arrays: Mapping[str, NDArray[Any]]) -> tuple[memoryview, dict[str, NDArray[Any]]]:
    """:func:`encode_arrays`, and read-only views of each array inside the container.

    Replacing the arrays by the views stores them once: the originals can be freed
    before the container is written to the database.
    """
    prepared = {name: little_endian(np.asarray(value)) for name, value in arrays.items()}
    blob, views = allocate({name: (a.shape, a.dtype.str) for name, a in prepared.items()})
    for name, view in views.items():
        view[...] = prepared[name]
        view.setflags(write=False)
    return blob, views


def allocate(
    layout: Mapping[str, tuple[tuple[int, ...], str]],
) -> tuple[memoryview, dict[str, NDArray[Any]]]:
    """An empty container for arrays of the given shapes and dtypes, and writable views
    of each array inside it: fill the views and the container is
    :func:`encode_arrays`'s bytes for those arrays, with no array outside it.

    Parameters
    ----------
    layout : mapping of name to (shape, dtype string)
        The arrays in container order; dtypes from ``ALLOWED_DTYPES`` (``"<f8"``...).
    """
    for name, (_, dtype) in layout.items():
        if dtype not in ALLOWED_DTYPES:
            raise SerializationError(f"array {name!r} has unsupported dtype {dtype}")
    specs = [(name, np.dtype(dtype), tuple(shape)) for name, (shape, dtype) in layout.items()]
    placed = container_layout(specs)
    blob = blank_buffer(placed.size)
    blob[: len(placed.prefix)] = placed.prefix
    views = {
        name: np.ndarray(shape, dtype, buffer=blob, offset=offset)
        for (name, dtype, shape), offset in zip(specs, placed.offsets, strict=True)
    }
    return blob, views
