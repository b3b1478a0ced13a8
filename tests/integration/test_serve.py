"""End-to-end: the real ``backprop serve`` process, its worker pool and SQLite."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import pytest

import engine
from app.config import Settings
from tests.conftest import XOR_NETWORK, XOR_X, XOR_Y, run_body, wait_for, wait_terminal
from tests.support.history import full_history
from tests.support.processes import alive, pool_workers

pytestmark = pytest.mark.integration


def _xor(client: httpx.Client) -> tuple[str, str]:
    network = client.post("/v1/networks", json=XOR_NETWORK)
    dataset = client.post("/v1/datasets", json={"name": "xor", "X": XOR_X, "y": XOR_Y})
    assert network.status_code == 201 and dataset.status_code == 201
    return network.json()["id"], dataset.json()["id"]


def test_trains_xor_and_cancels_a_long_run(serve: Any) -> None:
    server = serve(BACKPROP_WORKERS=1)
    with httpx.Client(base_url=server.url, timeout=10) as client:
        network_id, dataset_id = _xor(client)
        response = client.post("/v1/runs", json=run_body(network_id, dataset_id, epochs=5000))
        assert response.status_code == 202
        assert response.headers["location"].startswith("/v1/runs/run_")
        run = wait_terminal(client, response.json()["id"])
        assert run["status"] == "succeeded" and run["loss"] < 0.01
        predictions = client.post(f"/v1/runs/{run['id']}/predict", json={"X": XOR_X}).json()
        assert [round(p[0]) for p in predictions["predictions"]] == [0, 1, 1, 0]
        assert len(client.get(f"/v1/runs/{run['id']}/history").json()["epoch"]) == 5000

        long = client.post(
            "/v1/runs", json=run_body(network_id, dataset_id, epochs=100_000_000)
        ).json()
        wait_for(client, long["id"], lambda r: r["status"] == "running" and r["epoch"] > 0)
        client.post(f"/v1/runs/{long['id']}/cancel")
        cancelled = wait_terminal(client, long["id"], timeout=10)
        assert cancelled["status"] == "cancelled" and cancelled["epoch"] < 100_000_000
    assert "database is locked" not in server.logs()


def test_kill9_resumes_from_checkpoint_with_identical_results(serve: Any) -> None:
    epochs = 150_000
    env = {
        "BACKPROP_WORKERS": 1,
        "BACKPROP_LEASE_SECONDS": 2,
        "BACKPROP_AUTO_CHECKPOINT_SECONDS": 0.5,
    }
    server = serve(**env)
    with httpx.Client(base_url=server.url, timeout=10) as client:
        network_id, dataset_id = _xor(client)
        body = run_body(network_id, dataset_id, epochs=epochs, seed=42)
        run_id = client.post("/v1/runs", json=body).json()["id"]

        def has_checkpoint(run: dict[str, Any]) -> bool:
            data = client.get(f"/v1/runs/{run['id']}/checkpoints").json()["data"]
            return run["status"] == "running" and any(c["epoch"] > 0 for c in data)

        before = wait_for(client, run_id, has_checkpoint)
    assert before["epoch"] < epochs, "the run finished before it could be interrupted"
    assert server.process is not None and pool_workers(server.process.pid), "no worker process"
    workers = server.kill9()
    deadline = time.monotonic() + 5
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(pid) for pid in workers), "workers outlived the killed server"

    server.start()
    with httpx.Client(base_url=server.url, timeout=30) as client:
        resumed = wait_terminal(client, run_id, timeout=120)
        assert resumed["status"] == "succeeded", resumed
        # The server died with its worker: not the run's fault, so not an attempt (issue 10).
        assert resumed["attempts"] == 1 and resumed["epoch"] == epochs
        history = full_history(client, run_id)
        # Every epoch the thinning rule records (BACKPROP_HISTORY_MAX_POINTS), once each.
        assert history["epoch"] == engine.history_epochs(epochs, 1, Settings().history_max_points)

        fresh_id = client.post("/v1/runs", json=body).json()["id"]
        fresh = wait_terminal(client, fresh_id, timeout=120)
        assert fresh["status"] == "succeeded" and fresh["attempts"] == 1
        assert (
            client.get(f"/v1/runs/{run_id}/weights").json()
            == client.get(f"/v1/runs/{fresh_id}/weights").json()
        )
        assert full_history(client, fresh_id) == history
        assert resumed["loss"] == fresh["loss"]
    assert "re-queued" in server.logs()


def test_concurrent_training_and_polling_has_no_errors(serve: Any) -> None:
    server = serve(BACKPROP_WORKERS=4)
    errors: list[str] = []
    with httpx.Client(base_url=server.url, timeout=30) as client:
        network_id, dataset_id = _xor(client)
        run_ids = [
            client.post(
                "/v1/runs", json=run_body(network_id, dataset_id, epochs=60_000, seed=i)
            ).json()["id"]
            for i in range(4)
        ]
        stop = threading.Event()
        requests = [0]

        def poll(index: int) -> None:
            run_id = run_ids[index % 4]
            last_epoch = 0
            with httpx.Client(base_url=server.url, timeout=30) as own:
                while not stop.is_set():
                    try:
                        run = own.get(f"/v1/runs/{run_id}")
                        hist = own.get(
                            f"/v1/runs/{run_id}/history", params={"after_epoch": last_epoch}
                        )
                        sampled = own.get(f"/v1/runs/{run_id}/history", params={"max_points": 50})
                        requests[0] += 3
                        for response in (run, hist, sampled):
                            if response.status_code != 200:
                                errors.append(f"{response.status_code} {response.text[:200]}")
                        epochs = hist.json()["epoch"]
                        if epochs:
                            if epochs[0] != last_epoch + 1 and last_epoch:
                                errors.append(f"history gap after {last_epoch}: {epochs[0]}")
                            last_epoch = epochs[-1]
                    except httpx.HTTPError as exc:
                        errors.append(repr(exc))

        threads = [threading.Thread(target=poll, args=(i,)) for i in range(20)]
        for thread in threads:
            thread.start()
        try:
            finished = [wait_terminal(client, run_id, timeout=180) for run_id in run_ids]
        finally:
            stop.set()
            for thread in threads:
                thread.join(30)
        assert [run["status"] for run in finished] == ["succeeded"] * 4
        for run_id in run_ids:
            assert client.get(f"/v1/runs/{run_id}/history").json()["epoch"] == list(
                range(1, 60_001)
            )
    assert errors == []
    assert requests[0] > 100
    assert "database is locked" not in server.logs()
    assert "Traceback" not in server.logs()
