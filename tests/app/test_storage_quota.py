"""The per-tenant storage quota (issue 10, defect 12): refused with the figures, never overrun.

Datasets are charged their stored bytes; runs reserve the most they can store while
unfinished and are charged what they stored once finished. Racing uploads and run
creates are serialized per tenant, so together they cannot overrun the quota.
Every test runs on SQLite and PostgreSQL through the real app.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import text

import engine
from app.db.database import Database
from app.db.models import DEFAULT_OWNER, RunStorage
from app.services import storage
from engine.config import ENGINE_KEYS
from tests.conftest import XOR_X, create_xor, run_body, wait_terminal

SETTING = "BACKPROP_STORAGE_QUOTA_BYTES"
ROUNDS = 6  # bursts of racing creates and uploads


def _db(client: TestClient) -> Database:
    db: Database = client.app.state.db  # type: ignore[attr-defined]
    return db


def _usage(client: TestClient) -> storage.Usage:
    with _db(client).reading() as session:
        return storage.usage(session=session, owner=DEFAULT_OWNER)


def _reserved(client: TestClient, run_id: str) -> int:
    with _db(client).reading() as session:
        row = session.get(RunStorage, run_id)
        assert row is not None and row.reserved_bytes is not None
        return row.reserved_bytes


def _figures(detail: str) -> tuple[int, int, int]:
    """``(needed, used, quota)`` as a refusal states them."""
    needed = re.search(r"needs (\d+) bytes", detail)
    used = re.search(r"stores (\d+) bytes", detail)
    quota = re.search(r"of at most (\d+) bytes", detail)
    assert needed and used and quota and SETTING in detail, detail
    return int(needed[1]), int(used[1]), int(quota[1])


def _assert_refused(response: httpx.Response, quota: int) -> None:
    assert response.status_code == 507, response.text
    detail = response.json()["detail"]
    needed, used, stated = _figures(detail)
    assert stated == quota and used + needed > quota, detail


def _dataset(rows: int) -> dict[str, Any]:
    return {
        "name": "d",
        "X": [[float(i), 1.0] for i in range(rows)],
        "y": [i % 2 for i in range(rows)],
    }


def test_a_dataset_over_the_quota_is_refused_with_the_figures(
    make_client: Callable[..., Any],
) -> None:
    with make_client() as probe:  # no quota: measure what one dataset is charged
        assert probe.post("/v1/datasets", json=_dataset(50)).status_code == 201
        one = _usage(probe).datasets
    quota = 2 * one + one // 2
    with make_client(storage_quota_bytes=quota) as client:
        assert _usage(client).datasets == one
        created = client.post("/v1/datasets", json=_dataset(50))
        assert created.status_code == 201 and created.json()["stored_bytes"] == one
        refused = client.post("/v1/datasets", json=_dataset(50))
        _assert_refused(refused, quota)
        assert _figures(refused.json()["detail"]) == (one, 2 * one, quota)
        assert len(client.get("/v1/datasets").json()["data"]) == 2  # nothing half-written
        csv = "a,b,y\n" + "".join(f"{i},1,{i % 2}\n" for i in range(50))
        _assert_refused(
            client.post("/v1/datasets/csv", files={"file": ("d.csv", csv)}, data={"target": "y"}),
            quota,
        )
        dataset_id = client.get("/v1/datasets").json()["data"][0]["id"]
        assert client.delete(f"/v1/datasets/{dataset_id}").status_code == 204
        assert client.post("/v1/datasets", json=_dataset(50)).status_code == 201


def test_a_run_whose_history_cannot_fit_is_refused_with_the_figures(
    make_client: Callable[..., Any],
) -> None:
    quota = 4_000_000
    with make_client(storage_quota_bytes=quota) as client:
        network_id, dataset_id = create_xor(client)
        long_run = run_body(network_id, dataset_id, epochs=1_000_000, history_every=1)
        refused = client.post("/v1/runs", json=long_run)
        _assert_refused(refused, quota)
        detail = refused.json()["detail"]
        points = re.search(r"history up to (\d+) points", detail)
        assert points and int(points[1]) > 100_000 and "history_every" in detail, detail
        assert client.get("/v1/runs").json()["data"] == []
        accepted = client.post("/v1/runs", json={**long_run, "history_every": 1000})
        assert accepted.status_code == 202, accepted.text
        reserved = _reserved(client, accepted.json()["id"])
        assert _usage(client).runs_reserved == reserved < quota


def test_scheduled_checkpoints_have_a_cap_of_their_own(make_client: Callable[..., Any]) -> None:
    with make_client(max_scheduled_checkpoints=100) as client:
        body = run_body(*create_xor(client), epochs=1000)
        assert client.post("/v1/runs", json={**body, "checkpoint_every": 10}).status_code == 202
        refused = client.post("/v1/runs", json={**body, "checkpoint_every": 9})
        assert refused.status_code == 422, refused.text
        (issue,) = refused.json()["detail"]
        assert issue["loc"] == ["body", "checkpoint_every"]
        assert (
            "111 checkpoints" in issue["msg"]
            and "BACKPROP_MAX_SCHEDULED_CHECKPOINTS" in (issue["msg"])
        )
        assert "checkpoint_every >= 10" in issue["msg"]


def test_racing_uploads_and_run_creates_cannot_overrun_the_quota(
    make_client: Callable[..., Any],
) -> None:
    with make_client() as probe:  # no quota: measure one run's reservation and one dataset
        network_id, dataset_id = create_xor(probe)
        body = run_body(network_id, dataset_id, epochs=20_000)
        run_id = probe.post("/v1/runs", json=body).json()["id"]
        reservation = _reserved(probe, run_id)
        assert probe.post(f"/v1/runs/{run_id}/cancel").json()["status"] == "cancelled"
        before = _usage(probe).datasets
        assert probe.post("/v1/datasets", json=_dataset(4)).status_code == 201
        upload = _usage(probe).datasets - before
        # The cancelled run stored nothing: it is charged 0 once settled (the quota's
        # first charge settles it; this probe has no quota, so it still shows reserved).
        base = _usage(probe).datasets
    fits = 3
    quota = base + fits * reservation + reservation // 2
    with make_client(storage_quota_bytes=quota, max_active_runs=50) as client:
        for round_ in range(ROUNDS):
            calls: list[Callable[[], httpx.Response]] = [
                lambda: client.post("/v1/runs", json=body) for _ in range(6)
            ]
            calls += [lambda: client.post("/v1/datasets", json=_dataset(4)) for _ in range(6)]
            responses = _all_at_once(calls)
            runs = [r for r in responses[:6] if r.status_code == 202]
            uploads = [r for r in responses[6:] if r.status_code == 201]
            for response in responses:
                if response.status_code not in (201, 202):
                    _assert_refused(response, quota)
            used = _usage(client)
            assert used.total <= quota, f"round {round_}: {used}"
            assert len(runs) * reservation + len(uploads) * upload <= quota - base
            assert len(runs) + len(uploads) >= 1
            for response in runs:  # cancelled queued runs stored nothing: space comes back
                cancel = client.post(f"/v1/runs/{response.json()['id']}/cancel")
                assert cancel.json()["status"] == "cancelled"
            for response in uploads:
                assert client.delete(f"/v1/datasets/{response.json()['id']}").status_code == 204


def _all_at_once(calls: list[Callable[[], httpx.Response]]) -> list[httpx.Response]:
    barrier = threading.Barrier(len(calls))

    def released(call: Callable[[], httpx.Response]) -> httpx.Response:
        barrier.wait(timeout=30)
        return call()

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return [f.result(timeout=120) for f in [pool.submit(released, c) for c in calls]]


def test_a_finished_run_is_charged_what_it_stored(make_client: Callable[..., Any]) -> None:
    with make_client() as probe:
        body = run_body(*create_xor(probe), epochs=200)
        probe_id = probe.post("/v1/runs", json=body).json()["id"]
        reservation = _reserved(probe, probe_id)
        assert probe.post(f"/v1/runs/{probe_id}/cancel").json()["status"] == "cancelled"
        base = _usage(probe).datasets
    quota = base + reservation + reservation // 2  # room for one unfinished run
    with make_client(storage_quota_bytes=quota, workers=1) as client:
        first = client.post("/v1/runs", json=body)
        assert first.status_code == 202, first.text
        _assert_refused(client.post("/v1/runs", json=body), quota)
        assert wait_terminal(client, first.json()["id"])["status"] == "succeeded"
        second = client.post("/v1/runs", json=body)  # settles the first: it stored less
        assert second.status_code == 202, second.text
        with _db(client).reading() as session:
            row = session.get(RunStorage, first.json()["id"])
            assert row is not None and row.stored_bytes is not None
            stored = storage.stored_bytes(session=session, run_ids=[row.run_id])[row.run_id]
        assert 0 < row.stored_bytes == stored < reservation


RESERVATION_CASES = [
    {"epochs": 300},
    {"epochs": 300, "history_every": 7, "checkpoint_every": 25},
    {"epochs": 300, "checkpoint_every": 1},
    {"epochs": 300, "optimizer": {"name": "adam", "learning_rate": 0.05}, "dtype": "float32"},
    {"epochs": 300, "early_stopping": {"monitor": "loss", "patience": 1000}},
    {
        "epochs": 300,
        "loss": "cross_entropy",
        "validation": {"fraction": 0.25},
        "early_stopping": {"patience": 50},
    },
    {"epochs": 300, "optimizer": {"name": "adam", "amsgrad": True}},
    {"epochs": 300, "optimizer": {"name": "adamw"}},
    {"epochs": 300, "optimizer": {"name": "rmsprop", "momentum": 0.9, "centered": True}},
    {"epochs": 300, "optimizer": {"name": "adagrad"}},
    {
        "epochs": 300,
        "lr_schedule": {"name": "multistep", "milestones": list(range(1, 300, 3)), "gamma": 0.99},
    },
    {
        "epochs": 300,
        "lr_schedule": {"name": "plateau", "patience": 5},
        "grad_clip": {"max_norm": 1.0},
    },
    {
        "epochs": 300,
        "loss": "cross_entropy",
        "validation": {"fraction": 0.25},
        "metrics": ["accuracy", "precision", "recall", "f1"],
    },
]
WIDE = [{"units": 64, "activation": "tanh"}]  # arrays larger than the metadata's slack


def _stored_by_kind(db: Database, run_id: str) -> dict[str, list[int]]:
    """Blob sizes of a run (history chunks, checkpoints: state + weights, final weights)
    and its chunks' numbers of points."""
    queries = {
        "history": "SELECT length(data) FROM run_history_chunk WHERE run_id = :id",
        "checkpoints": "SELECT length(s.state) + length(s.weights) FROM checkpoint c "
        "JOIN checkpoint_state s ON s.checkpoint_id = c.id WHERE c.run_id = :id",
        "weights": "SELECT length(final_weights) FROM run_arrays WHERE run_id = :id",
        "points": "SELECT n_points FROM run_history_chunk WHERE run_id = :id",
    }
    with db.reading() as session:
        return {
            kind: [int(size) for (size,) in session.execute(text(sql), {"id": run_id})]
            for kind, sql in queries.items()
        }


