"""Runs executed by a real worker process started in the app's lifespan."""

from __future__ import annotations

import os
import signal
from typing import Any

import numpy as np
import pytest

import engine
from tests.conftest import XOR_X, create_xor, run_body, wait_for, wait_terminal

LONG = 50_000_000


@pytest.fixture
def live(make_client: Any) -> Any:
    with make_client(workers=1, auto_checkpoint_seconds=0.3) as client:
        yield client


def test_xor_trains_to_success_with_results(live: Any) -> None:
    network_id, dataset_id = create_xor(live)
    run = live.post("/v1/runs", json=run_body(network_id, dataset_id, epochs=3000)).json()
    done = wait_terminal(live, run["id"])
    assert done["status"] == "succeeded" and done["stop_reason"] == "completed"
    assert done["epoch"] == 3000 and done["attempts"] == 1
    assert done["loss"] < 0.01 and done["best_loss"] <= done["loss"]
    assert done["started_at"] and done["finished_at"] >= done["started_at"]
    history = live.get(f"/v1/runs/{run['id']}/history").json()
    assert history["epoch"] == list(range(1, 3001))
    assert history["loss"][-1] == done["loss"] and history["val_loss"] == [None] * 3000
    sampled = live.get(f"/v1/runs/{run['id']}/history", params={"max_points": 7}).json()
    assert len(sampled["epoch"]) == 7 and sampled["epoch"][0] == 1 and sampled["epoch"][-1] == 3000
    window = live.get(
        f"/v1/runs/{run['id']}/history", params={"after_epoch": 100, "limit": 5}
    ).json()
    assert window["epoch"] == [101, 102, 103, 104, 105]
    assert window["loss"] == history["loss"][100:105]
    weights = live.get(f"/v1/runs/{run['id']}/weights").json()
    assert weights["epoch"] == 3000
    predictions = live.post(f"/v1/runs/{run['id']}/predict", json={"X": XOR_X}).json()
    assert [round(p[0]) for p in predictions["predictions"]] == [0, 1, 1, 0]
    bad = live.post(f"/v1/runs/{run['id']}/predict", json={"X": [[0, 1, 1]]})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "X"]
    checkpoints = live.get(f"/v1/runs/{run['id']}/checkpoints").json()["data"]
    assert checkpoints[0]["kind"] == "final" and checkpoints[0]["epoch"] == 3000
    detail = live.get(f"/v1/checkpoints/{checkpoints[0]['id']}").json()
    assert detail["layers"] == weights["layers"]
    # Same seed, same config: bit-identical weights (through the whole service).
    again = live.post("/v1/runs", json=run_body(network_id, dataset_id, epochs=3000)).json()
    assert wait_terminal(live, again["id"])["status"] == "succeeded"
    assert live.get(f"/v1/runs/{again['id']}/weights").json() == weights
    # Warm start from the final checkpoint of the first run.
    warm = live.post(
        "/v1/runs",
        json=run_body(network_id, dataset_id, epochs=10, init_from=checkpoints[0]["id"]),
    ).json()
    warm_done = wait_terminal(live, warm["id"])
    assert warm_done["status"] == "succeeded" and warm_done["loss"] < 0.01


