"""GET /v1/runs/{id}/events: resume with Last-Event-ID, one shared poller, tenancy."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
from sqlalchemy import event

from app.api.schemas import MAX_EPOCHS
from app.config import Settings
from app.main import create_app
from tests.conftest import create_xor, run_body, wait_terminal
from tests.support.history import full_history
from tests.support.live_app import Event, iter_events, serve_app

LONG_RUN = {"epochs": 30000, "history_every": 100}


def _start(client: httpx.Client, **config: Any) -> str:
    network_id, dataset_id = create_xor(client)
    response = client.post("/v1/runs", json=run_body(network_id, dataset_id, **config))
    assert response.status_code == 202, response.text
    run_id: str = response.json()["id"]
    return run_id


def _read(
    client: httpx.Client, run_id: str, *, last_id: str | None = None, stop_after: int | None = None
) -> tuple[list[Event], bool]:
    """Events until ``end`` (True) or after ``stop_after`` progress events (False)."""
    headers = {"Last-Event-ID": last_id} if last_id else {}
    events: list[Event] = []
    progress = 0
    with client.stream("GET", f"/v1/runs/{run_id}/events", headers=headers) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        for item in iter_events(response):
            events.append(item)
            if item.event == "end":
                return events, True
            progress += item.event == "progress"
            if stop_after is not None and progress >= stop_after:
                return events, False
    raise AssertionError(f"stream closed without an end event: {events[-3:]}")


def test_reconnect_with_last_event_id_gets_every_epoch_once(
    settings_for: Callable[..., Settings],
) -> None:
    app = create_app(settings_for(workers=1, flush_seconds=0.05))
    with serve_app(app) as live, httpx.Client(base_url=live.url, timeout=30) as client:
        run_id = _start(client, **LONG_RUN)
        first, ended = _read(client, run_id, stop_after=3)
        assert not ended, "the run finished before the first connection dropped"
        time.sleep(0.3)  # epochs recorded while disconnected must be replayed
        progress = [e for e in first if e.event == "progress"]
        second, ended = _read(client, run_id, last_id=progress[-1].id)
        assert ended
        events = progress + [e for e in second if e.event == "progress"]
        epochs = [e.data["epoch"] for e in events]
        assert [int(e.id or 0) for e in events] == epochs
        history = full_history(client, run_id)
        assert epochs == history["epoch"]
        assert [e.data["loss"] for e in events] == history["loss"]
        assert second[-1].data["status"] == "succeeded"
        assert first[0].event == "status"
        # The run is over: a new stream replays what follows the given id, then ends.
        middle = epochs[len(epochs) // 2]
        again, ended = _read(client, run_id, last_id=str(middle))
        assert ended and again[-1].data["status"] == "succeeded"
        assert [e.data["epoch"] for e in again if e.event == "progress"] == [
            epoch for epoch in epochs if epoch > middle
        ]
        bad = client.get(f"/v1/runs/{run_id}/events", headers={"Last-Event-ID": "x"})
        assert bad.status_code == 422


def test_events_respect_tenancy_and_access_token(settings_for: Callable[..., Settings]) -> None:
    app = create_app(settings_for(api_keys="key-a,key-b"))
    with serve_app(app) as live, httpx.Client(base_url=live.url, timeout=30) as client:
        a = {"Authorization": "Bearer key-a"}
        network_id, dataset_id = create_xor(httpx.Client(base_url=live.url, headers=a))
        run = client.post("/v1/runs", headers=a, json=run_body(network_id, dataset_id))
        run_id = run.json()["id"]
        path = f"/v1/runs/{run_id}/events"
        assert client.get(path).status_code == 401
        assert client.get(path, headers={"Authorization": "Bearer key-b"}).status_code == 404
        assert client.get(path, params={"access_token": "key-b"}).status_code == 404
        assert client.get(path, params={"access_token": "nope"}).status_code == 401
        with client.stream("GET", path, params={"access_token": "key-a"}) as response:
            assert response.status_code == 200
            first = next(iter_events(response))
            assert first.event == "status" and first.data["status"] == "queued"


def test_hundred_subscribers_share_one_poller(settings_for: Callable[..., Settings]) -> None:
    app = create_app(settings_for(workers=1, flush_seconds=0.05))
    subscribers = 100
    with serve_app(app) as live, httpx.Client(base_url=live.url, timeout=30) as client:
        run_id = _start(client, **LONG_RUN)
        queries = 0

        def count(*_: Any) -> None:
            nonlocal queries
            queries += 1

        engine = app.state.db.reader
        event.listen(engine, "before_cursor_execute", count)
        started = time.monotonic()

        async def subscribe(http: httpx.AsyncClient) -> list[Event]:
            events: list[Event] = []
            async with http.stream("GET", f"/v1/runs/{run_id}/events") as response:
                assert response.status_code == 200
                buffer = ""
                async for chunk in response.aiter_text():
                    buffer += chunk
                if "event: end" not in buffer:
                    raise AssertionError(buffer[-300:])
                for block in buffer.split("\n\n"):
                    if block.startswith("id: "):
                        events.append(Event(event="progress", id=block.split("\n")[0][4:]))
            return events

        async def main() -> list[list[Event]]:
            limits = httpx.Limits(max_connections=subscribers + 10)
            async with httpx.AsyncClient(base_url=live.url, timeout=60, limits=limits) as http:
                return await asyncio.gather(*(subscribe(http) for _ in range(subscribers)))

        results = asyncio.run(main())
        elapsed = time.monotonic() - started
        event.remove(engine, "before_cursor_execute", count)
        history = full_history(client, run_id)
        expected = [str(epoch) for epoch in history["epoch"]]
        for events in results:
            assert [e.id for e in events] == expected
        hub = app.state.event_hub
        ticks = elapsed / hub.poll_seconds
        # The pollers: two reads per interval at most, whatever the number of subscribers.
        assert hub.polls() <= 2 * ticks + 6, (hub.polls(), ticks)
        # Everything the API read meanwhile: per subscriber a constant (the tenancy
        # check and the replay), per interval a constant (poller, executor supervisor).
        assert queries <= subscribers * 4 + 10 * ticks + 20, (queries, ticks)


def _wait(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_open_streams_per_tenant_are_capped(settings_for: Callable[..., Settings]) -> None:
    """``BACKPROP_MAX_EVENT_STREAMS`` open streams per tenant: one more answers 429 with
    ``Retry-After`` and a detail naming the setting, before any stream starts; another
    tenant is not affected; a closed stream frees its slot and its run's feed."""
    app = create_app(settings_for(api_keys="key-a,key-b", max_event_streams=2))
    a = {"Authorization": "Bearer key-a"}
    b = {"Authorization": "Bearer key-b"}
    with (
        serve_app(app) as live,
        httpx.Client(base_url=live.url, timeout=30) as client,
        contextlib.ExitStack() as streams,
    ):
        run_a = _start(httpx.Client(base_url=live.url, headers=a))
        run_b = _start(httpx.Client(base_url=live.url, headers=b))
        opened, readers = [], []  # (a dropped reader closes its connection)
        for _ in range(2):
            response = streams.enter_context(
                client.stream("GET", f"/v1/runs/{run_a}/events", headers=a)
            )
            assert response.status_code == 200
            readers.append(iter_events(response))
            assert next(readers[-1]).event == "status"
            opened.append(response)
        refused = client.get(f"/v1/runs/{run_a}/events", headers=a, timeout=10)
        assert refused.status_code == 429, refused.text
        assert refused.headers["content-type"] == "application/json"
        assert int(refused.headers["retry-after"]) > 0
        assert "BACKPROP_MAX_EVENT_STREAMS" in refused.json()["detail"]
        with client.stream("GET", f"/v1/runs/{run_b}/events", headers=b) as other:
            assert other.status_code == 200
        opened[0].close()

        def reopened() -> bool:
            with client.stream("GET", f"/v1/runs/{run_a}/events", headers=a) as again:
                return again.status_code == 200

        _wait(reopened)
        opened[1].close()
        hub = app.state.event_hub
        _wait(lambda: not hub.open_streams and not hub.feeds)