def test_runs_never_store_more_than_they_reserved(make_client: Callable[..., Any]) -> None:
    """Each part of what finished runs stored is within its part of the reservation."""
    with make_client(workers=1, auto_checkpoint_seconds=0.01) as client:
        db = _db(client)
        regression = create_xor(client, layers=[*WIDE, {"units": 1, "activation": "sigmoid"}])
        classes = create_xor(client, layers=[*WIDE, {"units": 2, "activation": "softmax"}])
        labels = {"name": "xor", "X": XOR_X * 2, "y": [0, 1, 1, 0] * 2}
        classes = (classes[0], client.post("/v1/datasets", json=labels).json()["id"])
        for config in RESERVATION_CASES:
            network_id, dataset_id = classes if "validation" in config else regression
            created = client.post("/v1/runs", json={**run_body(network_id, dataset_id), **config})
            run = wait_terminal(client, created.json()["id"])
            assert run["status"] == "succeeded", run
            public = client.get(f"/v1/networks/{network_id}").json()
            spec = {key: public[key] for key in ("input_size", "layers", "init")}
            bound = storage.run_reservation(
                network=engine.Network.from_spec(spec),
                config=engine.FitConfig.from_dict(
                    {k: v for k, v in run["config"].items() if k in ENGINE_KEYS}
                ),
                checkpoint_every=run["config"]["checkpoint_every"],
                keep_auto_checkpoints=3,
                init_weights_bytes=0,
            )
            assert bound.total == _reserved(client, run["id"]), config
            stored = _stored_by_kind(db, run["id"])
            assert 0 < sum(stored["history"]) <= bound.history, config
            # Every history_every-th epoch and the last one (exactly the bound, unless
            # early stopping ended the run sooner).
            assert sum(stored["points"]) <= bound.history_points, config
            assert 0 < len(stored["checkpoints"]) <= bound.checkpoints, config
            assert max(stored["checkpoints"]) <= bound.checkpoint_bytes, config
            assert 0 < sum(stored["weights"]) <= bound.weights, config


