"""GET /v1/runs/{id}/events attacked as in issue 10, against a real ``backprop serve``.

One run records every epoch (``history_every: 1``, XOR: tens of thousands of points
a second) and is watched by many raw-socket subscribers
(:mod:`tests.support.subscribers`): they stay current and the server's memory stays
bounded; subscribers that leave cost no CPU afterwards; subscribers that never read
cost no memory; and SIGTERM with many open streams ends them cleanly and exits.
Bounded in connections (at most 60), count and time (each test under ~30 s).
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.conftest import XOR_NETWORK, XOR_X, XOR_Y, run_body, wait_for
from tests.support.server import ServerProcess, running_server
from tests.support.subscribers import StalledSubscriber, Subscriber, cpu_seconds, rss_kib

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MIB = 1024


def _start_run(client: httpx.Client, **config: object) -> str:
    network = client.post("/v1/networks", json=XOR_NETWORK)
    dataset = client.post("/v1/datasets", json={"name": "xor", "X": XOR_X, "y": XOR_Y})
    body = run_body(network.json()["id"], dataset.json()["id"], **config)
    response = client.post("/v1/runs", json=body)
    assert response.status_code == 202, response.text
    run_id: str = response.json()["id"]
    return run_id


@pytest.fixture(scope="module")
def every_epoch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, str]]:
    """A server with one run that records every epoch, running."""
    env = {"BACKPROP_WORKERS": "1", "BACKPROP_MAX_EVENT_STREAMS": "100"}
    with (
        running_server(tmp_path_factory.mktemp("events"), env) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        run_id = _start_run(client, epochs=100_000_000, history_every=1)
        wait_for(client, run_id, lambda run: run["status"] == "running" and run["epoch"] > 0)
        yield server, run_id
        if server.process is not None and server.process.poll() is None:
            client.post(f"/v1/runs/{run_id}/cancel")


def _pid(server: ServerProcess) -> int:
    assert server.process is not None
    return server.process.pid


async def _until(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.1)
    return True


async def _epoch(http: httpx.AsyncClient, run_id: str) -> int:
    response = await http.get(f"/v1/runs/{run_id}")
    assert response.status_code == 200, response.text
    epoch: int = response.json()["epoch"]
    return epoch


def test_many_subscribers_stay_current_in_bounded_memory(
    every_epoch: tuple[ServerProcess, str],
) -> None:
    """50 subscribers on a run recording every epoch: each soon receives the epoch the run
    had reached (they are not left behind a growing backlog), ``GET /v1/runs/{id}`` keeps
    answering, and the server's RSS stays bounded."""
    server, run_id = every_epoch
    pid = _pid(server)
    subscribers = [Subscriber(server.port, f"/v1/runs/{run_id}/events") for _ in range(50)]

    async def attack() -> tuple[int, int, int, bool]:
        reading = [asyncio.create_task(s.read(time.monotonic() + 60)) for s in subscribers]
        try:
            async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
                started = await _until(lambda: all(s.last_id > 0 for s in subscribers), 20)
                assert started, [(s.status, s.error) for s in subscribers[:3]]
                rss_before = rss_kib(pid)
                await asyncio.sleep(3)  # today's queues grow meanwhile
                reached = await _epoch(http, run_id)
                current = await _until(lambda: min(s.last_id for s in subscribers) >= reached, 20)
                await _epoch(http, run_id)
                return rss_before, rss_kib(pid), reached, current
        finally:
            for subscriber in subscribers:
                subscriber.close()
            await asyncio.gather(*reading)

    rss_before, rss_after, reached, current = asyncio.run(attack())
    behind = sorted(s.last_id for s in subscribers)[:3]
    assert current, f"subscribers still behind epoch {reached}: {behind}"
    assert not [s.error for s in subscribers if s.error]
    assert rss_after - rss_before < 64 * MIB, (rss_before // MIB, rss_after // MIB)
    # They were told, not silently left short: the run records more than they are sent.
    assert all(s.skipped > 0 for s in subscribers)


def test_subscribers_that_disconnect_cost_no_cpu_afterwards(
    every_epoch: tuple[ServerProcess, str],
) -> None:
    """50 subscribers read for 5 s and go away; the server's own CPU time (``/proc``,
    without its workers) stays flat afterwards."""
    server, run_id = every_epoch
    pid = _pid(server)
    subscribers = [Subscriber(server.port, f"/v1/runs/{run_id}/events") for _ in range(50)]

    async def read_then_leave() -> None:
        await asyncio.gather(*(s.read(time.monotonic() + 5) for s in subscribers))

    asyncio.run(read_then_leave())
    assert all(s.status == 200 and s.progress > 0 for s in subscribers)
    time.sleep(1.0)
    before = cpu_seconds(pid)
    time.sleep(3.0)
    used = cpu_seconds(pid) - before
    assert used < 0.3, f"the server used {used:.2f} s of CPU in 3 s after the subscribers left"
    with httpx.Client(base_url=server.url, timeout=10) as client:
        assert client.get(f"/v1/runs/{run_id}").status_code == 200


def test_subscribers_that_never_read_cost_bounded_memory(
    every_epoch: tuple[ServerProcess, str],
) -> None:
    """5 subscribers send the request and never read a byte while the run records
    100,000 more epochs (or for 30 s at most): the server's RSS stays bounded."""
    server, run_id = every_epoch
    pid = _pid(server)
    with httpx.Client(base_url=server.url, timeout=10) as client:

        def epoch() -> int:
            response = client.get(f"/v1/runs/{run_id}")
            assert response.status_code == 200, response.text
            value: int = response.json()["epoch"]
            return value

        before = rss_kib(pid)
        stalled = [StalledSubscriber(server.port, f"/v1/runs/{run_id}/events") for _ in range(5)]
        try:
            peak, start = before, epoch()
            deadline = time.monotonic() + 30
            while epoch() < start + 100_000 and time.monotonic() < deadline:
                peak = max(peak, rss_kib(pid))
                time.sleep(0.2)
            peak = max(peak, rss_kib(pid))
        finally:
            for subscriber in stalled:
                subscriber.close()
    assert peak - before < 16 * MIB, (before // MIB, peak // MIB)


def test_sigterm_with_open_streams_ends_them_and_exits(
    every_epoch: tuple[ServerProcess, str],
) -> None:
    """SIGTERM with 60 open streams: every stream ends cleanly (the chunked body is
    terminated, no end event: EventSource reconnects with Last-Event-ID) and the
    server exits by itself, without uvicorn's graceful timeout. (Last in this module:
    it stops the module's server.)"""
    server, run_id = every_epoch
    assert server.process is not None
    process = server.process
    subscribers = [Subscriber(server.port, f"/v1/runs/{run_id}/events") for _ in range(60)]

    async def stream_then_terminate() -> None:
        reading = [asyncio.create_task(s.read(time.monotonic() + 30)) for s in subscribers]
        assert await _until(lambda: all(s.last_id > 0 for s in subscribers), 20)
        process.send_signal(signal.SIGTERM)
        await asyncio.gather(*reading)

    asyncio.run(stream_then_terminate())
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail(f"backprop serve did not exit after SIGTERM:\n{server.log()[-3000:]}")
    unclean = [(s.error, s.ended) for s in subscribers if not s.clean_close]
    assert not unclean, unclean[:3]
    assert "graceful shutdown exceeded" not in server.log()
