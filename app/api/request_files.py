"""A request's body as a seekable file, parsed in a worker thread.

Routes that read big bodies themselves (``POST /v1/datasets``, ``POST
/v1/runs/{id}/predict``) call :func:`parse_body`: the parser gets a binary file
positioned at the start of the body and runs in the thread pool, so the event loop
never decodes a large body and the body is never one ``bytes`` object.

The file comes from the body-buffering middleware (:mod:`app.edge.body_buffer`,
:func:`app.api.request_body.buffered_body`) when it buffered the request; otherwise
(a request the middleware passed through) this module spools the body
itself into a :class:`tempfile.SpooledTemporaryFile` (in memory up to
:data:`SPOOL_BYTES`, a temporary file beyond), which it closes after parsing.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from typing import BinaryIO, Concatenate, ParamSpec, TypeVar, cast

from fastapi import HTTPException, Request, status
from fastapi.exceptions import RequestValidationError
from starlette.concurrency import run_in_threadpool

from app.api.request_body import buffered_body

T = TypeVar("T")
P = ParamSpec("P")

SPOOL_BYTES = 1024 * 1024
"""A spooled body up to this size stays in memory; a larger one goes to a temporary file."""


async def _spool(request: Request) -> BinaryIO:
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115 - closed by the caller
    try:
        async for chunk in request.stream():
            spool.write(chunk)
    except Exception as exc:
        # As FastAPI does for the bodies it reads (BodySizeLimit turns this into its 413).
        spool.close()
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST, "There was an error reading the body"
        ) from exc
    spool.seek(0)
    return cast(BinaryIO, spool)


def _is_json(request: Request) -> bool:
    content_type = request.headers.get("content-type")
    if not content_type:
        return True  # FastAPI reads a body without a Content-Type as JSON too
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


async def parse_body(
    request: Request,
    parse: Callable[Concatenate[BinaryIO, P], T],
    *args: P.args,
    **kwargs: P.kwargs,
) -> T:
    """Run ``parse(file, *args, **kwargs)`` in the thread pool on the request's body.

    Raises
    ------
    fastapi.exceptions.RequestValidationError
        When the body is not declared as JSON (``Content-Type``), as FastAPI would.
    """
    if not _is_json(request):
        raise RequestValidationError(
            [
                {
                    "loc": ("body",),
                    "msg": "the body must be JSON (Content-Type: application/json)",
                    "type": "model_attributes_type",
                }
            ]
        )
    body = buffered_body(request)
    if body is not None:
        body.file.seek(0)
        return await run_in_threadpool(parse, body.file, *args, **kwargs)
    spool = await _spool(request)
    try:
        return await run_in_threadpool(parse, spool, *args, **kwargs)
    finally:
        spool.close()