BAD_LAST_EVENT_IDS = [
    "²",
    "٣",
    "1" + "0" * 30,
    str(MAX_EPOCHS + 1),
    "-1",
    "+5",
    "1e3",
    "0x10",
    "1_000",
    "5 6",
]


def test_bad_last_event_id_answers_422_naming_the_header(
    settings_for: Callable[..., Settings],
) -> None:
    """Only a plain ASCII epoch number within the epoch range resumes a stream; anything
    else (``²`` passes ``str.isdigit``, ``10**30`` passes ``int``) is a 422 naming the
    header, before the stream starts."""
    app = create_app(settings_for())
    with serve_app(app) as live, httpx.Client(base_url=live.url, timeout=30) as client:
        run_id = _start(client)
        path = f"/v1/runs/{run_id}/events"
        for value in BAD_LAST_EVENT_IDS:
            response = client.get(path, headers={"Last-Event-ID": value.encode()})
            assert response.status_code == 422, (value, response.text)
            assert response.json()["detail"][0]["loc"] == ["header", "last-event-id"]
        with client.stream("GET", path, headers={"Last-Event-ID": str(MAX_EPOCHS)}) as top:
            assert top.status_code == 200
            assert next(iter_events(top)).event == "status"


def test_a_subscriber_that_falls_behind_gets_a_sample_and_is_told(
    settings_for: Callable[..., Settings],
) -> None:
    """A run that records far more than a subscriber is sent (``event_batch_points=5``
    per poll): the stream says ``skipped`` and sends an evenly spaced sample that always
    ends with the latest epoch; ids stay strictly increasing stored epochs; every epoch
    left out lies in a skipped range; resuming with ``Last-Event-ID`` still replays every
    stored epoch after it once; a new stream on the finished run starts with a sample."""
    settings = settings_for(
        workers=1, flush_seconds=0.05, event_batch_points=5, event_buffer_points=50
    )
    app = create_app(settings)
    with serve_app(app) as live, httpx.Client(base_url=live.url, timeout=60) as client:
        run_id = _start(client, epochs=20_000, history_every=1)
        events, ended = _read(client, run_id)
        assert ended and events[-1].data["status"] == "succeeded"
        history = full_history(client, run_id)["epoch"]
        ids = [int(e.id or 0) for e in events if e.event == "progress"]
        assert ids == sorted(set(ids)) and set(ids) <= set(history)
        assert ids[-1] == history[-1] == 20_000
        ranges = [
            (e.data["after_epoch"], e.data["until_epoch"]) for e in events if e.event == "skipped"
        ]
        assert ranges, "the subscriber was sent fewer points than recorded, without being told"
        missing = sorted(set(history) - set(ids))
        assert missing and all(any(a < m <= u for a, u in ranges) for m in missing)

        middle = ids[len(ids) // 2]
        again, ended = _read(client, run_id, last_id=str(middle))
        assert ended and not [e for e in again if e.event == "skipped"]
        assert [int(e.id or 0) for e in again if e.event == "progress"] == [
            epoch for epoch in history if epoch > middle
        ]

        fresh, ended = _read(client, run_id)
        assert ended and [e.event for e in fresh[:2]] == ["status", "skipped"]
        sample = [int(e.id or 0) for e in fresh if e.event == "progress"]
        assert len(sample) == 5 and sample[-1] == 20_000


def test_wire_format_and_keepalive(settings_for: Callable[..., Settings]) -> None:
    """The bytes of a finished run's stream are today's (``retry``, ``status``, one
    ``progress`` per epoch with ``id``, ``end``), and an idle stream gets ``: keep-alive``
    comments (from sse-starlette, every ``keepalive_seconds``)."""
    app = create_app(settings_for(workers=1, flush_seconds=0.05))
    with serve_app(app) as live, httpx.Client(base_url=live.url, timeout=30) as client:
        run_id = _start(client, epochs=300, history_every=100)
        run = wait_terminal(client, run_id)
        history = full_history(client, run_id)
        final = {key: run[key] for key in ("status", "epoch", "stop_reason", "error")}
        compact = {"separators": (",", ":")}
        expected = "retry: 1000\n\n" + f"event: status\ndata: {json.dumps(final, **compact)}\n\n"
        for i, epoch in enumerate(history["epoch"]):
            point = {name: values[i] for name, values in history.items()} | {"status": "succeeded"}
            expected += f"id: {epoch}\nevent: progress\ndata: {json.dumps(point, **compact)}\n\n"
        expected += f"event: end\ndata: {json.dumps(final, **compact)}\n\n"
        with client.stream("GET", f"/v1/runs/{run_id}/events") as response:
            assert response.read().decode() == expected
            assert response.headers["cache-control"] == "no-cache"

    app = create_app(settings_for())  # no worker: the run stays queued, the stream idle
    with serve_app(app) as live, httpx.Client(base_url=live.url, timeout=30) as client:
        hub = app.state.event_hub
        hub.settings = dataclasses.replace(hub.settings, keepalive_seconds=0.2)
        run_id = _start(client)
        with client.stream("GET", f"/v1/runs/{run_id}/events") as response:
            lines = response.iter_lines()
            assert ": keep-alive" in itertools.islice(lines, 20)
