"""backprop_client's retries, idempotency keys and event-stream reconnects, against a real
local HTTP server that answers from a script (503 first, a dropped connection, ...)."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from backprop_client import (
    IDEMPOTENCY_HEADER,
    BackpropConnectionError,
    Client,
    Conflict,
    NotFound,
    RateLimited,
    ServiceUnavailable,
)

NETWORK = {
    "id": "net_1",
    "name": "xor",
    "input_size": 2,
    "output_size": 1,
    "layers": [{"units": 1, "activation": "sigmoid"}],
    "init": {"scheme": "xavier_uniform", "seed": 7},
    "n_parameters": 3,
    "created_at": "2026-01-01T00:00:00Z",
}
RUN = {
    "id": "run_1",
    "status": "running",
    "network_id": "net_1",
    "dataset_id": "ds_1",
    "config": {},
    "epoch": 1,
    "epochs": 10,
    "loss": 0.5,
    "created_at": "2026-01-01T00:00:00Z",
}


@dataclass
class Seen:
    """One request the server received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


Answer = Callable[[BaseHTTPRequestHandler], None]


@dataclass
class Script:
    """Answers in order (the last one repeats) and the requests seen."""

    answers: list[Answer]
    seen: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next(self, request: Seen) -> Answer:
        with self.lock:
            self.seen.append(request)
            return self.answers[min(len(self.seen), len(self.answers)) - 1]


def reply(status: int, body: Any = None, **headers: str) -> Answer:
    def answer(handler: BaseHTTPRequestHandler) -> None:
        payload = json.dumps(body).encode() if body is not None else b""
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(payload)))
        for name, value in headers.items():
            handler.send_header(name.replace("_", "-"), value)
        handler.end_headers()
        handler.wfile.write(payload)

    return answer


def drop(handler: BaseHTTPRequestHandler) -> None:
    """Close the connection without an answer (the client sees a transport error)."""
    handler.close_connection = True
    handler.connection.shutdown(2)


def sse(frames: str) -> Answer:
    """A ``text/event-stream`` answer with ``frames``, then the connection closes."""

    def answer(handler: BaseHTTPRequestHandler) -> None:
        payload = frames.encode()
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)

    return answer


@contextmanager
def scripted(*answers: Answer) -> Iterator[tuple[str, Script]]:
    """A real HTTP server on 127.0.0.1 answering requests from ``answers``."""
    script = Script(list(answers))

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            seen = Seen(
                self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body
            )
            script.next(seen)(self)

        do_GET = do_POST = do_DELETE = _handle

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", script
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@contextmanager
def serving(*answers: Answer, **client: Any) -> Iterator[tuple[Client, Script]]:
    """A :func:`scripted` server and a :class:`Client` of it."""
    with scripted(*answers) as (url, script), Client(url, **client) as bp:
        yield bp, script


def test_a_post_retried_after_503_sends_the_same_idempotency_key() -> None:
    unavailable = reply(503, {"detail": "the database is unreachable"}, Retry_After="0")
    with serving(unavailable, reply(201, NETWORK), retries=2) as (bp, script):
        network = bp.create_network({"name": "xor"})
    assert network.id == "net_1"
    assert [(s.method, s.path) for s in script.seen] == [("POST", "/v1/networks")] * 2
    keys = [s.headers["idempotency-key"] for s in script.seen]
    assert keys[0] == keys[1] and uuid.UUID(keys[0]).version == 4
    assert script.seen[0].body == script.seen[1].body


def test_a_post_whose_key_is_in_flight_is_retried_and_a_state_conflict_is_not() -> None:
    in_flight = reply(
        409,
        {"detail": "a request with this Idempotency-Key is still being processed"},
        Retry_After="0",
    )
    with serving(in_flight, in_flight, reply(201, NETWORK), retries=3) as (bp, script):
        assert bp.create_network({"name": "xor"}).id == "net_1"
    assert len(script.seen) == 3
    assert len({s.headers["idempotency-key"] for s in script.seen}) == 1
    busy = reply(409, {"detail": "dataset 'ds_1' is used by 2 runs"})  # no Retry-After
    with serving(busy, reply(201, NETWORK), retries=3) as (bp, script), pytest.raises(Conflict):
        bp.create_network({"name": "xor"})
    assert len(script.seen) == 1


def test_every_logical_post_has_its_own_key() -> None:
    with serving(reply(201, NETWORK)) as (bp, script):
        bp.create_network({"name": "a"})
        bp.create_network({"name": "b"})
        bp.get_network("net_1")
    first, second, get = (s.headers.get("idempotency-key") for s in script.seen)
    assert first and second and first != second
    assert get is None  # only POSTs carry a key


