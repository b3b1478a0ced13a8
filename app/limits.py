"""ASGI middlewares: 413 for request bodies over the limit; a bound on requests in flight."""

from __future__ import annotations

import asyncio
import contextlib
import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_CONCURRENT_REQUESTS = 24
"""Requests admitted into the app at once: fewer than the pooled connections an engine
keeps (``app.db.POOL_SIZE``, 30), so that none runs on a connection opened for it alone."""


class _BodyTooLargeError(Exception):
    pass


class BodySizeLimit:
    """Reject bodies larger than ``max_bytes`` with 413, by header or while streaming.

    Parameters
    ----------
    app : ASGI app
        The wrapped application.
    max_bytes : int
        Largest accepted body.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _reject(self, send: Send) -> None:
        body = json.dumps(
            {"detail": f"request body is larger than the limit of {self.max_bytes} bytes"}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await self._reject(send)
            return
        received = 0
        exceeded = False
        answered = False

        async def limited_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    exceeded = True
                    raise _BodyTooLargeError
            return message

        async def guarded_send(message: Message) -> None:
            # Whatever the app made of the interrupted read (FastAPI turns a failed
            # body read into a 400), the client gets the 413 it is owed.
            nonlocal answered
            if not exceeded:
                await send(message)
                return
            if not answered:
                answered = True
                await self._reject(send)

        with contextlib.suppress(_BodyTooLargeError):
            await self.app(scope, limited_receive, guarded_send)
        if exceeded and not answered:
            await self._reject(send)


class ConcurrencyLimit:
    """Admit at most ``limit`` HTTP requests into the app at once; the rest wait here.

    Each request in the app holds at most one pooled database connection, but may
    hold it while it waits for a thread-pool slot (FastAPI validates a sync route's
    response in the thread pool, after the route returned and before the session
    closes). With more requests in flight than connections, every thread can end up
    waiting for a connection held by a request that waits for a thread: a deadlock
    until the pool timeout (seen with 200 pollers). Below the pool's size it cannot
    happen; waiting requests cost only a coroutine on the event loop. A request's
    place is freed when its response starts (streams do not keep one).

    Parameters
    ----------
    app : ASGI app
        The wrapped application.
    limit : int
        Requests admitted at once (keep it below the connection pool's size).
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit
        self._semaphore: asyncio.Semaphore | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Event streams last as long as their run and hold no connection while they
        # wait (one shared poller per run, app.events): they are not counted.
        if scope["type"] != "http" or scope.get("path", "").endswith("/events"):
            await self.app(scope, receive, send)
            return
        if self._semaphore is None:  # created inside the server's event loop
            self._semaphore = asyncio.Semaphore(self.limit)
        semaphore = self._semaphore
        held = True

        async def releasing_send(message: Message) -> None:
            # Once the response has started the request needs no thread any more:
            # free its place (a long event stream must not hold one).
            nonlocal held
            if held and message["type"] == "http.response.start":
                held = False
                semaphore.release()
            await send(message)

        await semaphore.acquire()
        try:
            await self.app(scope, receive, releasing_send)
        finally:
            if held:
                semaphore.release()
