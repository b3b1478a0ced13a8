"""Read every request body completely before the request is admitted into the app.

:class:`BodyBuffer` sits outside the admission limit (:class:`app.edge.limits.ConcurrencyLimit`),
so a client that sends its body slowly, or stops half-way, holds a coroutine and a
spool file, never one of the app's request slots. It

- refuses a body larger than ``BACKPROP_MAX_BODY_BYTES`` with 413, by its
  ``Content-Length`` before reading it, or as soon as the bytes read pass the limit;
- answers 408 (and closes the connection) when the body stalls: no byte for
  ``BACKPROP_BODY_TIMEOUT_SECONDS`` (lengthened by up to 10% per connection,
  :func:`app.edge.limits.spread_timeout`), or less than the minimum rate overall (the body
  must be complete within that timeout plus one second per
  ``BACKPROP_BODY_MIN_BYTES_PER_SECOND`` bytes received, so a trickle of a byte a
  second is cut off after the timeout, not after hours);
- spools the body into a :class:`tempfile.SpooledTemporaryFile` (memory up to
  :data:`app.api.request_body.SPOOL_BYTES`, a temporary file beyond), published to the
  app as :class:`app.api.request_body.BufferedBody`;
- hashes it while it streams in when the request carries an ``Idempotency-Key``
  (:class:`app.edge.request_hash.BodyHasher`, published as ``BufferedBody.sha256``);
- replays it to the app's ``receive`` in chunks of at most :data:`REPLAY_CHUNK_BYTES`,
  then passes ``receive`` through to the server's own (so ``http.disconnect`` still
  reaches streaming responses), and closes the spool when the app returns.

Requests that declare no body (no ``Content-Length`` above 0, no
``Transfer-Encoding``) pass straight through.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, replace
from tempfile import SpooledTemporaryFile
from typing import BinaryIO

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.request_body import SCOPE_KEY, SPOOL_BYTES, BufferedBody
from app.edge.limits import spread_timeout
from app.edge.request_hash import IDEMPOTENCY_HEADER, BodyHasher, header

REPLAY_CHUNK_BYTES = 1024 * 1024
"""Largest ``http.request`` message the app receives from the replayed body: large, so
that a multipart parser writing to a spool on disk (Starlette hops to a thread for each
write) takes few steps per upload (64 KiB made a 75 MB ``.npy`` upload 1,200 hops)."""


@dataclass(frozen=True, slots=True)
class BodyLimits:
    """What a request body may cost.

    Attributes
    ----------
    max_bytes : int
        Largest accepted body (413 above).
    timeout_seconds : float
        Longest pause between two pieces of the body (408 after it); also the grace
        period of the minimum rate.
    min_bytes_per_second : float
        Each this many bytes received extend the body's deadline by one second.
    """

    max_bytes: int
    timeout_seconds: float
    min_bytes_per_second: float


@dataclass(frozen=True, slots=True)
class _Refusal:
    status: int
    detail: str


def _declared_length(scope: Scope) -> int | None:
    """The request's ``Content-Length``, or None when it has none (or a broken one)."""
    for name, value in scope.get("headers") or ():
        if name.lower() == b"content-length":
            return int(value) if value.isdigit() else None
    return None


def _has_body(scope: Scope) -> bool:
    length = _declared_length(scope)
    if length is not None:
        return length > 0
    return any(name.lower() == b"transfer-encoding" for name, _ in scope.get("headers") or ())


