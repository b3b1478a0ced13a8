"""A sweep's ``notify_url``: the signed sweep object when it ends, and refused targets."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from app.webhooks.signing import verify
from tests.app.test_sweeps import SWEEP_TERMINAL, drive, sweep_body, wait_sweep
from tests.app.test_webhooks import FAST
from tests.conftest import create_xor
from tests.support.webhook_receiver import Receiver, webhook_receiver


def _received(receiver: Receiver, count: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while len(receiver.received) < count:
        assert time.monotonic() < deadline, f"{len(receiver.received)} of {count} webhooks"
        time.sleep(0.05)


def _settled(client: Any, sweep_id: str, timeout: float = 30.0) -> dict[str, Any]:
    """The sweep's one notification once it is no longer pending."""
    deadline = time.monotonic() + timeout
    while True:
        response = client.get(f"/v1/sweeps/{sweep_id}/notifications")
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["data"]
        assert len(items) <= 1, items
        if items and items[0]["status"] != "pending":
            return items[0]
        assert time.monotonic() < deadline, f"the sweep's notification is not settled: {items}"
        time.sleep(0.05)


def test_a_finished_sweep_posts_the_signed_sweep_object(make_client: Callable[..., Any]) -> None:
    with webhook_receiver([500]) as receiver, make_client(workers=1, **FAST) as client:
        network_id, dataset_id = create_xor(client)
        body = sweep_body(
            network_id, dataset_id, max_trials=2, parallelism=2, notify_url=receiver.url
        )
        response = client.post("/v1/sweeps", json=body)
        assert response.status_code == 201, response.text
        assert response.json()["notify_url"] == receiver.url
        sweep = wait_sweep(client, response.json()["id"], lambda s: s["status"] in SWEEP_TERMINAL)
        assert sweep["status"] == "succeeded"
        _received(receiver, 2)  # a 500 first, then delivered on the retry
        secret = client.get("/v1/webhooks/secret").json()["secret"]
        recorded = _settled(client, sweep["id"])
        assert client.get("/v1/sweeps/swp_unknown/notifications").status_code == 404
    assert (recorded["sweep_id"], recorded["run_id"]) == (sweep["id"], None)
    assert (recorded["event"], recorded["status"], recorded["attempts"]) == (
        "sweep.succeeded",
        "delivered",
        2,
    )
    assert [a["status_code"] for a in recorded["attempt_log"]] == [500, 200]
    first, second = receiver.received[:2]
    assert first.body == second.body  # the same bytes on every attempt
    for request in (first, second):
        assert request.headers["backprop-event"] == "sweep.succeeded"
        assert verify(secret, request.body, request.headers["backprop-signature"])
    sent = json.loads(first.body)
    assert sent["id"] == sweep["id"] and sent["object"] == "sweep"
    assert sent["status"] == "succeeded" and sent["best_trial"] == sweep["best_trial"]
    assert len(receiver.received) == 2  # nothing else: the trial runs had no notify_url


def test_a_cancelled_sweep_posts_once(make_client: Callable[..., Any]) -> None:
    with webhook_receiver() as receiver, make_client(**FAST) as client:
        network_id, dataset_id = create_xor(client)
        body = sweep_body(network_id, dataset_id, parallelism=2, notify_url=receiver.url)
        sweep_id = client.post("/v1/sweeps", json=body).json()["id"]
        assert len(drive(client)) == 2
        client.post(f"/v1/sweeps/{sweep_id}/cancel")
        client.post(f"/v1/sweeps/{sweep_id}/cancel")  # idempotent: no second webhook
        _received(receiver, 1)
        time.sleep(0.3)
    assert len(receiver.received) == 1
    assert receiver.received[0].headers["backprop-event"] == "sweep.cancelled"
    assert json.loads(receiver.received[0].body)["status"] == "cancelled"


def test_a_refused_target_is_422_at_notify_url(client: Any) -> None:
    network_id, dataset_id = create_xor(client)
    for url in ("http://127.0.0.1:9/hook", "ftp://example.com/hook"):
        body = sweep_body(network_id, dataset_id, notify_url=url)
        response = client.post("/v1/sweeps", json=body)
        assert response.status_code == 422, response.text
        assert response.json()["detail"][0]["loc"] == ["body", "notify_url"]
    assert client.get("/v1/sweeps").json()["data"] == []
