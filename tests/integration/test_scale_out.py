"""What docker-compose.yml runs, on this machine: PostgreSQL, Redis, ``backprop serve``
with the broker URL and ``backprop worker`` processes (same commands, same environment;
see tests/support/compose.py), with short leases and polls so failures heal quickly.
"""

from __future__ import annotations

import functools
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import engine
from app.config import Settings
from tests.conftest import XOR_NETWORK, XOR_X, XOR_Y, run_body, wait_for, wait_terminal
from tests.support.compose import Process, Stack, stacks
from tests.support.history import full_history
from tests.support.services import PostgresServer, RedisServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LONG_EPOCHS = 90_000  # under one history page (BACKPROP_MAX_HISTORY_POINTS)
# Long enough (~11 s on an idle machine) that the message is surely delivered again first:
# the visibility timeout (1 s) plus the restore interval (0.5 s here).
REDELIVERY_EPOCHS = 600_000


@pytest.fixture
def stack(
    tmp_path: Path, postgres_server: PostgresServer, redis_server: RedisServer
) -> Iterator[Callable[..., Stack]]:
    """``stack(workers=2, **tuning)`` starts the compose-equivalent processes."""
    with stacks(tmp_path) as start:
        yield functools.partial(start, postgres_server, redis_server)


def _client(stack: Stack) -> httpx.Client:
    return httpx.Client(base_url=stack.url, timeout=30)


def _xor(client: httpx.Client) -> tuple[str, str]:
    network = client.post("/v1/networks", json=XOR_NETWORK)
    dataset = client.post("/v1/datasets", json={"name": "xor", "X": XOR_X, "y": XOR_Y})
    assert network.status_code == 201 and dataset.status_code == 201, dataset.text
    return network.json()["id"], dataset.json()["id"]


def _claims(process: Process, run_id: str) -> list[dict[str, Any]]:
    """This process's ``run.transition`` lines that put ``run_id`` to running."""
    return [
        event
        for event in process.events()
        if event.get("event") == "run.transition"
        and event.get("run_id") == run_id
        and event.get("status") == "running"
    ]


def _wait_claims(process: Process, run_id: str, timeout: float = 30) -> list[dict[str, Any]]:
    """The claims of ``run_id`` in this process's log, waiting for the first one."""
    deadline = time.monotonic() + timeout
    while not (found := _claims(process, run_id)):
        assert time.monotonic() < deadline, f"no claim of {run_id} in {process.log_path.name}"
        time.sleep(0.05)
    return found


def _dropped(process: Process, run_id: str) -> list[dict[str, Any]]:
    return [
        event
        for event in process.events()
        if event.get("event") == "run.delivery_dropped" and event.get("run_id") == run_id
    ]


def _worker_running(stack: Stack, run_id: str) -> Process:
    """The worker whose latest claim of ``run_id`` is the current one."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        owners = [worker for worker in stack.workers if worker.alive() and _claims(worker, run_id)]
        if owners:
            return max(owners, key=lambda w: _claims(w, run_id)[-1]["time"])
        time.sleep(0.05)
    raise AssertionError(f"no worker logged a claim of {run_id}")


def _nth_claim(stack: Stack, run_id: str, n: int, timeout: float = 30) -> dict[str, Any]:
    """The ``n``-th claim of ``run_id`` over all workers' logs (waits for it)."""
    deadline = time.monotonic() + timeout
    while True:
        claims = sorted(
            (event for worker in stack.workers for event in _claims(worker, run_id)),
            key=lambda event: str(event["time"]),
        )
        if len(claims) >= n:
            return claims[n - 1]
        assert time.monotonic() < deadline, f"{len(claims)} claims of {run_id}, expected {n}"
        time.sleep(0.05)


def _has_checkpoint(client: httpx.Client) -> Callable[[dict[str, Any]], bool]:
    def check(run: dict[str, Any]) -> bool:
        if run["status"] != "running" or run["epoch"] == 0:
            return False
        data = client.get(f"/v1/runs/{run['id']}/checkpoints").json()["data"]
        return any(checkpoint["epoch"] > 0 for checkpoint in data)

    return check


def _assert_same_as_uninterrupted(
    client: httpx.Client, run_id: str, body: dict[str, Any], epochs: int
) -> None:
    history = client.get(f"/v1/runs/{run_id}/history").json()
    assert history["epoch"] == list(range(1, epochs + 1)), "history has a gap or a duplicate"
    fresh_id = client.post("/v1/runs", json=body).json()["id"]
    fresh = wait_terminal(client, fresh_id, timeout=180)
    assert fresh["status"] == "succeeded" and fresh["attempts"] == 1
    assert (
        client.get(f"/v1/runs/{run_id}/weights").json()
        == client.get(f"/v1/runs/{fresh_id}/weights").json()
    )
    assert client.get(f"/v1/runs/{fresh_id}/history").json() == history


