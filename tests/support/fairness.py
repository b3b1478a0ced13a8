"""The fairness scenario of issue 10 (defect 7), for any executor.

Tenant A queues 12 runs; once A's first run trains, tenant B queues one. With one
worker, a fair queue claims B's run next, when A's run in progress ends; an
unfair (oldest-first) one claims A's 11 other runs first. :func:`b_is_served_next`
plays it against a client of the real app (a ``TestClient`` or an ``httpx.Client``
of a real server started with :data:`KEYS`) and checks the order of the claims,
which does not depend on the machine's speed.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from tests.conftest import XOR_NETWORK, XOR_X, XOR_Y, run_body

KEYS = {"a": "tenant-a-key-0123456789", "b": "tenant-b-key-9876543210"}
API_KEYS = ",".join(KEYS.values())
"""``BACKPROP_API_KEYS`` of the two tenants."""
A_RUNS = 12
A_EPOCHS = 25_000
"""About a second of training per run: B's run is queued while A's first one trains."""


def _headers(tenant: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[tenant]}"}


def _xor(client: Any, tenant: str) -> tuple[str, str]:
    network = client.post("/v1/networks", json=XOR_NETWORK, headers=_headers(tenant))
    dataset = client.post(
        "/v1/datasets", json={"name": "xor", "X": XOR_X, "y": XOR_Y}, headers=_headers(tenant)
    )
    assert network.status_code == 201 and dataset.status_code == 201, dataset.text
    return network.json()["id"], dataset.json()["id"]


def _create(client: Any, tenant: str, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/v1/runs", json=body, headers=_headers(tenant))
    assert response.status_code == 202, response.text
    run: dict[str, Any] = response.json()
    return run


def _run(client: Any, tenant: str, run_id: str) -> dict[str, Any]:
    response = client.get(f"/v1/runs/{run_id}", headers=_headers(tenant))
    assert response.status_code == 200, response.text
    run: dict[str, Any] = response.json()
    return run


def _started(run: dict[str, Any]) -> datetime | None:
    return None if run["started_at"] is None else datetime.fromisoformat(run["started_at"])


def b_is_served_next(client: Any, timeout: float = 180) -> None:
    """Play the scenario; fail unless B's run is the first claim after it was queued."""
    a_body = run_body(*_xor(client, "a"), epochs=A_EPOCHS, history_every=1000)
    b_body = run_body(*_xor(client, "b"), epochs=10)
    a_ids = [_create(client, "a", {**a_body, "seed": i})["id"] for i in range(A_RUNS)]
    first = _run(client, "a", a_ids[0])
    deadline = time.monotonic() + timeout
    while first["status"] == "queued":  # the worker claims A's oldest run
        assert time.monotonic() < deadline, first
        time.sleep(0.02)
        first = _run(client, "a", a_ids[0])
    b_run = _create(client, "b", b_body)
    b_created = datetime.fromisoformat(b_run["created_at"])

    # Wait until B's run has started, or until an A run started after B's was
    # queued (only an unfair queue does that); a fair one takes one A run's time.
    while True:
        b_after = _run(client, "b", b_run["id"])
        later = [_started(_run(client, "a", run_id)) for run_id in a_ids[1:]]
        if b_after["started_at"] is not None or any(
            start is not None and start > b_created for start in later
        ):
            break
        assert time.monotonic() < deadline, "neither B's run nor another A run started"
        time.sleep(0.05)
    a_runs = [_run(client, "a", run_id) for run_id in a_ids]
    for run_id in a_ids:  # free the worker: queued runs are cancelled at once
        client.post(f"/v1/runs/{run_id}/cancel", headers=_headers("a"))

    b_start = _started(b_after)
    jumped = [
        run["id"]
        for run in a_runs
        if (start := _started(run)) is not None
        and start > b_created
        and (b_start is None or start < b_start)
    ]
    assert jumped == [], f"A's runs {jumped} were claimed after B's run was queued, before it"
    assert b_start is not None, "tenant B's run never started"
    a_first = _started(a_runs[0])
    assert a_first is not None and a_first < b_created, "A's first run was not training first"