def test_explicit_initial_weights_are_where_training_starts(live: Any) -> None:
    """The XOR tutorial (np.random.seed(1) weights) through the service equals engine.fit."""
    np.random.seed(1)
    layers = [
        {"weights": (np.random.random((3, 4)) * np.sqrt(2 / 3)).tolist(), "bias": None},
        {"weights": (np.random.random((4, 1)) * np.sqrt(2 / 4)).tolist(), "bias": None},
    ]
    spec = {
        "input_size": 3,
        "layers": [
            {"units": 4, "activation": "sigmoid", "bias": False},
            {"units": 1, "activation": "sigmoid", "bias": False},
        ],
        "weights": layers,
    }
    X = [[0, 0, 1], [0, 1, 1], [1, 0, 1], [1, 1, 1]]
    y = [[0], [1], [1], [0]]
    config = {
        "loss": "mse",
        "reduction": "sum",
        "optimizer": {"name": "sgd", "learning_rate": 0.5},
        "epochs": 500,
        "seed": 0,
    }
    network_id = live.post("/v1/networks", json={"name": "tutorial", **spec}).json()["id"]
    dataset_id = live.post("/v1/datasets", json={"name": "xor3", "X": X, "y": y}).json()["id"]
    body = {"network_id": network_id, "dataset_id": dataset_id, **config}
    run = wait_terminal(live, live.post("/v1/runs", json=body).json()["id"])
    assert run["status"] == "succeeded"
    net = engine.Network.from_spec(spec)
    engine.fit(net, np.asarray(X, dtype=float), np.asarray(y, dtype=float), config)
    served = live.get(f"/v1/runs/{run['id']}/weights").json()["layers"]
    for mine, theirs in zip(net.get_weights(), served, strict=True):
        assert np.asarray(theirs["weights"]).tobytes() == mine["weights"].tobytes()


def test_history_every_and_scheduled_checkpoints(live: Any) -> None:
    network_id, dataset_id = create_xor(live)
    body = run_body(network_id, dataset_id, epochs=100, history_every=7, checkpoint_every=25)
    run = live.post("/v1/runs", json=body).json()
    assert wait_terminal(live, run["id"])["status"] == "succeeded"
    history = live.get(f"/v1/runs/{run['id']}/history").json()
    assert history["epoch"] == [*range(7, 99, 7), 100]
    epochs = sorted(
        c["epoch"] for c in live.get(f"/v1/runs/{run['id']}/checkpoints").json()["data"]
    )
    assert epochs == [25, 50, 75, 100]


def test_classification_metrics_and_validation(live: Any) -> None:
    network_id, _ = create_xor(live)
    data = live.post(
        "/v1/datasets", json={"name": "x8", "X": XOR_X * 2, "y": [[0], [1], [1], [0]] * 2}
    ).json()
    body = run_body(
        network_id,
        data["id"],
        loss="binary_cross_entropy",
        epochs=300,
        validation={"fraction": 0.25},
        early_stopping={"patience": 1000},
    )
    run = wait_terminal(live, live.post("/v1/runs", json=body).json()["id"])
    assert run["status"] == "succeeded"
    assert run["val_loss"] is not None and set(run["metrics"]) == {"accuracy", "val_accuracy"}
    history = live.get(f"/v1/runs/{run['id']}/history").json()
    assert set(history) == {"epoch", "loss", "val_loss", "accuracy", "val_accuracy"}
    assert all(v is not None for v in history["val_loss"])


def test_diverged_run_fails_with_the_engine_message(live: Any) -> None:
    network = {
        "name": "lin",
        "input_size": 1,
        "layers": [{"units": 1, "activation": "identity"}],
        "weights": [{"weights": [[1.0]], "bias": [0.0]}],
    }
    network_id = live.post("/v1/networks", json=network).json()["id"]
    dataset_id = live.post(
        "/v1/datasets", json={"name": "big", "X": [[1e3], [2e3]], "y": [1.0, 2.0]}
    ).json()["id"]
    body = run_body(network_id, dataset_id, optimizer={"name": "sgd", "learning_rate": 10.0})
    run = wait_terminal(live, live.post("/v1/runs", json=body).json()["id"])
    assert run["status"] == "failed" and run["stop_reason"] == "diverged"
    assert run["error"]["code"] == "diverged" and "learning_rate" in run["error"]["message"]