def test_twenty_runs_spread_over_both_workers_and_succeed(stack: Callable[..., Stack]) -> None:
    running = stack()
    with _client(running) as client:
        network_id, dataset_id = _xor(client)
        run_ids = [
            client.post(
                "/v1/runs", json=run_body(network_id, dataset_id, epochs=4000, seed=i)
            ).json()["id"]
            for i in range(20)
        ]
        finished = [wait_terminal(client, run_id, timeout=180) for run_id in run_ids]
        assert [run["status"] for run in finished] == ["succeeded"] * 20
        assert [run["attempts"] for run in finished] == [1] * 20
        per_worker = [
            sum(len(_claims(worker, run_id)) for run_id in run_ids) for worker in running.workers
        ]
        assert sum(per_worker) == 20, per_worker
        assert min(per_worker) >= 3, f"runs were not spread over both workers: {per_worker}"

        metrics = client.get("/metrics").text
        assert 'backprop_runs{status="succeeded"} 20.0' in metrics
        assert "backprop_queue_depth 0.0" in metrics
        assert "backprop_epochs_total 80000.0" in metrics
        assert 'backprop_http_request_duration_seconds_count{method="POST",route="/v1/runs"' in (
            metrics
        )
    api_events = running.api.events()
    created = {
        event["run_id"]
        for event in api_events
        if event.get("event") == "run.transition" and event.get("status") == "queued"
    }
    assert created == set(run_ids)
    requests = [event for event in api_events if event.get("event") == "http.request"]
    assert any(
        event["method"] == "POST" and event["status"] == 202 and event["run_id"] in run_ids
        for event in requests
    )
    for process in running.processes():
        assert "Traceback" not in process.log(), process.log()[-3000:]


def test_kill9_of_a_worker_resumes_the_run_on_the_other_from_its_checkpoint(
    stack: Callable[..., Stack],
) -> None:
    """``kill -9`` of a whole worker node (its main process, the pool processes die with
    it): the other node resumes the run from its checkpoint. The node's supervisor died
    too, so it is not the run's fault and uses no attempt (issue 10): with
    ``BACKPROP_MAX_ATTEMPTS=1`` the run would otherwise fail ``worker_lost``."""
    running = stack(BACKPROP_MAX_ATTEMPTS=1)
    with _client(running) as client:
        network_id, dataset_id = _xor(client)
        body = run_body(network_id, dataset_id, epochs=LONG_EPOCHS, seed=42)
        run_id = client.post("/v1/runs", json=body).json()["id"]
        before = wait_for(client, run_id, _has_checkpoint(client), timeout=60)
        assert before["epoch"] < LONG_EPOCHS, "the run finished before the worker was killed"
        victim = _worker_running(running, run_id)
        survivor = next(worker for worker in running.workers if worker is not victim)
        victim.kill9()
        killed_at = time.monotonic()

        deadline = killed_at + 60
        while not (claim := _claims(survivor, run_id)):
            run = client.get(f"/v1/runs/{run_id}").json()
            assert run["status"] != "failed", f"the node's crash used the only attempt: {run}"
            assert time.monotonic() < deadline, f"the other worker never took the run: {run}"
            time.sleep(0.05)
        recovery = time.monotonic() - killed_at
        assert recovery < 15, f"recovery took {recovery:.1f} s"
        resumed = client.get(f"/v1/runs/{run_id}").json()
        assert resumed["status"] in ("running", "succeeded"), resumed
        assert resumed["attempts"] == 1, "the crash of a whole node used an attempt"
        assert len(claim) == 1, "the other worker took the run more than once"
        assert claim[0]["epoch"] > 0, "the run restarted from scratch instead of its checkpoint"

        done = wait_terminal(client, run_id, timeout=180)
        assert done["status"] == "succeeded" and done["attempts"] == 1
        assert done["epoch"] == LONG_EPOCHS
        _assert_same_as_uninterrupted(client, run_id, body, LONG_EPOCHS)
    assert any(
        event.get("status") == "queued" and event.get("run_id") == run_id
        for event in running.api.events()
    ), "the API's supervisor did not re-queue the run"


