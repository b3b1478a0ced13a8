"""Large JSON responses written piece by piece, byte for byte the JSON written before.

An array is written in chunks of about :data:`CHUNK_CELLS` numbers: each chunk is
converted with :func:`app.datasets.arrays.array_to_json` (non-finite values become null)
and serialized with the same serializer as before, so the concatenation is the
same document: pydantic's (what FastAPI uses for response models) for API
responses, :func:`json.dumps` for the JSON export file. :func:`streamed_response`
sends a small document as one body with a ``Content-Length`` and streams a large
one; a sync iterator is advanced in the thread pool, one chunk at a time, so the
event loop never serializes and memory holds one chunk, not the document.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from itertools import chain
from typing import Any

import numpy as np
from fastapi.responses import Response, StreamingResponse
from numpy.typing import NDArray
from pydantic import BaseModel, TypeAdapter
from starlette.background import BackgroundTask

from app.datasets.arrays import array_to_json
from app.memory import release_freed_memory

CHUNK_CELLS = 1 << 15
"""Numbers per serialized chunk (a few milliseconds of work, well under 1 MiB)."""
SMALL_BYTES = 1 << 20
"""Documents up to this size are sent in one piece, with a Content-Length."""

Dumps = Callable[[Any], bytes]
_ANY: TypeAdapter[Any] = TypeAdapter(Any)


def api_dumps(value: Any) -> bytes:
    """Pydantic's JSON of ``value``: what FastAPI writes for a response model."""
    return _ANY.dump_json(value)


def model_dumps(model: BaseModel) -> bytes:
    """Pydantic's JSON of a response model, as FastAPI writes it."""
    return TypeAdapter(type(model)).dump_json(model)


def file_dumps(value: Any) -> bytes:
    """Compact :func:`json.dumps` (the export file's serializer)."""
    return json.dumps(value, separators=(",", ":")).encode("utf-8")


def array_json(array: NDArray[Any] | None, dumps: Dumps = api_dumps) -> Iterator[bytes]:
    """``dumps(array_to_json(array))`` in pieces of whole rows (``null`` for None)."""
    if array is None:
        yield b"null"
        return
    array = np.asarray(array)
    if array.ndim == 0 or array.shape[0] == 0:
        yield dumps(array_to_json(array))
        return
    row_cells = max(1, int(array.size // array.shape[0]))
    rows = max(1, CHUNK_CELLS // row_cells)
    yield b"["
    for start in range(0, array.shape[0], rows):
        if start:
            yield b","
        yield dumps(array_to_json(array[start : start + rows]))[1:-1]
    yield b"]"


def object_json(
    members: Iterable[tuple[str, bytes | Iterable[bytes]]], dumps: Dumps = api_dumps
) -> Iterator[bytes]:
    """A JSON object from ``(key, value JSON)`` pairs; a value may come in pieces."""
    yield b"{"
    for index, (key, value) in enumerate(members):
        yield (b"," if index else b"") + dumps(key) + b":"
        if isinstance(value, bytes):
            yield value
        else:
            yield from value
    yield b"}"


def extend_object(
    head: bytes, members: Iterable[tuple[str, bytes | Iterable[bytes]]], dumps: Dumps = api_dumps
) -> Iterator[bytes]:
    """The object ``head`` (serialized, non-empty) with ``members`` appended."""
    yield head[:-1]
    for key, value in members:
        yield b"," + dumps(key) + b":"
        if isinstance(value, bytes):
            yield value
        else:
            yield from value
    yield b"}"


def _releasing(parts: Iterator[bytes]) -> Iterator[bytes]:
    try:
        yield from parts
    finally:
        release_freed_memory()


def streamed_response(
    parts: Iterator[bytes],
    media_type: str = "application/json",
    headers: dict[str, str] | None = None,
) -> Response:
    """A response of the JSON ``parts`` make; call it in the thread pool (it writes the
    first MiB at once: a smaller document is one body, a larger one streams)."""
    head: list[bytes] = []
    size = 0
    for part in parts:
        head.append(part)
        size += len(part)
        if size > SMALL_BYTES:
            return StreamingResponse(
                _releasing(chain(head, parts)), media_type=media_type, headers=headers
            )
    body = b"".join(head)
    del head
    # What made the document (a big predict's network, its blocks) is freed once the
    # endpoint has returned, not here, where its frames still hold it: give it back then.
    return Response(
        body,
        media_type=media_type,
        headers=headers,
        background=BackgroundTask(release_freed_memory),
    )
