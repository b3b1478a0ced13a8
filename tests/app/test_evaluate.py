"""POST /v1/runs/{id}/evaluate and /v1/networks/{id}/evaluate (issue 13): the loss equals
a numpy computation from the returned weights, and the metrics and confusion matrix
equal scikit-learn's on the same predictions. Real app, SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sklearn import metrics as skm

from tests.conftest import XOR_X, XOR_Y, create_xor, run_body, wait_terminal

ACT: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "sigmoid": lambda z: 1 / (1 + np.exp(-z)),
    "tanh": np.tanh,
    "identity": lambda z: z,
}


def _forward(
    layers: list[dict[str, Any]], activations: list[str], X: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    out = np.asarray(X, dtype=np.float64)
    z = out
    for layer, name in zip(layers, activations, strict=True):
        z = out @ np.asarray(layer["weights"]) + np.asarray(layer["bias"])
        if name == "softmax":
            shifted = np.exp(z - z.max(axis=1, keepdims=True))
            out = shifted / shifted.sum(axis=1, keepdims=True)
        else:
            out = ACT[name](z)
    return z, out


def _network(client: TestClient, hidden: str, output: str, units: int) -> str:
    body = {
        "name": "net",
        "input_size": 2,
        "layers": [{"units": 8, "activation": hidden}, {"units": units, "activation": output}],
        "init": {"scheme": "xavier_uniform", "seed": 11},
    }
    network_id: str = client.post("/v1/networks", json=body).json()["id"]
    return network_id


def _moons(client: TestClient, n: int = 80, seed: int = 1) -> tuple[str, np.ndarray, np.ndarray]:
    body = {"builtin": "moons", "n_samples": n, "noise": 0.3, "seed": seed}
    dataset_id = client.post("/v1/datasets", json=body).json()["id"]
    data = client.get(f"/v1/datasets/{dataset_id}/data").json()
    return dataset_id, np.asarray(data["X"]), np.asarray(data["y"])


def _evaluate(client: TestClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post(path, json=body)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def _train(client: TestClient, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/v1/runs", json=body)
    assert response.status_code == 202, response.text
    run = wait_terminal(client, response.json()["id"])
    assert run["status"] == "succeeded", run
    return run


def test_regression_run_equals_numpy_and_scikit_learn(live_client: TestClient) -> None:
    network_id, dataset_id = create_xor(live_client)
    run = _train(live_client, run_body(network_id, dataset_id, epochs=300))
    weights = live_client.get(f"/v1/runs/{run['id']}/weights").json()
    X = np.random.default_rng(3).uniform(-1, 2, size=(37, 2))
    y = np.random.default_rng(4).uniform(0, 1, size=(37, 1))
    result = _evaluate(
        live_client, f"/v1/runs/{run['id']}/evaluate", {"X": X.tolist(), "y": y.tolist()}
    )
    _, predicted = _forward(weights["layers"], ["sigmoid", "sigmoid"], X)
    assert result["epoch"] == weights["epoch"] == 300 and result["n_samples"] == 37
    assert result["loss_name"] == "mse" and result["run_id"] == run["id"]
    assert result["loss"] == pytest.approx(float(np.mean((predicted - y) ** 2)), rel=1e-12)
    assert result["metrics"] == pytest.approx(
        {
            "mae": skm.mean_absolute_error(y, predicted),
            "rmse": float(np.sqrt(skm.mean_squared_error(y, predicted))),
            "r2": skm.r2_score(y, predicted),
        },
        rel=1e-12,
    )
    assert result["confusion_matrix"] is None and result["per_class"] is None
    # The training data through its id: the run's own final loss is of the last epoch
    # before its update, so compare with numpy again rather than with run["loss"].
    stored = _evaluate(live_client, f"/v1/runs/{run['id']}/evaluate", {"dataset_id": dataset_id})
    _, on_xor = _forward(weights["layers"], ["sigmoid", "sigmoid"], np.asarray(XOR_X))
    assert stored["dataset_id"] == dataset_id and stored["n_samples"] == 4
    assert stored["loss"] == pytest.approx(float(np.mean((on_xor - np.asarray(XOR_Y)) ** 2)))


def test_classification_run_equals_scikit_learn(live_client: TestClient) -> None:
    network_id = _network(live_client, "tanh", "softmax", 3)
    dataset_id, X, y = _moons(live_client)
    body = run_body(network_id, dataset_id, loss="cross_entropy", epochs=40)
    body["optimizer"] = {"name": "adam", "learning_rate": 0.01}
    run = _train(live_client, body)
    weights = live_client.get(f"/v1/runs/{run['id']}/weights").json()
    result = _evaluate(live_client, f"/v1/runs/{run['id']}/evaluate", {"dataset_id": dataset_id})
    _, probabilities = _forward(weights["layers"], ["tanh", "softmax"], X)
    labels = y.astype(int)
    expected_loss = float(-np.mean(np.log(probabilities[np.arange(len(y)), labels])))
    assert result["loss"] == pytest.approx(expected_loss, rel=1e-10)
    predicted = probabilities.argmax(axis=1)
    assert (
        result["confusion_matrix"]
        == skm.confusion_matrix(labels, predicted, labels=[0, 1, 2]).tolist()
    )
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        labels, predicted, labels=[0, 1, 2], zero_division=0
    )
    assert [c["class"] for c in result["per_class"]] == [0, 1, 2]
    for index, scores in enumerate(result["per_class"]):
        assert scores["precision"] == pytest.approx(precision[index])
        assert scores["recall"] == pytest.approx(recall[index])
        assert scores["f1"] == pytest.approx(f1[index])
        assert scores["support"] == support[index]
    assert result["metrics"] == pytest.approx(
        {
            "accuracy": skm.accuracy_score(labels, predicted),
            "precision": skm.precision_score(labels, predicted, average="macro", zero_division=0),
            "recall": skm.recall_score(labels, predicted, average="macro", zero_division=0),
            "f1": skm.f1_score(labels, predicted, average="macro", zero_division=0),
        }
    )


def test_binary_cross_entropy_per_output_matrices(live_client: TestClient) -> None:
    network_id = _network(live_client, "tanh", "sigmoid", 1)
    dataset_id, X, y = _moons(live_client)
    run = _train(
        live_client, run_body(network_id, dataset_id, loss="binary_cross_entropy", epochs=30)
    )
    weights = live_client.get(f"/v1/runs/{run['id']}/weights").json()
    result = _evaluate(live_client, f"/v1/runs/{run['id']}/evaluate", {"dataset_id": dataset_id})
    _, probabilities = _forward(weights["layers"], ["tanh", "sigmoid"], X)
    p = probabilities[:, 0]
    expected = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    assert result["loss"] == pytest.approx(float(expected), rel=1e-10)
    predicted = (p > 0.5).astype(int)
    # One [[tn, fp], [fn, tp]] per output: with one output, the binary confusion matrix.
    assert result["confusion_matrix"] == [
        skm.confusion_matrix(y.astype(int), predicted, labels=[0, 1]).tolist()
    ]
    assert result["per_class"][0]["precision"] == pytest.approx(
        skm.precision_score(y.astype(int), predicted, zero_division=0)
    )
    assert result["metrics"]["accuracy"] == pytest.approx(
        skm.accuracy_score(y.astype(int), predicted)
    )


def test_evaluate_at_a_checkpoint(live_client: TestClient) -> None:
    network_id, dataset_id = create_xor(live_client)
    run = _train(live_client, run_body(network_id, dataset_id, epochs=200, checkpoint_every=50))
    checkpoints = live_client.get(f"/v1/runs/{run['id']}/checkpoints").json()["data"]
    early = next(c for c in checkpoints if c["epoch"] == 50)
    layers = live_client.get(f"/v1/checkpoints/{early['id']}").json()["layers"]
    body = {"X": XOR_X, "y": XOR_Y, "checkpoint_id": early["id"]}
    result = _evaluate(live_client, f"/v1/runs/{run['id']}/evaluate", body)
    _, predicted = _forward(layers, ["sigmoid", "sigmoid"], np.asarray(XOR_X))
    assert result["epoch"] == 50 and result["checkpoint_id"] == early["id"]
    assert result["loss"] == pytest.approx(float(np.mean((predicted - np.asarray(XOR_Y)) ** 2)))
    other = _train(live_client, run_body(network_id, dataset_id, epochs=10))
    response = live_client.post(f"/v1/runs/{other['id']}/evaluate", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["body", "checkpoint_id"]
    body["checkpoint_id"] = "ckpt_nope"
    assert live_client.post(f"/v1/runs/{run['id']}/evaluate", json=body).status_code == 404


def test_network_evaluate_at_initial_weights_trains_nothing(client: TestClient) -> None:
    network_id = _network(client, "tanh", "softmax", 2)
    dataset_id, X, y = _moons(client)
    result = _evaluate(client, f"/v1/networks/{network_id}/evaluate", {"dataset_id": dataset_id})
    initial = client.get(f"/v1/networks/{network_id}/weights").json()
    _, probabilities = _forward(initial["layers"], ["tanh", "softmax"], X)
    labels = y.astype(int)
    expected = float(-np.mean(np.log(probabilities[np.arange(len(y)), labels])))
    assert result["epoch"] == 0 and result["run_id"] is None
    assert result["loss_name"] == "cross_entropy"  # suggested by the softmax output
    assert result["loss"] == pytest.approx(expected, rel=1e-12)
    assert (
        result["confusion_matrix"]
        == skm.confusion_matrix(labels, probabilities.argmax(axis=1), labels=[0, 1]).tolist()
    )
    assert client.get("/v1/runs").json()["data"] == []
    summed = _evaluate(
        client,
        f"/v1/networks/{network_id}/evaluate",
        {"dataset_id": dataset_id, "reduction": "sum"},
    )
    assert summed["loss"] == pytest.approx(expected * len(y), rel=1e-12)
    xor_net, _ = create_xor(client)
    mse = _evaluate(client, f"/v1/networks/{xor_net}/evaluate", {"X": XOR_X, "y": XOR_Y})
    assert mse["loss_name"] == "binary_cross_entropy" and mse["confusion_matrix"] is not None
    explicit = {"X": XOR_X, "y": XOR_Y, "loss": "mse"}
    assert _evaluate(client, f"/v1/networks/{xor_net}/evaluate", explicit)["loss_name"] == "mse"


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({}, ["body"]),
        ({"X": XOR_X}, ["body", "y"]),
        ({"y": XOR_Y}, ["body", "X"]),
        ({"X": [[0, 0, 0]], "y": [[0]]}, ["body", "X"]),
        ({"X": XOR_X, "y": [[0], [1]]}, ["body", "y"]),
        ({"X": [[0, 0], [1]], "y": [[0], [1]]}, ["body", "X", 1]),
        ({"X": XOR_X, "y": XOR_Y, "epochs": 3}, ["body", "epochs"]),
        ({"X": XOR_X, "y": XOR_Y, "loss": "cross_entropy"}, ["body", "loss"]),
        ({"X": XOR_X, "y": XOR_Y, "loss": "nope"}, ["body", "loss"]),
    ],
)
def test_bad_network_evaluate_bodies_are_422(
    client: TestClient, body: dict[str, Any], loc: list[Any]
) -> None:
    network_id, _ = create_xor(client)
    response = client.post(f"/v1/networks/{network_id}/evaluate", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == loc, response.text


def test_evaluate_errors(make_client: Callable[..., Any]) -> None:
    with make_client(max_predict_rows=300, max_request_memory=1 << 20) as client:
        network_id, dataset_id = create_xor(client)
        queued = client.post("/v1/runs", json=run_body(network_id, dataset_id)).json()["id"]
        response = client.post(f"/v1/runs/{queued}/evaluate", json={"X": XOR_X, "y": XOR_Y})
        assert response.status_code == 409 and "no weights" in response.json()["detail"]
        both = {"dataset_id": dataset_id, "X": XOR_X, "y": XOR_Y}
        response = client.post(f"/v1/networks/{network_id}/evaluate", json=both)
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["body", "dataset_id"]
        rows = {"X": [[0, 0]] * 301, "y": [[0]] * 301}
        response = client.post(f"/v1/networks/{network_id}/evaluate", json=rows)
        assert response.status_code == 422 and "BACKPROP_MAX_PREDICT_ROWS" in response.text
        for path in ("/v1/runs/run_nope/evaluate", "/v1/networks/net_nope/evaluate"):
            assert client.post(path, json={"X": XOR_X, "y": XOR_Y}).status_code == 404
        missing = {"dataset_id": "ds_nope"}
        assert client.post(f"/v1/networks/{network_id}/evaluate", json=missing).status_code == 404
        three = client.post(
            "/v1/datasets", json={"name": "3", "X": [[0, 0, 0]], "y": [[0]]}
        ).json()["id"]
        response = client.post(f"/v1/networks/{network_id}/evaluate", json={"dataset_id": three})
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["body", "dataset_id"]
        assert three in response.json()["detail"][0]["msg"]
        wide = client.post(
            "/v1/networks",
            json={"name": "w", "input_size": 2, "layers": [{"units": 300, "activation": "tanh"}]},
        ).json()["id"]
        body = {"X": [[0, 0]] * 250, "y": [[0] * 300] * 250}  # 2 x 250 x 300 x 8 > 1 MiB
        response = client.post(f"/v1/networks/{wide}/evaluate", json=body)
        assert response.status_code == 422 and "BACKPROP_MAX_REQUEST_MEMORY" in response.text
