"""ASGI middleware: a bound on requests in flight (bodies are read before, in app.edge.body_buffer)."""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_CONCURRENT_REQUESTS = 24
"""Requests admitted into the app at once: fewer than the pooled connections an engine
keeps (``app.db.database.POOL_SIZE``, 30), so that none runs on a connection opened for it alone."""


TIMEOUT_SPREAD = 0.1
"""Request timeouts are lengthened by up to this fraction, per connection."""


def spread_timeout(seconds: float, client: tuple[str, int] | None) -> float:
    """``seconds`` lengthened by 0 to :data:`TIMEOUT_SPREAD`, chosen by the client's port.

    Connections opened together (200 stalled clients started at once) then time out
    over a tenth of the timeout instead of in one burst of answers, which would hold
    the event loop for everyone else. The port makes it deterministic: no random draw.

    Parameters
    ----------
    seconds : float
        The configured timeout.
    client : tuple of (str, int), optional
        The ASGI scope's ``client`` (host, port); None leaves ``seconds`` as it is.
    """
    if not client:
        return seconds
    return seconds * (1.0 + TIMEOUT_SPREAD * (client[1] % 101) / 100)


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