def test_a_post_is_retried_after_a_dropped_connection_with_the_same_key() -> None:
    with serving(drop, drop, reply(201, NETWORK), retries=3, max_retry_wait=0.05) as (bp, script):
        assert bp.create_network({"name": "xor"}).id == "net_1"
    keys = {s.headers["idempotency-key"] for s in script.seen}
    assert len(script.seen) == 3 and len(keys) == 1


def test_a_key_given_by_the_caller_is_kept() -> None:
    down = reply(503, {"detail": "down"}, Retry_After="0")
    with serving(down, reply(201, NETWORK)) as (bp, script):
        bp.request("POST", "/v1/networks", json={}, headers={IDEMPOTENCY_HEADER: "mine"})
    assert [s.headers["idempotency-key"] for s in script.seen] == ["mine", "mine"]


def test_retries_give_up_with_the_last_error() -> None:
    down = reply(503, {"detail": "the database is unreachable"}, Retry_After="0")
    with serving(down, retries=2) as (bp, script), pytest.raises(ServiceUnavailable) as caught:
        bp.get_run("run_1")
    assert len(script.seen) == 3 and caught.value.retry_after == 0
    with (
        serving(drop, retries=1, max_retry_wait=0.01) as (bp, script),
        pytest.raises(BackpropConnectionError),
    ):
        bp.get_run("run_1")
    assert len(script.seen) == 2


def test_no_retry_for_a_rate_limit_or_a_client_error_or_with_retries_0() -> None:
    limited = reply(429, {"detail": "too many active runs"}, Retry_After="7")
    with serving(limited, reply(202, RUN)) as (bp, script), pytest.raises(RateLimited) as caught:
        bp.create_run("net_1", "ds_1")
    assert caught.value.retry_after == 7 and len(script.seen) == 1
    missing = reply(404, {"detail": "run 'run_x' not found"})
    with serving(missing) as (bp, script), pytest.raises(NotFound):
        bp.get_run("run_x")
    assert len(script.seen) == 1
    down = reply(503, {"detail": "down"})
    with serving(down, retries=0) as (bp, script), pytest.raises(ServiceUnavailable):
        bp.get_run("run_1")
    assert len(script.seen) == 1
    with pytest.raises(ValueError, match="retries"):
        Client("http://127.0.0.1:9", retries=-1)


def test_retry_after_is_capped_by_max_retry_wait() -> None:
    slow = reply(503, {"detail": "down"}, Retry_After="3600")
    with serving(slow, reply(200, RUN), max_retry_wait=0.05) as (bp, script):
        assert bp.get_run("run_1").epoch == 1
    assert len(script.seen) == 2


PROGRESS = 'id: {n}\nevent: progress\ndata: {{"epoch":{n},"loss":0.{n},"status":"running"}}\n\n'


def test_events_reconnect_after_the_last_event_id() -> None:
    first = sse(
        "retry: 10\n\n"
        'event: status\ndata: {"status":"running","epoch":0}\n\n'
        ": keep-alive\n\n" + "".join(PROGRESS.format(n=n) for n in (1, 2, 3))
    )  # then the connection closes before the end event
    second = sse(
        PROGRESS.format(n=4)
        + 'event: end\ndata: {"status":"succeeded","epoch":4,"stop_reason":"completed"}\n\n'
    )
    with serving(first, second) as (bp, script):
        events = list(bp.events("run_1"))
    assert [(e.event, e.id) for e in events] == [
        ("status", None),
        ("progress", 1),
        ("progress", 2),
        ("progress", 3),
        ("progress", 4),
        ("end", None),
    ]
    assert events[3].loss == 0.3 and events[-1].status == "succeeded" and events[-1].epoch == 4
    assert [s.path for s in script.seen] == ["/v1/runs/run_1/events"] * 2
    assert "last-event-id" not in script.seen[0].headers
    assert script.seen[1].headers["last-event-id"] == "3"


def test_events_start_after_an_epoch_and_raise_a_404_at_once() -> None:
    end = sse('event: end\ndata: {"status":"cancelled","epoch":5}\n\n')
    with serving(end) as (bp, script):
        assert [e.event for e in bp.events("run_1", after=5)] == ["end"]
    assert script.seen[0].headers["last-event-id"] == "5"
    missing = reply(404, {"detail": "run 'run_1' not found"})
    with serving(missing) as (bp, script), pytest.raises(NotFound):
        list(bp.events("run_1"))
    assert len(script.seen) == 1


def test_events_give_up_after_retries_on_streams_that_never_end() -> None:
    with (
        serving(sse("retry: 1\n\n"), retries=2) as (bp, script),
        pytest.raises(BackpropConnectionError, match="closed before its end event"),
    ):
        list(bp.events("run_1"))
    assert len(script.seen) == 3
