"""Arrays and checkpoints to bytes and back, with explicit dtypes and shapes; never pickle.

The format is a small self-describing container::

    b"BPARRAY1" | uint32 little-endian header length | JSON header | raw array bytes

The header lists every array's name, dtype (``"<f8"``, ``"<f4"``, ``"<i8"``...),
shape and byte offset, plus optional JSON metadata. Arrays are stored C-ordered
and little-endian, each at a multiple of :data:`ALIGNMENT` bytes from the start (the
header is padded with spaces, arrays with zero bytes), so that views into a stored
container are aligned. Decoding accepts only plain numeric dtypes and checks every
size against the buffer, so untrusted bytes cannot execute code or read out of
bounds.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from engine.checkpoint import TrainingState

MAGIC = b"BPARRAY1"
ALLOWED_DTYPES = frozenset({"<f8", "<f4", "<i8", "<i4", "|b1", "|u1"})


class SerializationError(ValueError):
    """Bytes that are not a valid array container."""


ALIGNMENT = 8
"""Every array of a container starts at a multiple of this many bytes from the
container's start, the largest itemsize (buffers from ``malloc`` and Python's ``bytes``
are at least 16-byte aligned, so views into a stored container are aligned). NumPy's
kernels take slow paths on unaligned data: ``np.take`` of one row of an unaligned
(100,000 x 2) view copied the whole array, 92 us against 0.9 us, so a per-sample epoch
through the API ran 6x slower than ``engine.fit`` on the same arrays."""


def _aligned(offset: int) -> int:
    return -(-offset // ALIGNMENT) * ALIGNMENT


@dataclass(frozen=True)
class ContainerLayout:
    """Where everything goes in a container of given arrays (see the module).

    Attributes
    ----------
    prefix : bytes
        The container's first bytes: magic, header length and the JSON header, padded
        with spaces to a multiple of :data:`ALIGNMENT`.
    offsets : tuple of int
        Where each array's bytes start in the container (multiples of ``ALIGNMENT``).
    size : int
        The container's length in bytes.
    """

    prefix: bytes
    offsets: tuple[int, ...]
    size: int


def container_layout(
    arrays: Sequence[tuple[str, np.dtype[Any], tuple[int, ...]]],
    meta: Mapping[str, Any] | None = None,
) -> ContainerLayout:
    """The layout of a container of ``arrays`` (name, little-endian dtype, shape; in order)
    and JSON ``meta``.

    Raises
    ------
    SerializationError
        A dtype outside :data:`ALLOWED_DTYPES`, or ``meta`` that JSON cannot hold.
    """
    entries: list[dict[str, Any]] = []
    end = 0
    for name, dtype, shape in arrays:
        if dtype.str not in ALLOWED_DTYPES:
            raise SerializationError(f"array {name!r} has unsupported dtype {dtype}")
        offset = _aligned(end)
        nbytes = math.prod(shape) * dtype.itemsize
        entries.append(
            {
                "name": name,
                "dtype": dtype.str,
                "shape": list(shape),
                "offset": offset,
                "nbytes": nbytes,
            }
        )
        end = offset + nbytes
    try:
        header = json.dumps(
            {"arrays": entries, "meta": dict(meta or {})}, separators=(",", ":"), allow_nan=True
        ).encode()
    except (TypeError, ValueError) as error:
        raise SerializationError(f"metadata is not JSON-serializable: {error}") from None
    start = _aligned(len(MAGIC) + 4 + len(header))
    header += b" " * (start - len(MAGIC) - 4 - len(header))  # JSON may end with spaces
    prefix = MAGIC + struct.pack("<I", len(header)) + header
    offsets = tuple(start + entry["offset"] for entry in entries)
    return ContainerLayout(prefix=prefix, offsets=offsets, size=start + end)


def little_endian(array: NDArray[Any]) -> NDArray[Any]:
    """``array`` as stored: little-endian (a copy only when it was big-endian)."""
    if array.dtype.byteorder == ">":
        return array.astype(array.dtype.newbyteorder("<"))
    return array


Blob = bytes | bytearray | memoryview
"""What a container is read from: ``bytes``, or a writable buffer (:func:`blank_buffer`)."""


def blank_buffer(size: int) -> memoryview:
    """``size`` zero bytes, writable, made at no cost: a view of ``np.zeros``, whose
    ``calloc`` maps fresh pages that the kernel zeroes as they are first written.

    ``bytearray(size)`` zeroes every byte at once with the GIL held (31 ms for 80 MB)
    and ``bytes(...)`` of it copies them again (40 ms): every other thread of the
    process, a server's event loop too, waits that long. Filled by NumPy (which lets
    the GIL go while it copies) or piece by piece, this buffer costs the waiters
    nothing.
    """
    return np.zeros(size, dtype=np.uint8).data


def write_arrays(arrays: Sequence[NDArray[Any]], layout: ContainerLayout) -> memoryview:
    """A container of ``layout`` with ``arrays`` (little-endian, in layout order) in it,
    in a :func:`blank_buffer`."""
    blob = blank_buffer(layout.size)
    blob[: len(layout.prefix)] = layout.prefix
    for array, offset in zip(arrays, layout.offsets, strict=True):
        np.ndarray(array.shape, array.dtype, buffer=blob, offset=offset)[...] = array
    return blob


def encode_arrays(
    arrays: Mapping[str, NDArray[Any]],
    meta: Mapping[str, Any] | None = None,
) -> bytes:
    """Pack named arrays (and optional JSON ``meta``) into bytes."""
    prepared = {name: little_endian(np.asarray(value)) for name, value in arrays.items()}
    layout = container_layout([(n, a.dtype, a.shape) for n, a in prepared.items()], meta)
    return bytes(write_arrays(list(prepared.values()), layout))


def decode_container(
    blob: Blob, *, copy: bool = True
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
    # A container written before ALIGNMENT (or cut out of another buffer) may place an
    # array off its alignment: copy it rather than hand NumPy's slow paths a view.
    return array.copy() if copy or not array.flags.aligned else array


def decode_arrays(blob: Blob, *, copy: bool = True) -> dict[str, NDArray[Any]]:
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