def test_redelivery_after_the_visibility_timeout_never_trains_in_two_places(
    stack: Callable[..., Stack],
) -> None:
    running = stack(BACKPROP_BROKER_VISIBILITY_TIMEOUT=1)
    with _client(running) as client:
        network_id, dataset_id = _xor(client)
        body = run_body(network_id, dataset_id, epochs=REDELIVERY_EPOCHS, seed=3)
        run_id = client.post("/v1/runs", json=body).json()["id"]
        wait_for(client, run_id, lambda run: run["status"] == "running", timeout=60)
        owner = _worker_running(running, run_id)
        other = next(worker for worker in running.workers if worker is not owner)
        # The message is delivered again while the run trains; the second delivery
        # finds the lease held and drops itself.
        deadline = time.monotonic() + 60
        while not _dropped(other, run_id):
            run = client.get(f"/v1/runs/{run_id}").json()
            assert run["status"] == "running", f"finished before a redelivery: {run}"
            assert time.monotonic() < deadline, "the message was never delivered again"
            time.sleep(0.1)
        done = wait_terminal(client, run_id, timeout=180)
        assert done["status"] == "succeeded"
        assert done["attempts"] == 1, "a second delivery claimed the run"
        assert len(_claims(owner, run_id)) == 1
        assert _claims(other, run_id) == [], "the run trained on two workers"
        history = full_history(client, run_id)
        # Every epoch the thinning rule records (BACKPROP_HISTORY_MAX_POINTS), once each.
        assert history["epoch"] == engine.history_epochs(
            REDELIVERY_EPOCHS, 1, Settings().history_max_points
        )


def test_a_cancel_issued_while_the_only_worker_is_down_stays_cancelled(
    stack: Callable[..., Stack],
) -> None:
    running = stack(workers=1)
    (worker,) = running.workers
    with _client(running) as client:
        network_id, dataset_id = _xor(client)
        body = run_body(network_id, dataset_id, epochs=100_000_000)
        run_id = client.post("/v1/runs", json=body).json()["id"]
        wait_for(client, run_id, lambda run: run["status"] == "running" and run["epoch"] > 0)
        worker.kill9()
        answer = client.post(f"/v1/runs/{run_id}/cancel").json()
        assert answer["cancel_requested"] or answer["status"] == "cancelled"
        cancelled = wait_terminal(client, run_id, timeout=60)
        assert cancelled["status"] == "cancelled"

        worker.start()
        running.wait_worker_ready(worker, 120)
        # The restarted worker serves new runs, and the old run's messages are dropped.
        probe_id = client.post(
            "/v1/runs", json=run_body(network_id, dataset_id, epochs=200)
        ).json()["id"]
        assert wait_terminal(client, probe_id, timeout=120)["status"] == "succeeded"
        time.sleep(1.0)
        after = client.get(f"/v1/runs/{run_id}").json()
        assert after["status"] == "cancelled"
        assert after["epoch"] == cancelled["epoch"] and after["attempts"] == cancelled["attempts"]
        assert _claims(worker, run_id) and len(_claims(worker, run_id)) == 1


def test_sigterm_hands_the_run_back_and_another_worker_continues(
    stack: Callable[..., Stack],
) -> None:
    running = stack()
    with _client(running) as client:
        network_id, dataset_id = _xor(client)
        body = run_body(network_id, dataset_id, epochs=LONG_EPOCHS, seed=5)
        run_id = client.post("/v1/runs", json=body).json()["id"]
        wait_for(client, run_id, lambda run: run["status"] == "running" and run["epoch"] > 100)
        leaving = _worker_running(running, run_id)
        staying = next(worker for worker in running.workers if worker is not leaving)
        started = time.monotonic()
        assert leaving.terminate(timeout=60) == 0
        assert time.monotonic() - started < 30, "warm shutdown waited for the run to finish"

        handed = [
            event
            for event in leaving.events()
            if event.get("run_id") == run_id and event.get("status") == "queued"
        ]
        assert handed, "the stopping worker did not hand the run back"
        assert _wait_claims(staying, run_id)[0]["epoch"] == handed[0]["epoch"] > 0
        done = wait_terminal(client, run_id, timeout=180)
        assert done["status"] == "succeeded" and done["attempts"] == 1
        _assert_same_as_uninterrupted(client, run_id, body, LONG_EPOCHS)


def test_a_run_that_keeps_killing_its_worker_fails_after_max_attempts(
    stack: Callable[..., Stack],
) -> None:
    running = stack(BACKPROP_MAX_ATTEMPTS=2)
    with _client(running) as client:
        network_id, dataset_id = _xor(client)
        body = run_body(network_id, dataset_id, epochs=100_000_000)
        run_id = client.post("/v1/runs", json=body).json()["id"]
        for attempt in (1, 2):
            wait_for(
                client,
                run_id,
                lambda run, n=attempt: run["status"] == "running" and run["attempts"] == n,
                timeout=60,
            )
            claim = _nth_claim(running, run_id, attempt)
            pool_pid = int(claim["worker"].split(":")[1])
            os.kill(pool_pid, signal.SIGKILL)  # the pool process, as an OOM kill would
        failed = wait_terminal(client, run_id, timeout=60)
        assert failed["status"] == "failed" and failed["attempts"] == 2
        assert failed["error"]["code"] == "worker_lost"
        assert all(worker.alive() for worker in running.workers)
