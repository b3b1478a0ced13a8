"""Issue 10, defect 5: a crash of the whole service never uses up a run's attempts; a
worker dying while its supervisor lives does. The local pool (``backprop serve``);
the Celery executor's node kill is in test_scale_out.py."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import httpx
import pytest

import engine
from app.config import Settings
from tests.conftest import XOR_NETWORK, XOR_X, XOR_Y, run_body, wait_for, wait_terminal
from tests.support.history import full_history
from tests.support.processes import alive, pool_workers

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ENV = {
    "BACKPROP_WORKERS": 1,
    "BACKPROP_LEASE_SECONDS": 2,
    "BACKPROP_FLUSH_SECONDS": 0.2,
    "BACKPROP_AUTO_CHECKPOINT_SECONDS": 0.3,
    "BACKPROP_MAX_ATTEMPTS": 2,
}
EPOCHS = 300_000  # ~5 s of XOR training on an idle machine: more than three crashes leave
CRASHES = 3


def _xor(client: httpx.Client) -> tuple[str, str]:
    network = client.post("/v1/networks", json=XOR_NETWORK)
    dataset = client.post("/v1/datasets", json={"name": "xor", "X": XOR_X, "y": XOR_Y})
    assert network.status_code == 201 and dataset.status_code == 201
    return network.json()["id"], dataset.json()["id"]


def _checkpoint_epoch(client: httpx.Client, run_id: str) -> int:
    data = client.get(f"/v1/runs/{run_id}/checkpoints").json()["data"]
    return max((checkpoint["epoch"] for checkpoint in data), default=0)


def _trains_past(client: httpx.Client, run_id: str, epoch: int) -> dict[str, Any]:
    """Wait until the run is running with a checkpoint after ``epoch`` (progress kept)."""
    return wait_for(
        client,
        run_id,
        lambda run: run["status"] == "running" and _checkpoint_epoch(client, run_id) > epoch,
        timeout=120,
    )


def _the_worker(server: Any) -> int:
    deadline = time.monotonic() + 30
    while not (pids := pool_workers(server.process.pid)):
        assert time.monotonic() < deadline, "the server has no worker process"
        time.sleep(0.05)
    (pid,) = pids
    return pid


def test_server_crashes_use_no_attempt_and_worker_deaths_do(serve: Any) -> None:
    server = serve(**ENV)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        network_id, dataset_id = _xor(client)
        body = run_body(network_id, dataset_id, epochs=EPOCHS, seed=9)
        run_id = client.post("/v1/runs", json=body).json()["id"]
    kept = 0
    for _ in range(CRASHES):
        with httpx.Client(base_url=server.url, timeout=30) as client:
            run = _trains_past(client, run_id, kept)
            assert run["attempts"] == 1, run
            kept = _checkpoint_epoch(client, run_id)
            assert run["epoch"] < EPOCHS, "the run ended before the crash"
        workers = server.kill9_group()
        deadline = time.monotonic() + 10
        while any(alive(pid) for pid in workers):
            assert time.monotonic() < deadline, "a worker outlived the crash"
            time.sleep(0.05)
        server.start()
    with httpx.Client(base_url=server.url, timeout=30) as client:
        done = wait_terminal(client, run_id, timeout=300)
        assert done["status"] == "succeeded", done
        assert done["attempts"] == 1, "a crash of the whole service used an attempt"
        assert done["epoch"] == EPOCHS
        # Every epoch the thinning rule records (BACKPROP_HISTORY_MAX_POINTS), once each.
        expected = engine.history_epochs(EPOCHS, 1, Settings().history_max_points)
        assert full_history(client, run_id)["epoch"] == expected

        # Now the worker dies while its server (its supervisor) lives: that counts,
        # and after BACKPROP_MAX_ATTEMPTS (2) such deaths the run fails.
        doomed = client.post("/v1/runs", json={**body, "epochs": 100_000_000}).json()["id"]
        for attempt in (1, 2):
            wait_for(
                client,
                doomed,
                lambda run, n=attempt: run["status"] == "running" and run["attempts"] == n,
                timeout=120,
            )
            os.kill(_the_worker(server), signal.SIGKILL)
        failed = wait_terminal(client, doomed, timeout=120)
        assert failed["status"] == "failed" and failed["attempts"] == 2, failed
        assert failed["error"]["code"] == "worker_lost"
    assert server.logs().count("not an attempt") >= CRASHES
