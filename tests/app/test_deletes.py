"""Explicit deletes (issue 13): ``DELETE /v1/runs/{id}`` (409 while unfinished unless
``?force=true``, which cancels first), and one rule for networks and datasets (409 with
the count of runs using them unless ``?cascade=true``). No orphan rows, and the storage
quota's usage stays exact. Every test runs on SQLite and PostgreSQL through the real app.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import text

from app.db.database import Database
from app.db.models import DEFAULT_OWNER
from app.services import storage
from tests.conftest import XOR_X, XOR_Y, create_xor, run_body, wait_for, wait_terminal

RUN_TABLES = ("run_history_chunk", "checkpoint", "run_arrays", "run_storage", "run_tag")


def _db(client: TestClient) -> Database:
    db: Database = client.app.state.db  # type: ignore[attr-defined]
    return db


def _rows_of(client: TestClient, run_id: str) -> dict[str, int]:
    """Rows left anywhere for ``run_id`` (checkpoint_state through its checkpoints)."""
    counts = {}
    with _db(client).reader.connect() as conn:
        for table in ("run", *RUN_TABLES):
            column = "id" if table == "run" else "run_id"
            counts[table] = conn.execute(
                text(f"SELECT count(*) FROM {table} WHERE {column} = :id"), {"id": run_id}
            ).scalar_one()
        counts["orphan checkpoint_state"] = conn.execute(
            text(
                "SELECT count(*) FROM checkpoint_state WHERE checkpoint_id NOT IN "
                "(SELECT id FROM checkpoint)"
            )
        ).scalar_one()
    return counts


def _usage(client: TestClient) -> storage.Usage:
    with _db(client).reading() as session:
        return storage.usage(session=session, owner=DEFAULT_OWNER)


def _trained(client: TestClient, network_id: str, dataset_id: str, **config: Any) -> str:
    body = run_body(network_id, dataset_id, epochs=300, checkpoint_every=50, tags=["t"], **config)
    run_id: str = client.post("/v1/runs", json=body).json()["id"]
    assert wait_terminal(client, run_id)["status"] == "succeeded"
    return run_id


def test_delete_a_finished_run_removes_everything_and_frees_its_storage(
    make_client: Callable[..., Any],
) -> None:
    with make_client(workers=1, storage_quota_bytes=1 << 30) as client:
        network_id, dataset_id = create_xor(client)
        kept = _trained(client, network_id, dataset_id)
        run_id = _trained(client, network_id, dataset_id)
        client.post("/v1/datasets", json={"name": "settle", "X": XOR_X, "y": XOR_Y})  # settles
        before = _rows_of(client, run_id)
        assert before["run_history_chunk"] > 0 and before["checkpoint"] >= 6
        assert before["run_arrays"] == before["run_storage"] == before["run_tag"] == 1
        usage = _usage(client)
        with _db(client).reading() as session:
            charged = storage.usage(session=session, owner=DEFAULT_OWNER).runs_stored
        assert client.delete(f"/v1/runs/{run_id}").status_code == 204
        assert client.get(f"/v1/runs/{run_id}").status_code == 404
        assert client.get(f"/v1/runs/{run_id}/history").status_code == 404
        assert client.delete(f"/v1/runs/{run_id}").status_code == 404
        assert set(_rows_of(client, run_id).values()) == {0}
        after = _usage(client)
        assert after.datasets == usage.datasets and after.runs_reserved == usage.runs_reserved
        assert 0 < after.runs_stored < charged  # the other run's charge is left
        assert client.get(f"/v1/runs/{kept}").status_code == 200
        assert _rows_of(client, kept)["checkpoint"] == before["checkpoint"]
        assert [run["id"] for run in client.get("/v1/runs?tag=t").json()["data"]] == [kept]


def test_unfinished_runs_are_409_unless_forced(client: TestClient) -> None:
    network_id, dataset_id = create_xor(client)
    queued = client.post("/v1/runs", json=run_body(network_id, dataset_id)).json()["id"]
    paused = client.post("/v1/runs", json=run_body(network_id, dataset_id)).json()["id"]
    assert client.post(f"/v1/runs/{paused}/pause").json()["status"] == "paused"
    for run_id, status in ((queued, "queued"), (paused, "paused")):
        response = client.delete(f"/v1/runs/{run_id}")
        assert response.status_code == 409, response.text
        assert status in response.json()["detail"] and "force=true" in response.json()["detail"]
        assert client.get(f"/v1/runs/{run_id}").json()["status"] == status
        assert client.delete(f"/v1/runs/{run_id}?force=true").status_code == 204
        assert set(_rows_of(client, run_id).values()) == {0}
    assert client.delete("/v1/runs/run_nope?force=true").status_code == 404
    response = client.delete(f"/v1/runs/{queued}?force=maybe")
    assert response.status_code == 422


def test_force_delete_of_a_running_run_cancels_it_and_frees_the_worker(
    make_client: Callable[..., Any],
) -> None:
    with make_client(workers=1) as client:
        network_id, dataset_id = create_xor(client)
        body = run_body(network_id, dataset_id, epochs=1_000_000, history_every=100)
        run_id = client.post("/v1/runs", json=body).json()["id"]
        wait_for(client, run_id, lambda run: run["status"] == "running" and run["epoch"] > 1000)
        assert client.delete(f"/v1/runs/{run_id}").status_code == 409
        assert client.delete(f"/v1/runs/{run_id}?force=true").status_code == 204
        assert client.get(f"/v1/runs/{run_id}").status_code == 404
        # The worker's next write finds no run: it stops, and the next run gets the worker.
        after = client.post("/v1/runs", json=run_body(network_id, dataset_id, epochs=50)).json()
        assert wait_terminal(client, after["id"], timeout=30)["status"] == "succeeded"
        assert set(_rows_of(client, run_id).values()) == {0}


def test_network_delete_409_with_count_unless_cascade(make_client: Callable[..., Any]) -> None:
    with make_client(workers=1) as client:
        network_id, dataset_id = create_xor(client)
        runs = [_trained(client, network_id, dataset_id) for _ in range(2)]
        other_net, _ = create_xor(client)
        other = _trained(client, other_net, dataset_id)
    with make_client(workers=0) as client:
        response = client.delete(f"/v1/networks/{network_id}")
        assert response.status_code == 409
        assert "used by 2 runs" in response.json()["detail"]
        assert "cascade=true" in response.json()["detail"]
        assert all(client.get(f"/v1/runs/{run_id}").status_code == 200 for run_id in runs)
        queued = client.post("/v1/runs", json=run_body(network_id, dataset_id)).json()["id"]
        response = client.delete(f"/v1/networks/{network_id}?cascade=true")
        assert response.status_code == 409 and queued in response.json()["detail"]
        assert client.get(f"/v1/networks/{network_id}").status_code == 200
        assert client.delete(f"/v1/runs/{queued}?force=true").status_code == 204
        assert client.delete(f"/v1/networks/{network_id}?cascade=true").status_code == 204
        assert client.get(f"/v1/networks/{network_id}").status_code == 404
        for run_id in runs:
            assert client.get(f"/v1/runs/{run_id}").status_code == 404
            assert set(_rows_of(client, run_id).values()) == {0}
        assert client.get(f"/v1/runs/{other}").status_code == 200
        assert client.get(f"/v1/datasets/{dataset_id}").status_code == 200
        unused, _ = create_xor(client)
        assert client.delete(f"/v1/networks/{unused}").status_code == 204


def test_dataset_delete_409_with_count_unless_cascade(make_client: Callable[..., Any]) -> None:
    with make_client(workers=1, storage_quota_bytes=1 << 30) as client:
        network_id, dataset_id = create_xor(client)
        validation = client.post("/v1/datasets", json={"name": "v", "X": XOR_X, "y": XOR_Y})
        validation_id = validation.json()["id"]
        trains = _trained(client, network_id, dataset_id)
        validates = _trained(
            client, network_id, dataset_id, validation={"dataset_id": validation_id}
        )
        for target, count in ((dataset_id, "2 runs"), (validation_id, "1 run;")):
            response = client.delete(f"/v1/datasets/{target}")
            assert response.status_code == 409 and count in response.json()["detail"]
        usage = _usage(client)
        assert client.delete(f"/v1/datasets/{validation_id}?cascade=true").status_code == 204
        assert client.get(f"/v1/runs/{validates}").status_code == 404
        assert set(_rows_of(client, validates).values()) == {0}
        assert client.get(f"/v1/runs/{trains}").json()["dataset_id"] == dataset_id
        after = _usage(client)
        assert after.datasets == usage.datasets - validation.json()["stored_bytes"]
        assert after.runs_stored + after.runs_reserved < usage.runs_stored + usage.runs_reserved
        assert client.delete(f"/v1/datasets/{dataset_id}?cascade=true").status_code == 204
        assert client.get(f"/v1/runs/{trains}").status_code == 404
        assert _usage(client).total == 0
        assert client.get(f"/v1/networks/{network_id}").status_code == 200


def test_deletes_racing_run_creates_never_fail_or_orphan(client: TestClient) -> None:
    """A create and a cascade delete at once: the run is created and the delete is a
    409, or the network/dataset is deleted and the create a 404; never a 500."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=4) as pool:
        for round_ in range(8):
            network_id, dataset_id = create_xor(client)
            target = f"/v1/networks/{network_id}" if round_ % 2 else f"/v1/datasets/{dataset_id}"
            body = run_body(network_id, dataset_id)
            creates = [pool.submit(client.post, "/v1/runs", json=body) for _ in range(2)]
            deleted = pool.submit(client.delete, f"{target}?cascade=true").result()
            statuses = sorted(future.result().status_code for future in creates)
            assert deleted.status_code in (204, 409), deleted.text
            if deleted.status_code == 204:
                assert 202 not in statuses and set(statuses) <= {404}, statuses
                assert client.get(target).status_code == 404
            else:
                assert 202 in statuses and set(statuses) <= {202, 404}, statuses
                assert "queued, running or paused" in deleted.json()["detail"]
            with _db(client).reader.connect() as conn:
                orphans = conn.execute(
                    text(
                        "SELECT count(*) FROM run WHERE network_id NOT IN (SELECT id FROM network)"
                        " OR dataset_id NOT IN (SELECT id FROM dataset)"
                    )
                ).scalar_one()
            assert orphans == 0
