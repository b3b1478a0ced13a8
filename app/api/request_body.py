"""The request body as the body-buffering middleware (:mod:`app.edge.body_buffer`) stored it.

The middleware reads every request body completely, before the request is admitted
into the app, into a :class:`tempfile.SpooledTemporaryFile` (in memory up to
:data:`SPOOL_BYTES`, a temporary file beyond). A route that parses a large body reads
``buffered_body(request).file`` (in a worker thread, e.g. with a streaming parser)
instead of ``await request.body()``, so the body never has to be one ``bytes``
object. The file stays open until the response has been sent; then it is closed and
its temporary file, if any, deleted — also when the request fails or the client
goes away.

This module is a stable interface: other modules code against it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import BinaryIO

from starlette.requests import Request

SCOPE_KEY = "backprop.buffered_body"
"""Where the middleware puts the :class:`BufferedBody` in the ASGI scope."""

SPOOL_BYTES = 1024 * 1024
"""A body up to this size stays in memory; a larger one spills to a temporary file."""


@dataclass(frozen=True, slots=True)
class BufferedBody:
    """A complete request body.

    Attributes
    ----------
    file : BinaryIO
        The whole body: seekable, positioned at 0 (the middleware's own replay to
        ``receive`` reads at its own offset and seeks back to 0). Read it in a
        worker thread when it may be large; never close it (the middleware does).
    size : int
        Its length in bytes.
    sha256 : str or None
        :meth:`app.edge.request_hash.BodyHasher.hexdigest` of the body, computed while it
        streamed in; only for requests that carry an ``Idempotency-Key``.
    """

    file: BinaryIO
    size: int
    sha256: str | None = None


def buffered_body(request: Request) -> BufferedBody | None:
    """The buffered body of ``request``.

    Parameters
    ----------
    request : Request
        The current request.

    Returns
    -------
    BufferedBody or None
        None when the middleware did not buffer this request (it declared no body,
        or the app runs without the middleware).
    """
    body = request.scope.get(SCOPE_KEY)
    return body if isinstance(body, BufferedBody) else None
