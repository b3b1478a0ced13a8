"""uvicorn's h11 HTTP protocol with a deadline for the request head.

uvicorn limits how long an idle keep-alive connection stays open, but nothing limits
how long a request line and its headers may take: a client that sends a header line
every few seconds (or connects and sends nothing) holds its connection forever.
:class:`HeadTimeoutProtocol` gives the whole head ``header_timeout`` seconds, counted
from the connection's start or, on a keep-alive connection, from the end of the
previous response (lengthened by up to 10% per connection,
:func:`app.edge.limits.spread_timeout`); then it answers 408 and closes the connection.
uvicorn's own keep-alive timeout still closes idle keep-alive connections (silently)
first when it is the shorter one.

Two more changes to uvicorn's protocol: at a graceful shutdown, a request whose
body is still arriving is answered 503 at once (the app has not seen it: the body
is read first, :mod:`app.edge.body_buffer`), and the answers this module writes itself
(408, 503, and uvicorn's 400 for a request h11 cannot parse) are JSON with a
``detail`` and carry ``X-Content-Type-Options: nosniff`` like the app's.

The implementation is pinned to h11 (``uvicorn.Config(http=...)``; uvicorn's other
implementation, httptools, is not installed): the protocol's state machine tells
when a head is complete (the client's state leaves ``IDLE``).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from app.edge.limits import spread_timeout

logger = logging.getLogger("backprop.http")

SECURITY_HEADERS = b"x-content-type-options: nosniff\r\n"
"""Sent on the responses this module writes itself (the app adds its own)."""


def _raw_response(status: int, reason: str, detail: str) -> bytes:
    body = json.dumps({"detail": detail}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n"
    ).encode()
    return head + SECURITY_HEADERS + b"\r\n" + body


class HeadTimeoutProtocol(H11Protocol):
    """:class:`~uvicorn.protocols.http.h11_impl.H11Protocol` plus the head deadline
    (and the shutdown and 400 changes in the module's description).

    Attributes
    ----------
    header_timeout : float
        Seconds the request head may take (set by :func:`protocol_with_head_timeout`).
    """

    header_timeout: ClassVar[float] = 10.0
    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the clock for the first request's head."""
        super().connection_made(transport)
        self._update_head_timer()

    def data_received(self, data: bytes) -> None:
        """Feed the bytes to h11; stop the clock once the head is complete."""
        super().data_received(data)
        self._update_head_timer()

    def on_response_complete(self) -> None:
        """Start the clock for the next request's head (keep-alive)."""
        super().on_response_complete()
        self._update_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the clock with the connection."""
        self._cancel_head_timer()
        super().connection_lost(exc)

    def _waiting_for_head(self) -> bool:
        if self.transport is None or self.transport.is_closing():
            return False
        if self.cycle is not None and not self.cycle.response_complete:
            return False  # a request is in progress (its head arrived)
        return self.conn.their_state is h11.IDLE

    def _update_head_timer(self) -> None:
        if not self._waiting_for_head():
            self._cancel_head_timer()
        elif self._head_timer is None:
            timeout = spread_timeout(self.header_timeout, self.client)
            self._head_timer = self.loop.call_later(timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _client_text(self) -> str:
        return f"{self.client[0]}:{self.client[1]}" if self.client else "unknown client"

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self._waiting_for_head():
            return
        client = self._client_text()
        logger.info(
            "%s: request head not complete after %g s: 408, connection closed",
            client,
            self.header_timeout,
            extra={"event": "http.head_timeout", "client": client},
        )
        detail = (
            f"request head (request line and headers) not complete after "
            f"{self.header_timeout:g} s (BACKPROP_HEADER_TIMEOUT_SECONDS); send it at once"
        )
        self.transport.write(_raw_response(408, "Request Timeout", detail))
        self.transport.close()

    def shutdown(self) -> None:
        """Graceful shutdown: end at once a request whose body is still arriving.

        The app has not seen such a request (:mod:`app.edge.body_buffer` reads the whole
        body first), so nothing is lost: it gets a 503 and the connection closes,
        instead of holding the shutdown until ``timeout_graceful_shutdown`` and then
        being cancelled. Everything else is uvicorn's: idle connections close, the
        others finish their response first.
        """
        cycle = self.cycle
        receiving_body = self.conn.their_state is h11.SEND_BODY
        if cycle is None or cycle.response_started or not receiving_body:
            super().shutdown()
            return
        logger.info(
            "%s: shutting down while a request body was arriving: 503, connection closed",
            self._client_text(),
            extra={"event": "http.shutdown_during_body", "client": self._client_text()},
        )
        detail = "the server is shutting down; send the request again"
        self.transport.write(_raw_response(503, "Service Unavailable", detail))
        cycle.disconnected = True  # the app's receive answers http.disconnect
        cycle.message_event.set()
        self.transport.close()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a request h11 cannot parse, with the security header."""
        self.transport.write(_raw_response(400, "Bad Request", msg))
        self.transport.close()


def protocol_with_head_timeout(header_timeout: float) -> type[HeadTimeoutProtocol]:
    """A :class:`HeadTimeoutProtocol` subclass with ``header_timeout`` seconds for a head.

    Parameters
    ----------
    header_timeout : float
        ``BACKPROP_HEADER_TIMEOUT_SECONDS``.

    Returns
    -------
    type
        The class to pass as ``uvicorn.Config(http=...)``.
    """
    return type("BackpropHTTPProtocol", (HeadTimeoutProtocol,), {"header_timeout": header_timeout})
