"""Slow and stalled HTTP clients on raw sockets, as an attacker would open them.

- A *stalled body*: ``POST /v1/networks`` with ``Content-Length: 100``, one byte of
  body, then nothing.
- A *slow head*: a request line, then one header line every ``interval`` seconds and
  never the blank line that ends the head; optionally after a complete request and
  its response on the same (keep-alive) connection.
- A *trickling body*: ``POST /v1/networks`` with ``Content-Length: 1000``, then one
  byte every ``interval`` seconds: it never pauses for long, but is far too slow.

Used by tests/integration/test_edge.py and benchmarks/slow_clients.py.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
import time
from dataclasses import dataclass, field

STALLED_BODY = (
    b"POST /v1/networks HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    b"Content-Length: 100\r\n\r\n{"
)
TRICKLING_BODY = (
    b"POST /v1/networks HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    b"Content-Length: 1000\r\n\r\n"
)
SLOW_HEAD_START = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"
SLOW_HEAD_LINE = b"X-Slow: 1\r\n"
KEEP_ALIVE_REQUEST = b"GET /favicon.ico HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
"""A request the app answers (404) without a thread or the database: a benchmark of
many keep-alive heads must not measure concurrent health checks instead."""


@dataclass
class SlowClient:
    """One raw connection: when it was opened, and what the server answered."""

    sock: socket.socket
    kind: str
    opened: float = field(default_factory=time.monotonic)
    received: bytes = b""
    answered: float | None = None
    closed: float | None = None

    @property
    def answer(self) -> bytes:
        """What the server sent after any keep-alive response (its head and body)."""
        if self.kind != "keep-alive head":
            return self.received
        return self.received[_response_length(self.received) or 0 :]

    @property
    def status_line(self) -> bytes:
        """The first line of :attr:`answer`."""
        return self.answer.split(b"\r\n", 1)[0]


def _response_length(data: bytes) -> int | None:
    """The length of the complete response at the start of ``data`` (None: incomplete)."""
    head, found, rest = data.partition(b"\r\n\r\n")
    if not found:
        return None
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return len(head) + 4 + length if len(rest) >= length else None


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def stalled_body(port: int) -> SlowClient:
    """Open a connection that sends a head and one byte of a 100-byte body."""
    client = SlowClient(_connect(port), "stalled body")
    client.sock.sendall(STALLED_BODY)
    return client


def trickling_body(port: int) -> SlowClient:
    """Open a connection that sends a head; :class:`Dripper` then sends a byte of its
    1000-byte body now and then."""
    client = SlowClient(_connect(port), "trickling body")
    client.sock.sendall(TRICKLING_BODY)
    return client


def slow_head(port: int, keep_alive: bool = False) -> SlowClient:
    """Open a connection that starts a request head (after one complete request when
    ``keep_alive``); :class:`Dripper` then sends a header line now and then."""
    sock = _connect(port)
    kind = "head"
    received = b""
    if keep_alive:
        kind = "keep-alive head"
        sock.sendall(KEEP_ALIVE_REQUEST)
        while _response_length(received) is None:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed after {received!r}")
            received += chunk
    client = SlowClient(sock, kind, received=received)
    sock.sendall(SLOW_HEAD_START)
    return client


class Dripper:
    """A thread that sends, each ``interval`` s, a header line on every slow-head
    connection and a byte on every trickling body."""

    def __init__(self, clients: list[SlowClient], interval: float) -> None:
        self._clients = [client for client in clients if client.kind != "stalled body"]
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="head-dripper", daemon=True)

    def __enter__(self) -> Dripper:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            for client in self._clients:
                # A closed one was answered: await_answers reads what the server said.
                drop = b" " if client.kind == "trickling body" else SLOW_HEAD_LINE
                if client.closed is None:
                    with contextlib.suppress(OSError):
                        client.sock.send(drop)


def unanswered(clients: list[SlowClient]) -> int:
    """How many of ``clients`` have not received a byte yet (a non-blocking look)."""
    with selectors.DefaultSelector() as selector:
        for client in clients:
            selector.register(client.sock, selectors.EVENT_READ)
        ready = {key.fileobj for key, _ in selector.select(timeout=0)}
    return sum(1 for client in clients if client.sock not in ready)


def await_answers(clients: list[SlowClient], timeout: float) -> None:
    """Read every connection until the server closes it, or ``timeout`` s pass.

    Each client's ``received``, ``answered`` (the time of the first byte after any
    keep-alive response) and ``closed`` (the time of EOF) are filled in.
    """
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        for client in clients:
            client.sock.setblocking(False)
            selector.register(client.sock, selectors.EVENT_READ, client)
        open_count = len(clients)
        while open_count and time.monotonic() < deadline:
            for key, _ in selector.select(timeout=min(1.0, deadline - time.monotonic())):
                client: SlowClient = key.data
                try:
                    chunk = client.sock.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except ConnectionResetError:
                    chunk = b""
                now = time.monotonic()
                if chunk:
                    client.received += chunk
                    if client.answered is None:
                        client.answered = now
                else:
                    client.closed = now
                    selector.unregister(client.sock)
                    open_count -= 1


def close_all(clients: list[SlowClient]) -> None:
    """Close every connection."""
    for client in clients:
        client.sock.close()
