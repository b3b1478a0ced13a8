"""``restore_best`` (issue 13): the run says which epoch its weights are from, and the
weights, the final checkpoint, predict and every export are that best epoch's, bit for
bit equal to the scheduled checkpoint of that epoch and labeled with it.
"""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from fastapi.testclient import TestClient

from tests.conftest import wait_terminal

NETWORK = {
    "name": "overfit",
    "input_size": 2,
    "layers": [
        {"units": 32, "activation": "tanh"},
        {"units": 32, "activation": "tanh"},
        {"units": 1, "activation": "sigmoid"},
    ],
    "init": {"scheme": "xavier_uniform", "seed": 3},
}


def _all_checkpoints(client: TestClient, run_id: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    after = None
    while True:
        params: dict[str, Any] = {"limit": 100}
        if after:
            params["after"] = after
        page = client.get(f"/v1/runs/{run_id}/checkpoints", params=params).json()
        found += page["data"]
        if not page["has_more"]:
            return found
        after = page["next_after"]


def _forward(layers: list[dict[str, Any]], X: np.ndarray) -> np.ndarray:
    out = X
    for index, layer in enumerate(layers):
        out = out @ np.asarray(layer["weights"]) + np.asarray(layer["bias"])
        out = 1 / (1 + np.exp(-out)) if index == len(layers) - 1 else np.tanh(out)
    return out


def _overfitting_run(client: TestClient) -> dict[str, Any]:
    network_id = client.post("/v1/networks", json=NETWORK).json()["id"]
    dataset = {"builtin": "moons", "n_samples": 60, "noise": 0.35, "seed": 4}
    dataset_id = client.post("/v1/datasets", json=dataset).json()["id"]
    body = {
        "network_id": network_id,
        "dataset_id": dataset_id,
        "loss": "mse",
        "optimizer": {"name": "adam", "learning_rate": 0.05},
        "epochs": 300,
        "validation": {"fraction": 0.4},
        "early_stopping": {"monitor": "val_loss", "patience": 40, "restore_best": True},
        "checkpoint_every": 1,
        "metrics": ["mae"],
        "seed": 5,
    }
    response = client.post("/v1/runs", json=body)
    assert response.status_code == 202, response.text
    run = wait_terminal(client, response.json()["id"])
    assert run["status"] == "succeeded", run
    return run


def test_restore_best_labels_and_serves_the_best_epoch(live_client: TestClient) -> None:
    run = _overfitting_run(live_client)
    run_id = run["id"]
    history = live_client.get(f"/v1/runs/{run_id}/history").json()
    val_loss = history["val_loss"]
    best_index = int(np.argmin(val_loss))
    best_epoch = history["epoch"][best_index]
    # The data overfits: the best epoch is well before the last one.
    assert run["epoch"] == history["epoch"][-1] >= best_epoch + 40
    assert run["best_epoch"] == best_epoch and run["best_loss"] == val_loss[best_index]
    # The run's own progress fields stay the last epoch's.
    assert run["val_loss"] == val_loss[-1] and run["loss"] == history["loss"][-1]

    weights = live_client.get(f"/v1/runs/{run_id}/weights").json()
    assert weights["epoch"] == best_epoch
    checkpoints = _all_checkpoints(live_client, run_id)
    scheduled = [c for c in checkpoints if c["kind"] == "scheduled" and c["epoch"] == best_epoch]
    finals = [c for c in checkpoints if c["kind"] == "final"]
    assert len(scheduled) == 1 and len(finals) == 1
    at_best = live_client.get(f"/v1/checkpoints/{scheduled[0]['id']}").json()
    final = live_client.get(f"/v1/checkpoints/{finals[0]['id']}").json()
    assert weights["layers"] == at_best["layers"]  # bit for bit (JSON floats round-trip)
    assert final["layers"] == at_best["layers"]
    assert final["epoch"] == best_epoch and final["val_loss"] == val_loss[best_index]
    last = [c for c in checkpoints if c["epoch"] == run["epoch"] and c["kind"] == "scheduled"]
    assert (
        last
        and live_client.get(f"/v1/checkpoints/{last[0]['id']}").json()["layers"]
        != (at_best["layers"])
    )

    X = np.random.default_rng(0).uniform(-1.5, 2.5, size=(17, 2))
    predicted = live_client.post(f"/v1/runs/{run_id}/predict", json={"X": X.tolist()}).json()
    assert predicted["epoch"] == best_epoch
    np.testing.assert_allclose(predicted["predictions"], _forward(at_best["layers"], X), rtol=1e-12)

    for fmt in ("onnx", "npz", "json"):
        response = live_client.get(f"/v1/runs/{run_id}/export", params={"format": fmt})
        assert response.status_code == 200, response.text
        disposition = response.headers["content-disposition"]
        assert disposition.endswith(f'{run_id}-epoch{best_epoch}.{fmt}"'), disposition
        if fmt == "json":
            document = json.loads(response.content)
            assert document["epoch"] == best_epoch and document["layers"] == at_best["layers"]
        if fmt == "npz":
            arrays = np.load(io.BytesIO(response.content))
            for index, layer in enumerate(at_best["layers"]):
                assert np.array_equal(arrays[f"layer{index}.weights"], np.asarray(layer["weights"]))
        if fmt == "onnx":
            model = onnx.load_from_string(response.content)
            session = ort.InferenceSession(model.SerializeToString())
            (outputs,) = session.run(None, {"X": X})
            np.testing.assert_allclose(outputs, _forward(at_best["layers"], X), rtol=1e-9)
    listed = live_client.get("/v1/runs", params={"sort": "best_epoch"}).json()["data"]
    assert [item["best_epoch"] for item in listed] == [best_epoch]


def test_without_restore_best_the_weights_are_the_last_epochs(live_client: TestClient) -> None:
    network_id = live_client.post("/v1/networks", json=NETWORK).json()["id"]
    dataset = {"builtin": "moons", "n_samples": 40, "noise": 0.35, "seed": 4}
    dataset_id = live_client.post("/v1/datasets", json=dataset).json()["id"]
    body = {
        "network_id": network_id,
        "dataset_id": dataset_id,
        "optimizer": {"name": "adam", "learning_rate": 0.05},
        "epochs": 120,
        "validation": {"fraction": 0.4},
        "early_stopping": {"monitor": "val_loss", "patience": 1000, "restore_best": False},
        "seed": 5,
    }
    run = wait_terminal(live_client, live_client.post("/v1/runs", json=body).json()["id"])
    history = live_client.get(f"/v1/runs/{run['id']}/history").json()
    best_index = int(np.argmin(history["val_loss"]))
    assert run["best_epoch"] == history["epoch"][best_index] < run["epoch"] == 120
    assert live_client.get(f"/v1/runs/{run['id']}/weights").json()["epoch"] == 120
