"""Webhooks (issue 13): notify_url, signed delivery, retries, durability, target checks."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.webhooks.signing import sign, signature, verify
from app.webhooks.targets import TargetRefusedError, check_target
from tests.conftest import XOR_NETWORK, XOR_X, XOR_Y, create_xor, run_body, wait_terminal
from tests.support.webhook_receiver import webhook_receiver

FAST = {
    "webhook_allow_private": True,
    "webhook_poll_seconds": 0.05,
    "webhook_backoff_seconds": 0.1,
}


def _notifications(client: TestClient, run_id: str) -> list[dict[str, Any]]:
    response = client.get(f"/v1/runs/{run_id}/notifications")
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["data"]
    return items


def _wait_settled(client: TestClient, run_id: str, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        items = _notifications(client, run_id)
        if items and items[0]["status"] != "pending":
            return items[0]
        if time.monotonic() > deadline:
            raise AssertionError(f"notification of {run_id} not settled: {items}")
        time.sleep(0.05)


def _secret(client: TestClient) -> str:
    response = client.get("/v1/webhooks/secret")
    assert response.status_code == 200
    secret: str = response.json()["secret"]
    return secret


def test_run_webhook_retried_after_two_failures(make_client: Callable[..., Any]) -> None:
    with webhook_receiver([500, 500]) as receiver, make_client(workers=1, **FAST) as client:
        network_id, dataset_id = create_xor(client)
        body = run_body(network_id, dataset_id, epochs=200, notify_url=receiver.url)
        response = client.post("/v1/runs", json=body)
        assert response.status_code == 202, response.text
        run_id = response.json()["id"]
        assert response.json()["config"]["notify_url"] == receiver.url
        run = wait_terminal(client, run_id)
        assert run["status"] == "succeeded"
        notification = _wait_settled(client, run_id)
        secret = _secret(client)

    assert notification["status"] == "delivered"
    assert notification["event"] == "run.succeeded"
    assert notification["attempts"] == 3
    assert [a["status_code"] for a in notification["attempt_log"]] == [500, 500, 200]
    assert [a["error"] for a in notification["attempt_log"]] == ["HTTP 500", "HTTP 500", None]
    assert notification["delivered_at"] is not None and notification["next_attempt_at"] is None
    assert len(receiver.received) == 3
    for number, request in enumerate(receiver.received, start=1):
        assert request.path == "/hooks/backprop?source=test"
        assert verify(secret, request.body, request.headers["backprop-signature"])
        assert not verify(secret + "x", request.body, request.headers["backprop-signature"])
        assert request.headers["backprop-event"] == "run.succeeded"
        assert request.headers["backprop-notification-id"] == notification["id"]
        assert request.headers["backprop-delivery-attempt"] == str(number)
        assert request.headers["content-type"] == "application/json"
        assert request.headers["host"] == receiver.url.split("/")[2]
    assert len({request.body for request in receiver.received}) == 1  # the same bytes each time
    sent = json.loads(receiver.received[0].body)
    assert sent["id"] == run_id and sent["status"] == "succeeded"
    assert sent["epoch"] == run["epoch"] and sent["loss"] == run["loss"]


def test_cancel_sends_a_webhook(make_client: Callable[..., Any]) -> None:
    with webhook_receiver() as receiver, make_client(**FAST) as client:
        network_id, dataset_id = create_xor(client)
        body = run_body(network_id, dataset_id, notify_url=receiver.url)
        run_id = client.post("/v1/runs", json=body).json()["id"]
        assert _notifications(client, run_id) == []  # only terminal statuses notify
        assert client.post(f"/v1/runs/{run_id}/cancel").json()["status"] == "cancelled"
        notification = _wait_settled(client, run_id)
        assert client.post(f"/v1/runs/{run_id}/cancel").status_code == 200  # no second one
        time.sleep(0.3)
        assert len(_notifications(client, run_id)) == 1
    assert notification["status"] == "delivered" and notification["event"] == "run.cancelled"
    assert len(receiver.received) == 1
    assert json.loads(receiver.received[0].body)["status"] == "cancelled"


def test_runs_without_notify_url_send_nothing(client: TestClient) -> None:
    network_id, dataset_id = create_xor(client)
    run = client.post("/v1/runs", json=run_body(network_id, dataset_id)).json()
    assert "notify_url" not in run["config"]
    client.post(f"/v1/runs/{run['id']}/cancel")
    assert _notifications(client, run["id"]) == []


def test_pending_webhooks_survive_a_restart(make_client: Callable[..., Any]) -> None:
    """The notification row is written with the transition; a later server delivers it."""
    with webhook_receiver() as receiver:
        with make_client(**{**FAST, "webhook_poll_seconds": 3600}) as client:
            network_id, dataset_id = create_xor(client)
            body = run_body(network_id, dataset_id, notify_url=receiver.url)
            run_id = client.post("/v1/runs", json=body).json()["id"]
            client.post(f"/v1/runs/{run_id}/cancel")
            (pending,) = _notifications(client, run_id)
            assert pending["status"] == "pending" and pending["attempts"] == 0
        assert receiver.received == []
        with make_client(**FAST) as client:
            delivered = _wait_settled(client, run_id)
    assert delivered["status"] == "delivered" and delivered["id"] == pending["id"]
    assert len(receiver.received) == 1


def test_webhook_gives_up_after_the_retry_period(make_client: Callable[..., Any]) -> None:
    settings = {**FAST, "webhook_retry_seconds": 1.5}
    with webhook_receiver([500] * 100) as receiver, make_client(**settings) as client:
        network_id, dataset_id = create_xor(client)
        body = run_body(network_id, dataset_id, notify_url=receiver.url)
        run_id = client.post("/v1/runs", json=body).json()["id"]
        client.post(f"/v1/runs/{run_id}/cancel")
        notification = _wait_settled(client, run_id)
    assert notification["status"] == "failed"
    assert 2 <= notification["attempts"] == len(receiver.received) <= 6
    assert {a["status_code"] for a in notification["attempt_log"]} == {500}


def test_redirects_are_not_followed(make_client: Callable[..., Any]) -> None:
    settings = {**FAST, "webhook_retry_seconds": 0.3}
    with webhook_receiver([302] * 100) as receiver, make_client(**settings) as client:
        network_id, dataset_id = create_xor(client)
        body = run_body(network_id, dataset_id, notify_url=receiver.url)
        run_id = client.post("/v1/runs", json=body).json()["id"]
        client.post(f"/v1/runs/{run_id}/cancel")
        notification = _wait_settled(client, run_id)
    assert notification["status"] == "failed"
    assert notification["attempt_log"][0]["error"] == "HTTP 302"
    assert all(request.path.startswith("/hooks") for request in receiver.received)


def test_unreachable_receiver_is_recorded(make_client: Callable[..., Any]) -> None:
    with webhook_receiver() as receiver:
        url = receiver.url  # closed when the block ends: nothing listens there any more
    with make_client(**{**FAST, "webhook_retry_seconds": 0.3}) as client:
        network_id, dataset_id = create_xor(client)
        body = run_body(network_id, dataset_id, notify_url=url)
        run_id = client.post("/v1/runs", json=body).json()["id"]
        client.post(f"/v1/runs/{run_id}/cancel")
        notification = _wait_settled(client, run_id)
    assert notification["status"] == "failed"
    first = notification["attempt_log"][0]
    assert first["status_code"] is None and first["error"].startswith("ConnectError")


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1:8000/hook", "loopback"),
        ("http://localhost/hook", "loopback"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://10.1.2.3/hook", "private"),
        ("http://192.168.0.10/hook", "private"),
        ("http://[::1]/hook", "loopback"),
        ("http://[::ffff:127.0.0.1]/hook", "loopback"),
        ("http://[fd00:ec2::254]/hook", "private"),
        ("http://0.0.0.0/hook", "unspecified"),
        ("http://100.64.0.1/hook", "not a public address"),
        ("ftp://example.com/hook", "only http:// and https://"),
        ("file:///etc/passwd", "only http:// and https://"),
        ("https://user:pw@example.com/hook", "credentials"),
        ("http:///hook", "no host"),
        ("http://host.invalid/hook", "cannot be resolved"),
    ],
)
def test_refused_targets_are_422_at_create(client: TestClient, url: str, reason: str) -> None:
    network_id, dataset_id = create_xor(client)
    response = client.post("/v1/runs", json=run_body(network_id, dataset_id, notify_url=url))
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert detail[0]["loc"] == ["body", "notify_url"]
    assert reason in detail[0]["msg"]
    assert client.get("/v1/runs").json()["data"] == []


def test_private_targets_allowed_by_the_setting() -> None:
    target = check_target("http://127.0.0.1:8123/x?y=1", allow_private=True)
    assert target.pinned_url() == "http://127.0.0.1:8123/x?y=1"
    assert target.host_header() == "127.0.0.1:8123"
    with pytest.raises(TargetRefusedError, match="loopback"):
        check_target("http://127.0.0.1:8123/x", allow_private=False)
    v6 = check_target("https://[::1]/x", allow_private=True)
    assert v6.pinned_url() == "https://[::1]:443/x" and v6.host_header() == "[::1]"


def test_public_literal_is_accepted() -> None:
    target = check_target("https://93.184.215.14/hook", allow_private=False)
    assert target.address == "93.184.215.14" and target.port == 443


def test_signature_verification() -> None:
    body = b'{"id":"run_1"}'
    header = sign("whsec_test", body, timestamp=1_700_000_000)
    assert header == f"t=1700000000,v1={signature('whsec_test', 1_700_000_000, body)}"
    assert verify("whsec_test", body, header, now=1_700_000_100)
    assert not verify("whsec_test", body + b" ", header, now=1_700_000_100)  # tampered
    assert not verify("whsec_other", body, header, now=1_700_000_100)  # other secret
    assert not verify("whsec_test", body, header, now=1_700_001_000)  # too old: a replay
    assert not verify("whsec_test", body, "v1=abc", now=1_700_000_000)  # no timestamp


def test_secret_is_per_tenant_stable_and_rotates(make_client: Callable[..., Any]) -> None:
    with make_client(api_keys="alpha,beta") as client:
        alpha = {"Authorization": "Bearer alpha"}
        beta = {"Authorization": "Bearer beta"}
        first = client.get("/v1/webhooks/secret", headers=alpha).json()["secret"]
        assert first.startswith("whsec_") and len(first) == 6 + 64
        assert client.get("/v1/webhooks/secret", headers=alpha).json()["secret"] == first
        assert client.get("/v1/webhooks/secret", headers=beta).json()["secret"] != first
        rotated = client.post("/v1/webhooks/secret/rotate", headers=alpha).json()["secret"]
        assert rotated != first
        assert client.get("/v1/webhooks/secret", headers=alpha).json()["secret"] == rotated
        assert client.get("/v1/webhooks/secret").status_code == 401


def test_notifications_of_unknown_or_foreign_runs_are_404(make_client: Callable[..., Any]) -> None:
    with make_client(api_keys="alpha,beta") as client:
        alpha = {"Authorization": "Bearer alpha"}
        network = client.post("/v1/networks", json=XOR_NETWORK, headers=alpha).json()
        dataset = client.post(
            "/v1/datasets", json={"name": "xor", "X": XOR_X, "y": XOR_Y}, headers=alpha
        ).json()
        body = run_body(network["id"], dataset["id"])
        run = client.post("/v1/runs", json=body, headers=alpha).json()
        own = client.get(f"/v1/runs/{run['id']}/notifications", headers=alpha)
        assert own.status_code == 200 and own.json()["data"] == []
        beta = {"Authorization": "Bearer beta"}
        other = client.get(f"/v1/runs/{run['id']}/notifications", headers=beta)
        unknown = client.get("/v1/runs/run_0123/notifications", headers=alpha)
        assert other.status_code == unknown.status_code == 404
        assert other.json()["detail"].replace(run["id"], "run_0123") == unknown.json()["detail"]


def test_slow_receiver_times_out_and_does_not_block_the_api(
    make_client: Callable[..., Any],
) -> None:
    settings = {**FAST, "webhook_timeout_seconds": 2.0, "webhook_retry_seconds": 0.5}
    with webhook_receiver(delay=4.0) as receiver, make_client(**settings) as client:
        network_id, dataset_id = create_xor(client)
        body = run_body(network_id, dataset_id, notify_url=receiver.url)
        run_id = client.post("/v1/runs", json=body).json()["id"]
        client.post(f"/v1/runs/{run_id}/cancel")
        deadline = time.monotonic() + 10
        while not receiver.received and time.monotonic() < deadline:
            time.sleep(0.02)
        assert receiver.received, "the webhook was never sent"
        # The attempt is now waiting for the receiver; the API answers meanwhile.
        for _ in range(3):
            assert client.get(f"/v1/runs/{run_id}").status_code == 200
            assert client.post("/v1/networks", json=XOR_NETWORK).status_code == 201
        (waiting,) = _notifications(client, run_id)
        assert waiting["status"] == "pending" and waiting["attempts"] == 0
        notification = _wait_settled(client, run_id)
    (attempt,) = notification["attempt_log"]
    assert notification["status"] == "failed"
    assert attempt["status_code"] is None and "Timeout" in attempt["error"]
    assert 1900 <= attempt["duration_ms"] < 3900


def test_a_huge_answer_is_not_read(make_client: Callable[..., Any]) -> None:
    with webhook_receiver() as receiver, make_client(**FAST) as client:
        receiver.answer_bytes = 256 * 1024 * 1024
        network_id, dataset_id = create_xor(client)
        body = run_body(network_id, dataset_id, notify_url=receiver.url)
        run_id = client.post("/v1/runs", json=body).json()["id"]
        client.post(f"/v1/runs/{run_id}/cancel")
        notification = _wait_settled(client, run_id)
        time.sleep(0.2)
    assert notification["status"] == "delivered"
    assert receiver.sent_bytes < 64 * 1024 * 1024  # the connection was dropped early
