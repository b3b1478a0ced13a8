"""Idempotent POSTs and webhooks against the real ``backprop serve`` (issue 13)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from app.webhooks.signing import verify
from tests.conftest import XOR_NETWORK, XOR_X, XOR_Y, run_body, wait_terminal
from tests.support.webhook_receiver import webhook_receiver

pytestmark = pytest.mark.integration

WEBHOOKS = {
    "BACKPROP_WEBHOOK_ALLOW_PRIVATE": "true",
    "BACKPROP_WEBHOOK_POLL_SECONDS": "0.1",
    "BACKPROP_WEBHOOK_BACKOFF_SECONDS": "0.2",
}


def _xor(client: httpx.Client) -> tuple[str, str]:
    network = client.post("/v1/networks", json=XOR_NETWORK)
    dataset = client.post("/v1/datasets", json={"name": "xor", "X": XOR_X, "y": XOR_Y})
    assert network.status_code == 201 and dataset.status_code == 201
    return network.json()["id"], dataset.json()["id"]


def _settled(client: httpx.Client, run_id: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        items = client.get(f"/v1/runs/{run_id}/notifications").json()["data"]
        if items and items[0]["status"] != "pending":
            return dict(items[0])
        time.sleep(0.1)
    raise AssertionError(f"webhook of {run_id} not settled")


def test_duplicate_posts_make_one_run_whose_webhook_is_retried(serve: Any) -> None:
    server = serve(BACKPROP_WORKERS=1, **WEBHOOKS)
    with (
        webhook_receiver([500, 500]) as receiver,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        network_id, dataset_id = _xor(client)
        body = run_body(network_id, dataset_id, epochs=300, notify_url=receiver.url)
        barrier = threading.Barrier(6)

        def post(_: int) -> httpx.Response:
            with httpx.Client(base_url=server.url, timeout=30) as own:  # own connection
                barrier.wait()
                return own.post("/v1/runs", json=body, headers={"Idempotency-Key": "k1"})

        with ThreadPoolExecutor(6) as pool:
            responses = list(pool.map(post, range(6)))
        assert {r.status_code for r in responses} <= {202, 409}
        ids = {r.json()["id"] for r in responses if r.status_code == 202}
        assert len(ids) == 1
        (run_id,) = ids
        assert [run["id"] for run in client.get("/v1/runs").json()["data"]] == [run_id]
        assert wait_terminal(client, run_id)["status"] == "succeeded"
        notification = _settled(client, run_id)
        secret = client.get("/v1/webhooks/secret").json()["secret"]
    assert notification["status"] == "delivered" and notification["attempts"] == 3
    assert [a["status_code"] for a in notification["attempt_log"]] == [500, 500, 200]
    assert len(receiver.received) == 3
    for request in receiver.received:
        assert verify(secret, request.body, request.headers["backprop-signature"])


def test_pending_webhook_is_delivered_after_kill_9(serve: Any) -> None:
    server = serve(BACKPROP_WORKERS=0, **{**WEBHOOKS, "BACKPROP_WEBHOOK_POLL_SECONDS": "3600"})
    with webhook_receiver() as receiver:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            network_id, dataset_id = _xor(client)
            body = run_body(network_id, dataset_id, notify_url=receiver.url)
            run_id = client.post("/v1/runs", json=body).json()["id"]
            assert client.post(f"/v1/runs/{run_id}/cancel").json()["status"] == "cancelled"
        server.kill9()
        assert receiver.received == []
        server.env["BACKPROP_WEBHOOK_POLL_SECONDS"] = "0.1"
        server.start()
        with httpx.Client(base_url=server.url, timeout=30) as client:
            notification = _settled(client, run_id)
    assert notification["status"] == "delivered" and notification["event"] == "run.cancelled"
    assert len(receiver.received) == 1