def test_a_long_history_every_1_run_records_within_the_documented_bound(
    make_client: Callable[..., Any],
) -> None:
    cap, epochs = 1_000, 40_000  # 40 x cap: the interval doubles 6 times
    with make_client(workers=1, history_max_points=cap) as client:
        body = run_body(*create_xor(client), epochs=epochs, history_every=1)
        run = wait_terminal(client, client.post("/v1/runs", json=body).json()["id"], timeout=180)
        assert run["status"] == "succeeded", run
        assert run["config"]["history_max_points"] == cap  # the service's default
        history = client.get(f"/v1/runs/{run['id']}/history").json()
        stored = _stored_by_kind(_db(client), run["id"])
        reserved = _reserved(client, run["id"])
    documented = cap + math.ceil(cap / 2) * math.ceil(math.log2(epochs / cap)) + 1
    assert history["epoch"] == engine.history_epochs(epochs, 1, cap)
    assert sum(stored["points"]) == len(history["epoch"]) <= documented
    assert sum(stored["history"]) + sum(stored["checkpoints"]) <= reserved


def test_the_longest_run_fits_the_default_quota(make_client: Callable[..., Any]) -> None:
    with make_client() as client:  # default settings: 10 GiB, 100,000 history points
        body = run_body(*create_xor(client), epochs=100_000_000, history_every=1)
        created = client.post("/v1/runs", json=body)
        assert created.status_code == 202, created.text
        reserved = _reserved(client, created.json()["id"])
        asked = client.post("/v1/runs", json={**body, "history_max_points": 100_001})
    assert reserved < 256 * 1024**2  # about 600,000 points, not 100,000,000
    assert asked.status_code == 422 and "BACKPROP_HISTORY_MAX_POINTS" in asked.text