async def _send_refusal(send: Send, refusal: _Refusal) -> None:
    body = json.dumps({"detail": refusal.detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": refusal.status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                # The rest of the body may still be on its way: the connection cannot
                # carry another request.
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _too_large(limits: BodyLimits) -> _Refusal:
    return _Refusal(
        413,
        f"request body is larger than the limit of {limits.max_bytes} bytes "
        "(BACKPROP_MAX_BODY_BYTES); send a smaller body",
    )


def _stalled(limits: BodyLimits, size: int, declared: int | None, elapsed: float) -> _Refusal:
    of = f" of {declared}" if declared is not None else ""
    return _Refusal(
        408,
        f"request body timed out: no data for {limits.timeout_seconds:.1f} s "
        f"(BACKPROP_BODY_TIMEOUT_SECONDS) after {size}{of} bytes in {elapsed:.1f} s; "
        "send the whole body without pausing",
    )


def _too_slow(limits: BodyLimits, size: int, declared: int | None, elapsed: float) -> _Refusal:
    of = f" of {declared}" if declared is not None else ""
    return _Refusal(
        408,
        f"request body too slow: {size}{of} bytes in {elapsed:.1f} s; after the first "
        f"{limits.timeout_seconds:.1f} s (BACKPROP_BODY_TIMEOUT_SECONDS) a body must arrive at "
        f"{limits.min_bytes_per_second:g} bytes/s (BACKPROP_BODY_MIN_BYTES_PER_SECOND)",
    )


async def _read_body(
    receive: Receive,
    spool: BinaryIO,
    limits: BodyLimits,
    declared: int | None,
    hasher: BodyHasher | None = None,
) -> int | _Refusal | None:
    """Copy the body from ``receive`` into ``spool``.

    Returns
    -------
    int or _Refusal or None
        The body's size once complete; the answer owed when it is too large or too
        slow; None when the client disconnected.
    """
    start = time.monotonic()
    size = 0
    while True:
        elapsed = time.monotonic() - start
        left = limits.timeout_seconds + size / limits.min_bytes_per_second - elapsed
        if left <= 0:
            return _too_slow(limits, size, declared, elapsed)
        wait = min(limits.timeout_seconds, left)
        try:
            async with asyncio.timeout(wait):
                message = await receive()
        except TimeoutError:
            elapsed = time.monotonic() - start
            if wait < limits.timeout_seconds:
                return _too_slow(limits, size, declared, elapsed)
            return _stalled(limits, size, declared, elapsed)
        if message["type"] != "http.request":
            return None  # http.disconnect
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limits.max_bytes:
            return _too_large(limits)
        if chunk:
            spool.write(chunk)
            if hasher is not None:
                hasher.update(chunk)
        if not message.get("more_body", False):
            return size


class _Replay:
    """The app's ``receive``: the buffered body in chunks, then the server's own."""

    def __init__(self, body: BufferedBody, receive: Receive) -> None:
        self._body = body
        self._receive = receive
        self._offset = 0
        self._done = False

    async def __call__(self) -> Message:
        if self._done:
            return await self._receive()
        file = self._body.file
        file.seek(self._offset)
        chunk = file.read(REPLAY_CHUNK_BYTES)
        file.seek(0)  # the documented position, for routes that read the file themselves
        self._offset += len(chunk)
        more = self._offset < self._body.size
        self._done = not more
        return {"type": "http.request", "body": chunk, "more_body": more}


class BodyBuffer:
    """ASGI middleware: buffer each request body completely, within limits, then call the app.

    Parameters
    ----------
    app : ASGI app
        The wrapped application (the admission limit and everything inside it).
    limits : BodyLimits
        Size, pause and rate limits of a body.
    """

    def __init__(self, app: ASGIApp, limits: BodyLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _has_body(scope):
            await self.app(scope, receive, send)
            return
        declared = _declared_length(scope)
        if declared is not None and declared > self.limits.max_bytes:
            await _send_refusal(send, _too_large(self.limits))
            return
        timeout = spread_timeout(self.limits.timeout_seconds, scope.get("client"))
        limits = replace(self.limits, timeout_seconds=timeout)
        with SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
            file: BinaryIO = spool  # type: ignore[assignment]
            hasher = BodyHasher(scope) if header(scope, IDEMPOTENCY_HEADER) else None
            outcome = await _read_body(receive, file, limits, declared, hasher)
            if outcome is None:
                return  # the client left; nobody to answer
            if isinstance(outcome, _Refusal):
                await _send_refusal(send, outcome)
                return
            spool.seek(0)
            body = BufferedBody(file, outcome, hasher.hexdigest() if hasher else None)
            scope[SCOPE_KEY] = body
            try:
                await self.app(scope, _Replay(body, receive), send)
            finally:
                scope.pop(SCOPE_KEY, None)