def test_running_run_progress_checkpoint_weights_and_cancel(live: Any) -> None:
    network_id, dataset_id = create_xor(live)
    body = run_body(network_id, dataset_id, epochs=LONG, history_every=100)
    run_id = live.post("/v1/runs", json=body).json()["id"]
    running = wait_for(live, run_id, lambda r: r["status"] == "running" and r["epoch"] > 0)
    assert running["started_at"] is not None and running["loss"] is not None
    assert live.delete(f"/v1/datasets/{dataset_id}").status_code == 409
    assert live.delete(f"/v1/networks/{network_id}").status_code == 409
    assert live.delete(f"/v1/networks/{network_id}?cascade=true").status_code == 409
    assert live.delete(f"/v1/runs/{run_id}").status_code == 409
    wait_for(
        live, run_id, lambda r: bool(live.get(f"/v1/runs/{r['id']}/checkpoints").json()["data"])
    )
    weights = live.get(f"/v1/runs/{run_id}/weights")
    assert weights.status_code == 200 and weights.json()["epoch"] > 0
    assert live.post(f"/v1/runs/{run_id}/predict", json={"X": XOR_X}).status_code == 200
    cancel = live.post(f"/v1/runs/{run_id}/cancel").json()
    assert cancel["status"] in ("running", "cancelled")
    done = wait_terminal(live, run_id, timeout=20)
    assert done["status"] == "cancelled" and done["stop_reason"] == "cancelled"
    assert done["epoch"] < LONG
    assert live.post(f"/v1/runs/{run_id}/cancel").json()["status"] == "cancelled"
    history = live.get(f"/v1/runs/{run_id}/history").json()["epoch"]
    assert history == sorted(set(history)) and history[-1] == done["epoch"]
    assert live.get(f"/v1/runs/{run_id}/weights").json()["epoch"] == done["epoch"]
    # Issue 13: the dataset is deleted with its runs only when asked.
    assert live.delete(f"/v1/datasets/{dataset_id}").status_code == 409
    assert live.delete(f"/v1/datasets/{dataset_id}?cascade=true").status_code == 204
    assert live.get(f"/v1/runs/{run_id}").status_code == 404


def test_runs_wait_in_queue_for_a_free_worker(live: Any) -> None:
    network_id, dataset_id = create_xor(live)
    first = live.post("/v1/runs", json=run_body(network_id, dataset_id, epochs=LONG)).json()["id"]
    wait_for(live, first, lambda r: r["status"] == "running")
    second = live.post("/v1/runs", json=run_body(network_id, dataset_id, epochs=50)).json()["id"]
    assert live.get(f"/v1/runs/{second}").json()["status"] == "queued"
    live.post(f"/v1/runs/{first}/cancel")
    assert wait_terminal(live, second)["status"] == "succeeded"


def test_worker_crash_requeues_then_fails_after_max_attempts(make_client: Any) -> None:
    settings = {
        "workers": 1,
        "lease_seconds": 1.0,
        "max_attempts": 2,
        "auto_checkpoint_seconds": 0.2,
    }
    with make_client(**settings) as client:
        network_id, dataset_id = create_xor(client)
        body = run_body(network_id, dataset_id, epochs=LONG, history_every=50)
        run_id = client.post("/v1/runs", json=body).json()["id"]
        pool = client.app.state.executor
        for attempt in (1, 2):
            wait_for(
                client,
                run_id,
                lambda r, n=attempt: (
                    r["status"] == "running" and r["attempts"] == n and r["epoch"] > 0
                ),
            )
            if attempt == 1:
                wait_for(
                    client,
                    run_id,
                    lambda r: bool(client.get(f"/v1/runs/{r['id']}/checkpoints").json()["data"]),
                )
            pid = pool.processes[0].pid
            os.kill(pid, signal.SIGKILL)
        failed = wait_terminal(client, run_id, timeout=30)
        assert failed["status"] == "failed"
        assert failed["error"]["code"] == "worker_lost"
        history = client.get(f"/v1/runs/{run_id}/history").json()["epoch"]
        assert history == sorted(set(history))
        assert history == list(range(50, history[-1] + 1, 50))
