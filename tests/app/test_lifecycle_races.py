"""Issue 10, defect 3: pause, resume and cancel racing a worker whose epochs are slow.

With epochs longer than a third of the lease, the worker's heartbeat thread (not
the batch at an epoch's end) is what reads a pending request. A request that
changes after that read must still decide the outcome: the worker writes the
stop with the request stored at that moment, never with the one it read earlier.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import wait_for, wait_terminal
from tests.support.slow_runs import create_slow, next_epoch_boundary, slow_body, wait_settled

pytestmark = pytest.mark.slow

LEASE_SECONDS = 1.5
"""The heartbeat renews (and reads the request) after a third of it without a batch."""
N_SAMPLES = 100_000
"""About 2.3 s per epoch on an idle machine: far longer than a third of the lease."""
HEARTBEAT_READ_SECONDS = 1.0
"""Long enough for the heartbeat to have read a request sent just after an epoch ended
(a renewal every 0.5 s without a batch, a 0.25 s tick), short of the epoch's end."""
TRIES = 3


@contextmanager
def slow_app(make_client: Callable[..., Any]) -> Iterator[TestClient]:
    with make_client(
        workers=1, lease_seconds=LEASE_SECONDS, flush_seconds=0.1, poll_seconds=0.1
    ) as client:
        yield client


def _request_mid_epoch(client: TestClient, run_id: str, action: str) -> dict[str, Any] | None:
    """Pause just after an epoch ended, let the heartbeat read it, then ``action``.

    Returns the answer to ``action`` when it reached the worker mid-epoch (the
    reproduction), or None when the epoch ended first (the try is void).
    """
    before = next_epoch_boundary(client, run_id)
    paused = client.post(f"/v1/runs/{run_id}/pause").json()
    assert paused["status"] == "running" and paused["pause_requested"], paused
    time.sleep(HEARTBEAT_READ_SECONDS)
    response = client.post(f"/v1/runs/{run_id}/{action}")
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    if answer["status"] != "running" or answer["epoch"] != before["epoch"]:
        return None
    return answer


def _reproduce(client: TestClient, action: str, epochs: int) -> tuple[str, dict[str, Any]]:
    """A fresh slow run per try until ``action`` lands mid-epoch after the pause was read."""
    network_id, dataset_id = create_slow(client, N_SAMPLES)
    for _ in range(TRIES):
        run_id = client.post("/v1/runs", json=slow_body(network_id, dataset_id, epochs)).json()[
            "id"
        ]
        wait_for(client, run_id, lambda run: run["status"] == "running", timeout=120)
        answer = _request_mid_epoch(client, run_id, action)
        if answer is not None:
            return run_id, answer
        client.post(f"/v1/runs/{run_id}/cancel")
        wait_terminal(client, run_id, timeout=120)
    raise AssertionError(f"the {action} never reached the worker mid-epoch in {TRIES} tries")


def test_resume_after_the_worker_read_the_pause_keeps_the_run_going(
    make_client: Callable[..., Any],
) -> None:
    """Pause, wait, resume: the answer says running and the run must finish (it used to
    end paused, because the worker had already decided to pause)."""
    with slow_app(make_client) as client:
        run_id, answer = _reproduce(client, "resume", epochs=2)
        assert not answer["pause_requested"], answer
        settled = wait_settled(client, run_id)
        assert settled["status"] == "succeeded", settled
        assert settled["epoch"] == 2
        assert not settled["pause_requested"] and not settled["cancel_requested"]
        assert settled["attempts"] == 1, "a withdrawn pause is a hand-back, not an attempt"
        epochs = client.get(f"/v1/runs/{run_id}/history").json()["epoch"]
        assert epochs == [1, 2]


def test_cancel_after_the_worker_read_the_pause_cancels(make_client: Callable[..., Any]) -> None:
    """Pause, wait, cancel: the run must end cancelled (it used to end paused with
    ``cancel_requested: true``, and resuming it left it queued forever)."""
    with slow_app(make_client) as client:
        run_id, answer = _reproduce(client, "cancel", epochs=50)
        assert answer["cancel_requested"], answer
        settled = wait_settled(client, run_id)
        assert settled["status"] == "cancelled", settled
        assert settled["stop_reason"] == "cancelled"
        assert not settled["pause_requested"] and not settled["cancel_requested"]
        resumed = client.post(f"/v1/runs/{run_id}/resume")
        assert resumed.status_code == 409, resumed.text
        assert "cancelled" in resumed.json()["detail"]


def test_finished_runs_keep_no_request(make_client: Callable[..., Any]) -> None:
    """A cancelled run shows no request (``cancel_requested`` used to stay true)."""
    with slow_app(make_client) as client:
        network_id, dataset_id = create_slow(client, 20_000)
        run_id = client.post("/v1/runs", json=slow_body(network_id, dataset_id, 50)).json()["id"]
        wait_for(client, run_id, lambda run: run["status"] == "running" and run["epoch"] > 0)
        assert client.post(f"/v1/runs/{run_id}/cancel").json()["cancel_requested"]
        cancelled = wait_terminal(client, run_id, timeout=120)
        assert cancelled["status"] == "cancelled", cancelled
        assert not cancelled["cancel_requested"] and not cancelled["pause_requested"]
