"""Idempotency-Key on POST (issue 13): replay, mismatch, in flight, races, multipart."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.db.database import Database
from app.db.models import IdempotencyKey
from app.edge.request_hash import BodyHasher, request_fingerprint
from app.services import idempotency as keys
from tests.conftest import XOR_NETWORK, create_xor, run_body

KEY = {"Idempotency-Key": "key-0001"}
TIMES = keys.KeyTimes(ttl_seconds=3600, lock_seconds=300)


def _networks(client: TestClient) -> list[dict[str, Any]]:
    response = client.get("/v1/networks")
    assert response.status_code == 200
    items: list[dict[str, Any]] = response.json()["data"]
    return items


def test_same_key_same_body_replays_the_first_response(client: TestClient) -> None:
    first = client.post("/v1/networks", json=XOR_NETWORK, headers=KEY)
    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers
    again = client.post("/v1/networks", json=XOR_NETWORK, headers=KEY)
    assert again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert again.headers.get("location") == first.headers.get("location")
    assert [net["id"] for net in _networks(client)] == [first.json()["id"]]
    # Without a key, or with another one, the POST creates again.
    assert client.post("/v1/networks", json=XOR_NETWORK).json()["id"] != first.json()["id"]
    other = client.post("/v1/networks", json=XOR_NETWORK, headers={"Idempotency-Key": "key-2"})
    assert other.json()["id"] != first.json()["id"]
    assert len(_networks(client)) == 3


def test_same_key_other_body_is_422_naming_the_header(client: TestClient) -> None:
    assert client.post("/v1/networks", json=XOR_NETWORK, headers=KEY).status_code == 201
    response = client.post("/v1/networks", json={**XOR_NETWORK, "name": "other"}, headers=KEY)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail[0]["loc"] == ["header", "Idempotency-Key"]
    assert "different request" in detail[0]["msg"]
    # Another path with the same key and body is another request too.
    response = client.post("/v1/datasets", json=XOR_NETWORK, headers=KEY)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]
    assert len(_networks(client)) == 1


@pytest.mark.parametrize(
    ("key", "reason"),
    [("", "empty"), ("x" * 256, "at most 255"), ("has space", "printable"), ("ключ", "ASCII")],
)
def test_malformed_keys_are_422(client: TestClient, key: str, reason: str) -> None:
    headers = {b"Idempotency-Key": key.encode()}
    response = client.post("/v1/networks", json=XOR_NETWORK, headers=headers)
    assert response.status_code == 422
    detail = response.json()["detail"][0]
    assert detail["loc"] == ["header", "Idempotency-Key"]
    assert reason in detail["msg"]
    assert _networks(client) == []


def test_keys_are_per_tenant(make_client: Callable[..., Any]) -> None:
    with make_client(api_keys="alpha,beta") as client:
        a = client.post(
            "/v1/networks", json=XOR_NETWORK, headers={**KEY, "Authorization": "Bearer alpha"}
        )
        b = client.post(
            "/v1/networks", json=XOR_NETWORK, headers={**KEY, "Authorization": "Bearer beta"}
        )
        assert a.status_code == b.status_code == 201
        assert a.json()["id"] != b.json()["id"]
        assert "idempotent-replayed" not in b.headers
        # A wrong key is a 401 whatever the Idempotency-Key, and stores nothing.
        bad = client.post(
            "/v1/networks", json=XOR_NETWORK, headers={**KEY, "Authorization": "Bearer nope"}
        )
        assert bad.status_code == 401


def _concurrent_posts(client: TestClient, body: dict[str, Any], n: int) -> list[Any]:
    barrier = threading.Barrier(n)

    def post(_: int) -> Any:
        barrier.wait()
        return client.post("/v1/runs", json=body, headers=KEY)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(post, range(n)))


def test_concurrent_duplicate_posts_create_one_run(client: TestClient) -> None:
    network_id, dataset_id = create_xor(client)
    body = run_body(network_id, dataset_id)
    responses = _concurrent_posts(client, body, 8)
    statuses = sorted(response.status_code for response in responses)
    assert set(statuses) <= {202, 409}, [response.text for response in responses]
    created = {response.json()["id"] for response in responses if response.status_code == 202}
    assert len(created) == 1
    for response in responses:
        if response.status_code == 409:
            assert response.headers["retry-after"] == "1"
            assert "still being processed" in response.json()["detail"]
    runs = client.get("/v1/runs").json()["data"]
    assert [run["id"] for run in runs] == list(created)
    # Once the first answered, every retry gets its replay.
    again = client.post("/v1/runs", json=body, headers=KEY)
    assert again.status_code == 202 and again.json()["id"] in created


def test_concurrent_begins_have_one_winner(database_url: str) -> None:
    """The arbiter itself, one session per thread (SQLite and PostgreSQL)."""
    db = Database(database_url)
    n = 8
    barrier = threading.Barrier(n)

    def begin(_: int) -> keys.Outcome:
        barrier.wait()
        with db.writing() as session:
            return keys.begin(
                session=session, owner="default", key="race", request_hash="h" * 64, times=TIMES
            )

    try:
        with ThreadPoolExecutor(n) as pool:
            outcomes = list(pool.map(begin, range(n)))
    finally:
        db.dispose()
    assert sum(isinstance(outcome, keys.Began) for outcome in outcomes) == 1
    assert sum(isinstance(outcome, keys.InFlight) for outcome in outcomes) == n - 1


def _hold_key(database_url: str, path: str, body: bytes, times: keys.KeyTimes) -> None:
    """Take ``KEY`` for ``POST path`` with ``body`` as a request still running would."""
    scope = {
        "method": "POST",
        "path": path,
        "query_string": b"",
        "headers": [(b"content-type", b"application/json")],
    }
    fingerprint = request_fingerprint(scope, hashlib.sha256(body).hexdigest())
    db = Database(database_url)
    try:
        with db.writing() as session:
            outcome = keys.begin(
                session=session,
                owner="default",
                key=KEY["Idempotency-Key"],
                request_hash=fingerprint,
                times=times,
            )
        assert isinstance(outcome, keys.Began)
    finally:
        db.dispose()


def test_in_flight_key_is_409_until_its_lock_expires(
    make_client: Callable[..., Any], database_url: str
) -> None:
    body = json.dumps(XOR_NETWORK).encode()
    headers = {**KEY, "Content-Type": "application/json"}
    _hold_key(database_url, "/v1/networks", body, keys.KeyTimes(3600, 1.0))
    with make_client() as client:
        response = client.post("/v1/networks", content=body, headers=headers)
        assert response.status_code == 409
        assert response.headers["retry-after"] == "1"
        assert _networks(client) == []
        time.sleep(1.1)  # the holder died: its lock lapses and the key is taken over
        response = client.post("/v1/networks", content=body, headers=headers)
        assert response.status_code == 201
        assert len(_networks(client)) == 1


def test_expired_key_is_forgotten_and_pruned(
    make_client: Callable[..., Any], database_url: str
) -> None:
    with make_client(idempotency_ttl_seconds=0.5) as client:
        first = client.post("/v1/networks", json=XOR_NETWORK, headers=KEY)
        time.sleep(0.6)
        other = client.post("/v1/networks", json={**XOR_NETWORK, "name": "b"}, headers=KEY)
        assert other.status_code == 201
        assert other.json()["id"] != first.json()["id"]
        time.sleep(0.6)
        db = client.app.state.db
        with db.writing() as session:
            assert keys.prune(session=session) == 1
        with db.reading() as session:
            assert session.get(IdempotencyKey, ("default", KEY["Idempotency-Key"])) is None


def test_transient_answers_are_not_stored(make_client: Callable[..., Any]) -> None:
    """A 429 is not what the request did: the retry with the same key runs it again."""
    with make_client(max_active_runs=1) as client:
        network_id, dataset_id = create_xor(client)
        first = client.post("/v1/runs", json=run_body(network_id, dataset_id))
        assert first.status_code == 202
        body = run_body(network_id, dataset_id, seed=2)
        refused = client.post("/v1/runs", json=body, headers=KEY)
        assert refused.status_code == 429
        assert client.post(f"/v1/runs/{first.json()['id']}/cancel").status_code == 200
        retried = client.post("/v1/runs", json=body, headers=KEY)
        assert retried.status_code == 202, retried.text
        assert "idempotent-replayed" not in retried.headers


def test_validation_errors_are_replayed(client: TestClient) -> None:
    bad = {**XOR_NETWORK, "input_size": 0}
    first = client.post("/v1/networks", json=bad, headers=KEY)
    assert first.status_code == 422
    again = client.post("/v1/networks", json=bad, headers=KEY)
    assert again.status_code == 422
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"


def test_large_responses_are_not_stored(make_client: Callable[..., Any]) -> None:
    with make_client(idempotency_max_response_bytes=10) as client:
        first = client.post("/v1/networks", json=XOR_NETWORK, headers=KEY)
        again = client.post("/v1/networks", json=XOR_NETWORK, headers=KEY)
        assert first.status_code == again.status_code == 201
        assert first.json()["id"] != again.json()["id"]


CSV = b"x1,x2,y\n0,0,0\n0,1,1\n1,0,1\n1,1,0\n"


def test_multipart_upload_replays_whatever_the_boundary(client: TestClient) -> None:
    def upload(content: bytes) -> Any:
        return client.post(
            "/v1/datasets/csv",
            files={"file": ("xor.csv", content, "text/csv")},
            data={"target": "y"},
            headers=KEY,
        )

    first = upload(CSV)
    assert first.status_code == 201, first.text
    again = upload(CSV)  # httpx draws a new boundary per request
    assert again.status_code == 201
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["idempotent-replayed"] == "true"
    other = upload(CSV.replace(b"1,1,0", b"1,1,1"))
    assert other.status_code == 422
    assert other.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]
    assert len(client.get("/v1/datasets").json()["data"]) == 1


@pytest.mark.parametrize("cut", [1, 5, 17, 40, 63])
def test_body_hash_ignores_only_the_boundary(cut: int) -> None:
    def digest(boundary: str, body: bytes, size: int) -> str:
        scope = {
            "headers": [(b"content-type", f"multipart/form-data; boundary={boundary}".encode())]
        }
        hasher = BodyHasher(scope)
        for start in range(0, len(body), size):
            hasher.update(body[start : start + size])
        return hasher.hexdigest()

    def form(boundary: str, payload: bytes) -> bytes:
        return (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"\r\n\r\n'.encode()
            + payload
            + f"\r\n--{boundary}--\r\n".encode()
        )

    a = digest("aaaaaaaaaaaaaaaa", form("aaaaaaaaaaaaaaaa", CSV), cut)
    b = digest("bbbbbbbbbbbbbbbbbbbbbbbb", form("bbbbbbbbbbbbbbbbbbbbbbbb", CSV), cut)
    assert a == b
    assert digest("aaaaaaaaaaaaaaaa", form("aaaaaaaaaaaaaaaa", CSV + b"x"), cut) != a


def test_openapi_documents_the_header(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    posts = [path["post"] for path in schema["paths"].values() if "post" in path]
    assert posts
    for operation in posts:
        names = [param["name"] for param in operation.get("parameters", [])]
        assert "Idempotency-Key" in names
        assert {"409", "422"} <= set(operation["responses"])
    for name in ("ValidationErrorBody", "ValidationIssue", "ErrorMessage"):
        assert name in schema["components"]["schemas"]
    gets = [path["get"] for path in schema["paths"].values() if "get" in path]
    for operation in gets:
        assert "Idempotency-Key" not in [p["name"] for p in operation.get("parameters", [])]


def test_bodyless_posts_replay_too(client: TestClient) -> None:
    network_id, dataset_id = create_xor(client)
    run_id = client.post("/v1/runs", json=run_body(network_id, dataset_id)).json()["id"]
    paused = client.post(f"/v1/runs/{run_id}/pause", headers=KEY)
    assert paused.status_code == 200 and paused.json()["status"] == "paused"
    assert client.post(f"/v1/runs/{run_id}/resume").json()["status"] == "queued"
    again = client.post(f"/v1/runs/{run_id}/pause", headers=KEY)  # replayed, not re-run
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == paused.json()
    assert client.get(f"/v1/runs/{run_id}").json()["status"] == "queued"
    other = client.post(f"/v1/runs/{run_id}/cancel", headers=KEY)  # another path
    assert other.status_code == 422
