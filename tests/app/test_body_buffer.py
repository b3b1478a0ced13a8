"""The body-buffering middleware's contract (app/edge/body_buffer.py, app/api/request_body.py).

Driven as ASGI with a ``receive`` that plays a client (pieces of a body, a pause, a
disconnect) around a small app that records what it was given; the real server is
attacked in tests/integration/test_edge.py.
"""

from __future__ import annotations

import asyncio
import json
import tracemalloc
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from starlette.requests import Request

from app.api.request_body import SPOOL_BYTES, BufferedBody, buffered_body
from app.edge.body_buffer import REPLAY_CHUNK_BYTES, BodyBuffer, BodyLimits

Message = dict[str, Any]
LIMITS = BodyLimits(max_bytes=64 * 1024 * 1024, timeout_seconds=5.0, min_bytes_per_second=1.0)
DISCONNECT: Message = {"type": "http.disconnect"}


def _scope(length: int | None, method: str = "POST") -> dict[str, Any]:
    headers = [(b"content-type", b"application/octet-stream")]
    if length is None:
        headers.append((b"transfer-encoding", b"chunked"))
    else:
        headers.append((b"content-length", str(length).encode()))
    return {"type": "http", "method": method, "path": "/upload", "headers": headers}


def _pieces(total: int, piece: int) -> Iterator[bytes]:
    """``total`` bytes (a repeating pattern) in pieces of ``piece`` bytes."""
    pattern = bytes(i % 251 for i in range(piece + 251))
    sent = 0
    while sent < total:
        size = min(piece, total - sent)
        start = sent % 251
        yield pattern[start : start + size]
        sent += size


class Client:
    """The server side of a request: ``receive`` yields the body's pieces; then the
    body ends (``then="end"``, later calls answer ``http.disconnect``, as a server does
    once the response is complete), or the client stops sending (``"stall"``) or
    leaves (``"disconnect"``) before the last piece. ``send`` records the answer."""

    def __init__(self, pieces: Iterator[bytes], then: str = "end") -> None:
        self._pieces = pieces
        self._next = next(pieces, None)
        self._then = then
        self.sent: list[Message] = []
        self.server_messages = 0

    async def receive(self) -> Message:
        await asyncio.sleep(0)  # let other requests run, as a network would
        if self._next is not None:
            body, self._next = self._next, next(self._pieces, None)
            more = self._next is not None or self._then != "end"
            return {"type": "http.request", "body": body, "more_body": more}
        if self._then == "stall":
            await asyncio.Event().wait()
        self.server_messages += 1
        return DISCONNECT

    async def send(self, message: Message) -> None:
        self.sent.append(message)

    @property
    def status(self) -> int | None:
        return next((m["status"] for m in self.sent if m["type"] == "http.response.start"), None)

    @property
    def detail(self) -> str:
        body = b"".join(m.get("body", b"") for m in self.sent if m["type"] == "http.response.body")
        detail: str = json.loads(body)["detail"]
        return detail


App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


class Recorder:
    """An app that reads the whole body through ``receive`` and answers 200."""

    def __init__(
        self, read: bool = True, fail: bool = False, barrier: asyncio.Barrier | None = None
    ) -> None:
        self.read = read
        self.fail = fail
        self.barrier = barrier
        self.body: BufferedBody | None = None
        self.positions: list[int] = []
        self.chunks: list[bytes] = []
        self.after_body: Message | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.body = buffered_body(Request(scope))
        if self.body is not None:
            self.positions.append(self.body.file.tell())
        if self.barrier is not None:
            await self.barrier.wait()  # every request holds its body at once
        if self.read:
            while True:
                message = await receive()
                self.chunks.append(message["body"])
                if not message["more_body"]:
                    break
            if self.body is not None:
                self.positions.append(self.body.file.tell())
            self.after_body = await receive()
        if self.fail:
            raise RuntimeError("the route failed")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


def _run(app: App, scope: dict[str, Any], client: Client, limits: BodyLimits = LIMITS) -> None:
    asyncio.run(BodyBuffer(app, limits)(scope, client.receive, client.send))


