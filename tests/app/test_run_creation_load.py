"""Creating runs on a large dataset costs writers nothing (issue 10, defect 14).

``POST /v1/runs`` used to decode and re-check the whole dataset inside its write
transaction, which on SQLite holds the database's only write lock: a tiny write
behind one large submission waited for it, and ten concurrent submissions stopped
a live worker's lease renewals long enough for the run to be taken away from it.
Now the run is checked against the dataset's stored summary in a read transaction
and the write is lock, count, insert, commit.

The attack is the reproduction's: ten ``POST /v1/runs`` on one large dataset at
once, while a real worker trains with a short lease and another client makes tiny
writes. On PostgreSQL, where writers do not share one lock, it passes either way.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np
from fastapi.testclient import TestClient

from app.datasets.parsing import ParsedDataset
from app.db.database import Database
from app.db.models import DEFAULT_OWNER
from app.services import datasets
from tests.conftest import create_xor, run_body, wait_for, wait_terminal

SAMPLES, FEATURES, CLASSES = 12_000, 784, 10  # 75 MB of float64, below the cell limit
SUBMISSIONS = 10
LEASE_SECONDS = 1.5
TINY_WRITE_BOUND = 0.75  # seconds; generous (~10 ms when nothing holds the write lock)


def _large_dataset(db: Database) -> str:
    """A dataset of SAMPLES x FEATURES, stored through the service (not uploaded)."""
    rng = np.random.default_rng(0)
    parsed = ParsedDataset(
        X=rng.random((SAMPLES, FEATURES)),
        y=rng.integers(0, CLASSES, SAMPLES).astype(np.int64),
        target_type="labels",
    )
    with db.writing() as session:
        dataset = datasets.create_dataset(
            session=session, owner=DEFAULT_OWNER, name="large", parsed=parsed
        )
    return dataset.id


def _large_network(client: TestClient) -> str:
    body = {
        "name": "wide",
        "input_size": FEATURES,
        "layers": [{"units": CLASSES, "activation": "softmax"}],
    }
    response = client.post("/v1/networks", json=body)
    assert response.status_code == 201, response.text
    network_id: str = response.json()["id"]
    return network_id


def _tiny_writes(client: TestClient, stop: threading.Event) -> list[float]:
    """Create an empty-ish network again and again; return each request's latency."""
    body = {"name": "tiny", "input_size": 1, "layers": [{"units": 1, "activation": "identity"}]}
    latencies = []
    while not stop.is_set():
        started = time.perf_counter()
        response = client.post("/v1/networks", json=body)
        latencies.append(time.perf_counter() - started)
        assert response.status_code == 201, response.text
        time.sleep(0.02)
    return latencies


def test_ten_large_submissions_cost_a_training_worker_and_a_tiny_write_nothing(
    make_client: Callable[..., Any],
) -> None:
    with make_client(workers=1, lease_seconds=LEASE_SECONDS, flush_seconds=0.1) as client:
        db: Database = client.app.state.db  # type: ignore[attr-defined]
        dataset_id = _large_dataset(db)
        network_id = _large_network(client)
        xor = client.post("/v1/runs", json=run_body(*create_xor(client), epochs=100_000_000))
        training_id = xor.json()["id"]
        wait_for(client, training_id, lambda run: run["status"] == "running" and run["epoch"] > 0)
        body = {
            "network_id": network_id,
            "dataset_id": dataset_id,
            "loss": "cross_entropy",
            "epochs": 1,
        }
        barrier = threading.Barrier(SUBMISSIONS + 1)

        def submit() -> httpx.Response:
            barrier.wait(timeout=30)
            return client.post("/v1/runs", json=body)

        stop = threading.Event()
        with ThreadPoolExecutor(max_workers=SUBMISSIONS + 1) as pool:
            probe = pool.submit(lambda: (barrier.wait(timeout=30), _tiny_writes(client, stop)))
            submissions = [pool.submit(submit) for _ in range(SUBMISSIONS)]
            responses = [future.result(timeout=300) for future in submissions]
            time.sleep(0.2)  # one more tiny write after the burst
            stop.set()
            _, latencies = probe.result(timeout=60)
        assert [r.status_code for r in responses] == [202] * SUBMISSIONS, responses[0].text
        for response in responses:  # they must not train (the one worker is busy anyway)
            assert client.post(f"/v1/runs/{response.json()['id']}/cancel").status_code == 200
        assert client.post(f"/v1/runs/{training_id}/cancel").status_code == 200
        trained = wait_terminal(client, training_id, timeout=120)

    assert trained["status"] == "cancelled", trained
    assert trained["attempts"] == 1, f"the worker lost its lease during the burst: {trained}"
    assert len(latencies) >= 2
    assert max(latencies) < TINY_WRITE_BOUND, f"tiny writes waited: {sorted(latencies)[-3:]}"
