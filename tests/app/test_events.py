"""GET /v1/runs/{id}/events: resume with Last-Event-ID, one shared poller, tenancy."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
from sqlalchemy import event

from app.config import Settings
from app.main import create_app
from tests.conftest import create_xor, run_body
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
    with client.stream("GET", f"/v1/runs/{run_id}/events", headers=headers) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        for item in iter_events(response):
            events.append(item)
            if item.event == "end":
                return events, True
            progress = [e for e in events if e.event == "progress"]
            if stop_after is not None and len(progress) >= stop_after:
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
