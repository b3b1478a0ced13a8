"""Arrays and checkpoints to bytes and back, with explicit dtypes and shapes; never pickle.

The format is a small self-describing container::

    b"BPARRAY1" | uint32 little-endian header length | JSON header | raw array bytes

The header lists every array's name, dtype (``"<f8"``, ``"<f4"``, ``"<i8"``...),
shape and byte offset, plus optional JSON metadata. Arrays are stored C-ordered
and little-endian. Decoding accepts only plain numeric dtypes and checks every
size against the buffer, so untrusted bytes cannot execute code or read out of
bounds.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from engine.checkpoint import TrainingState

MAGIC = b"BPARRAY1"
ALLOWED_DTYPES = frozenset({"<f8", "<f4", "<i8", "<i4", "|b1", "|u1"})


class SerializationError(ValueError):
    """Bytes that are not a valid array container."""


def encode_arrays(
    arrays: Mapping[str, NDArray[Any]],
    meta: Mapping[str, Any] | None = None,
) -> bytes:
    """Pack named arrays (and optional JSON ``meta``) into bytes."""
    entries, chunks, offset = [], [], 0
    for name, value in arrays.items():
        array = np.asarray(value)
        dtype = array.dtype.newbyteorder("<") if array.dtype.byteorder == ">" else array.dtype
        if dtype.str not in ALLOWED_DTYPES:
            raise SerializationError(f"array {name!r} has unsupported dtype {array.dtype}")
        data = np.ascontiguousarray(array, dtype=dtype).tobytes()
        entries.append(
            {
                "name": name,
                "dtype": dtype.str,
                "shape": list(array.shape),
                "offset": offset,
                "nbytes": len(data),
            }
        )
        chunks.append(data)
        offset += len(data)
    try:
        header = json.dumps(
            {"arrays": entries, "meta": dict(meta or {})}, separators=(",", ":"), allow_nan=True
        ).encode()
    except (TypeError, ValueError) as error:
        raise SerializationError(f"metadata is not JSON-serializable: {error}") from None
    return b"".join([MAGIC, struct.pack("<I", len(header)), header, *chunks])


def decode_container(
    blob: bytes, *, copy: bool = True
) -> tuple[dict[str, NDArray[Any]], dict[str, Any]]:
    """Unpack bytes from :func:`encode_arrays` into ``(arrays, meta)``.

    With ``copy=False`` the arrays are views into ``blob`` (read-only when ``blob`` is
    ``bytes``), which they keep alive: no second copy of a large container.

    Raises :class:`SerializationError` (and nothing else) for any malformed input.
    """
    view = memoryview(blob)
    if len(view) < len(MAGIC) + 4 or bytes(view[: len(MAGIC)]) != MAGIC:
        raise SerializationError("not a Backprop array container (bad magic bytes)")
    (header_length,) = struct.unpack("<I", view[len(MAGIC) : len(MAGIC) + 4])
    start = len(MAGIC) + 4
    if start + header_length > len(view):
        raise SerializationError("truncated header")
    try:
        header = json.loads(bytes(view[start : start + header_length]))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise SerializationError(f"unreadable header: {error}") from None
    if not isinstance(header, dict):
        raise SerializationError("the header must be a JSON object")
    entries, meta = header.get("arrays", []), header.get("meta", {})
    if not isinstance(entries, list) or not isinstance(meta, dict):
        raise SerializationError('the header\'s "arrays" must be a list and "meta" an object')
    body = view[start + header_length :]
    arrays: dict[str, NDArray[Any]] = {}
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise SerializationError("every array entry must be an object with a string name")
        if entry["name"] in arrays:
            raise SerializationError(f"array {entry['name']!r} appears twice")
        arrays[entry["name"]] = _read_array(entry, body, copy)
    return arrays, meta


def _read_array(entry: Mapping[str, Any], body: memoryview, copy: bool = True) -> NDArray[Any]:
    dtype_str = entry.get("dtype")
    if not isinstance(dtype_str, str) or dtype_str not in ALLOWED_DTYPES:
        raise SerializationError(f"unsupported dtype {dtype_str!r}")
    dtype = np.dtype(dtype_str)
    shape = entry.get("shape")
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise SerializationError(f"bad shape {shape!r}")
    offset, nbytes = entry.get("offset"), entry.get("nbytes")
    if (
        not isinstance(offset, int)
        or not isinstance(nbytes, int)
        or isinstance(offset, bool)
        or isinstance(nbytes, bool)
        or offset < 0
    ):
        raise SerializationError("bad offset or size")
    if nbytes != math.prod(shape) * dtype.itemsize or offset + nbytes > len(body):
        raise SerializationError(f"array {entry.get('name')!r} does not fit its declared shape")
    array = np.frombuffer(body[offset : offset + nbytes], dtype=dtype).reshape(shape)
    return array.copy() if copy else array


def decode_arrays(blob: bytes, *, copy: bool = True) -> dict[str, NDArray[Any]]:
    """Unpack the arrays of :func:`encode_arrays` (metadata ignored); ``copy`` as in
    :func:`decode_container`."""
    return decode_container(blob, copy=copy)[0]


def encode_state(state: TrainingState) -> bytes:
    """Serialize a :class:`TrainingState`."""
    return encode_arrays(state.arrays, state.meta)


def decode_state(blob: bytes) -> TrainingState:
    """Deserialize a :class:`TrainingState` from :func:`encode_state`'s bytes."""
    arrays, meta = decode_container(blob)
    return TrainingState(arrays=arrays, meta=meta)
