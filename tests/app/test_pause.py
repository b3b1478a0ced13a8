"""POST /v1/runs/{id}/pause and /resume: exact continuation, idempotence, 409s."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest
import redis
from backprop_client import Client, Conflict
from fastapi.testclient import TestClient

from app.jobs.celery_app import QUEUE
from tests.conftest import create_xor, run_body, wait_for, wait_terminal
from tests.support.services import RedisServer

EPOCHS = 30000
CONFIG = {"epochs": EPOCHS, "history_every": 50, "batch_size": 2, "shuffle": True, "seed": 3}


def _history_epochs(client: TestClient, run_id: str) -> list[int]:
    epochs: list[int] = []
    after = None
    while True:
        params: dict[str, Any] = {} if after is None else {"after_epoch": after}
        response = client.get(f"/v1/runs/{run_id}/history", params=params)
        epochs += response.json()["epoch"]
        if response.headers["X-Has-More"] != "true":
            return epochs
        after = epochs[-1]


def test_pause_at_epoch_k_then_resume_is_bit_identical(make_client: Callable[..., Any]) -> None:
    with make_client(workers=1, flush_seconds=0.05) as client:
        network_id, dataset_id = create_xor(client)
        body = run_body(network_id, dataset_id, **CONFIG)
        paused_id = client.post("/v1/runs", json=body).json()["id"]
        wait_for(client, paused_id, lambda run: run["epoch"] > 0, timeout=60)
        response = client.post(f"/v1/runs/{paused_id}/pause")
        assert response.status_code == 200, response.text
        assert response.json()["status"] in ("running", "paused")
        run = wait_for(client, paused_id, lambda run: run["status"] != "running", timeout=60)
        assert run["status"] == "paused", run
        k = run["epoch"]
        assert 0 < k < EPOCHS
        assert client.post(f"/v1/runs/{paused_id}/pause").json()["status"] == "paused"
        checkpoints = client.get(f"/v1/runs/{paused_id}/checkpoints").json()["data"]
        assert checkpoints[0]["epoch"] == k
        assert client.get(f"/v1/runs/{paused_id}").json()["epoch"] == k  # stays paused
        response = client.post(f"/v1/runs/{paused_id}/resume")
        assert response.status_code == 200 and response.json()["status"] in ("queued", "running")
        assert wait_terminal(client, paused_id)["status"] == "succeeded"

        straight_id = client.post("/v1/runs", json=body).json()["id"]
        assert wait_terminal(client, straight_id)["status"] == "succeeded"
        paused = client.get(f"/v1/runs/{paused_id}/weights").json()
        straight = client.get(f"/v1/runs/{straight_id}/weights").json()
        assert paused == straight  # JSON floats round-trip float64 exactly
        epochs = _history_epochs(client, paused_id)
        assert epochs == list(range(50, EPOCHS + 1, 50))
        assert epochs == _history_epochs(client, straight_id)
        assert (
            client.get(f"/v1/runs/{paused_id}/history").json()
            == client.get(f"/v1/runs/{straight_id}/history").json()
        )


def test_pause_queued_resume_cancel_and_conflicts(client: TestClient) -> None:
    network_id, dataset_id = create_xor(client)
    run_id = client.post("/v1/runs", json=run_body(network_id, dataset_id)).json()["id"]
    for _ in range(2):  # idempotent
        response = client.post(f"/v1/runs/{run_id}/pause")
        assert response.status_code == 200
        assert response.json()["status"] == "paused"
    assert client.get("/v1/runs", params={"status": "paused"}).json()["data"][0]["id"] == run_id
    for _ in range(2):
        response = client.post(f"/v1/runs/{run_id}/resume")
        assert response.status_code == 200
        assert response.json()["status"] == "queued"
    client.post(f"/v1/runs/{run_id}/pause")
    assert client.post(f"/v1/runs/{run_id}/cancel").json()["status"] == "cancelled"
    for action in ("pause", "resume"):
        response = client.post(f"/v1/runs/{run_id}/{action}")
        assert response.status_code == 409
        assert "cancelled" in response.json()["detail"]
    assert client.post("/v1/runs/run_missing/pause").status_code == 404


def test_client_pause_resume_and_wait_returns_paused(make_client: Callable[..., Any]) -> None:
    with make_client() as test_client:
        bp = Client(str(test_client.base_url), http=test_client)
        network_id, dataset_id = create_xor(test_client)
        run_id = test_client.post("/v1/runs", json=run_body(network_id, dataset_id)).json()["id"]
        run = bp.pause(run_id)
        assert run.paused and not run.terminal
        assert bp.wait(run_id, timeout=5).paused  # returns instead of waiting forever
        assert bp.resume(run_id).status == "queued"
        bp.cancel(run_id)
        with pytest.raises(Conflict):
            bp.resume(run_id)


def test_resume_dispatches_through_celery(
    make_client: Callable[..., Any], redis_server: RedisServer
) -> None:
    """Resume goes through the executor interface: with Celery, a new message."""
    broker = redis_server.database_url()
    with make_client(broker_url=broker) as client:
        network_id, dataset_id = create_xor(client)
        run_id = client.post("/v1/runs", json=run_body(network_id, dataset_id)).json()["id"]
        assert client.post(f"/v1/runs/{run_id}/pause").json()["status"] == "paused"
        redis_client = redis.Redis.from_url(broker)
        try:
            redis_client.delete(QUEUE)
            assert client.post(f"/v1/runs/{run_id}/resume").json()["status"] == "queued"
            (raw,) = redis_client.lrange(QUEUE, 0, -1)
        finally:
            redis_client.close()
        body = json.loads(base64.b64decode(json.loads(raw)["body"]))
        assert body[0] == [run_id]