def test_the_body_is_published_then_replayed_in_chunks_then_receive_passes_through() -> None:
    total = 3 * SPOOL_BYTES + 12345  # spills to a temporary file
    app = Recorder()
    client = Client(_pieces(total, 100_000))
    _run(app, _scope(total), client)
    assert client.status == 200
    assert app.body is not None and app.body.size == total
    assert app.positions == [0, 0]  # at 0 when the app gets it, and after the replay
    assert all(0 < len(chunk) <= REPLAY_CHUNK_BYTES for chunk in app.chunks)
    assert b"".join(app.chunks) == b"".join(_pieces(total, 100_000))
    # After the replay, receive is the server's own: its disconnect reaches the app.
    assert app.after_body == DISCONNECT and client.server_messages == 1
    assert app.body.file.closed  # closed (and its temporary file gone) after the response


def test_the_file_can_be_read_directly_and_is_closed_after_an_error() -> None:
    total = 200_000
    seen: list[bytes] = []

    async def route(scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = buffered_body(Request(scope))
        assert body is not None
        seen.append(await asyncio.to_thread(body.file.read))
        raise RuntimeError("the route failed")

    client = Client(_pieces(total, 7000))
    with pytest.raises(RuntimeError):
        asyncio.run(BodyBuffer(route, LIMITS)(_scope(None), client.receive, client.send))
    assert seen == [b"".join(_pieces(total, 7000))]
    app = Recorder(fail=True)
    with pytest.raises(RuntimeError):
        _run(app, _scope(total), Client(_pieces(total, 7000)))
    assert app.body is not None and app.body.file.closed


def test_many_large_bodies_cost_bounded_memory() -> None:
    """Eight 8 MiB bodies buffered at once stay near the spool size each in memory."""
    total = 8 * 1024 * 1024
    apps = [Recorder(read=False) for _ in range(8)]

    async def all_at_once() -> None:
        barrier = asyncio.Barrier(len(apps))  # each app waits until all hold a body
        for app in apps:
            app.barrier = barrier
        requests = []
        for app in apps:
            client = Client(_pieces(total, 65536))
            requests.append(BodyBuffer(app, LIMITS)(_scope(total), client.receive, client.send))
        await asyncio.gather(*requests)

    tracemalloc.start()
    try:
        asyncio.run(all_at_once())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert all(app.body is not None and app.body.size == total for app in apps)
    assert peak < 8 * 2 * SPOOL_BYTES + 8 * 1024 * 1024, peak  # 64 MiB if kept in memory


def test_no_body_passes_straight_through() -> None:
    app = Recorder(read=False)
    client = Client(iter(()))
    _run(app, _scope(0, method="GET"), client)
    scope = {"type": "http", "method": "GET", "path": "/", "headers": []}
    _run(app, scope, client)
    assert client.status == 200 and app.body is None


@pytest.mark.parametrize("declare", [True, False], ids=["content-length", "chunked"])
def test_413_by_length_and_while_streaming(declare: bool) -> None:
    limits = BodyLimits(max_bytes=10_000, timeout_seconds=5.0, min_bytes_per_second=1.0)
    app = Recorder()
    client = Client(_pieces(50_000, 1000))
    _run(app, _scope(50_000 if declare else None), client, limits)
    assert client.status == 413 and app.body is None
    assert "10000 bytes" in client.detail and "BACKPROP_MAX_BODY_BYTES" in client.detail
    start = client.sent[0]
    assert (b"connection", b"close") in start["headers"]


def test_a_stalled_body_is_408_and_the_app_is_never_called() -> None:
    limits = BodyLimits(max_bytes=10_000, timeout_seconds=0.2, min_bytes_per_second=1e6)
    app = Recorder()
    client = Client(_pieces(10, 10), then="stall")
    _run(app, _scope(100), client, limits)
    assert client.status == 408 and app.body is None
    assert "BACKPROP_BODY_TIMEOUT_SECONDS" in client.detail and "10 of 100 bytes" in client.detail
    assert (b"connection", b"close") in client.sent[0]["headers"]


def test_a_disconnect_while_buffering_ends_the_request_unanswered() -> None:
    app = Recorder()
    client = Client(_pieces(10, 10), then="disconnect")
    _run(app, _scope(100), client)
    assert client.sent == [] and app.body is None


def test_timeouts_are_spread_by_connection() -> None:
    """Connections opened together must not all time out in the same instant."""
    from app.edge.limits import TIMEOUT_SPREAD, spread_timeout

    spread = [spread_timeout(10.0, ("127.0.0.1", port)) for port in range(40000, 40200)]
    assert all(10.0 <= value <= 10.0 * (1 + TIMEOUT_SPREAD) for value in spread)
    assert len(set(spread)) > 90 and max(spread) - min(spread) > 0.9
    assert spread_timeout(10.0, None) == 10.0
