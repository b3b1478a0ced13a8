"""Runs without workers: creation, validation at creation, listing, cancel of queued runs."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import XOR_X, XOR_Y, create_xor, run_body


def test_create_is_202_with_location_and_normalized_config(client: Any) -> None:
    network_id, dataset_id = create_xor(client)
    response = client.post("/v1/runs", json=run_body(network_id, dataset_id, seed=None))
    assert response.status_code == 202, response.text
    run = response.json()
    assert response.headers["location"] == f"/v1/runs/{run['id']}"
    assert run["status"] == "queued" and run["epoch"] == 0 and run["epochs"] == 2000
    config = run["config"]
    assert isinstance(config["seed"], int)
    assert config["optimizer"]["nesterov"] is False
    assert config["network_id"] == network_id and config["dataset_id"] == dataset_id
    assert config["checkpoint_every"] is None and config["init_from"] is None
    assert run["error"] is None and run["started_at"] is None
    assert client.get(f"/v1/runs/{run['id']}").json() == run


def test_list_filters_and_pagination(client: Any) -> None:
    network_id, dataset_id = create_xor(client)
    other_network = client.post(
        "/v1/networks",
        json={"name": "o", "input_size": 2, "layers": [{"units": 1, "activation": "sigmoid"}]},
    ).json()["id"]
    ids = [
        client.post("/v1/runs", json=run_body(network_id, dataset_id)).json()["id"]
        for _ in range(3)
    ]
    other = client.post("/v1/runs", json=run_body(other_network, dataset_id)).json()["id"]
    client.post(f"/v1/runs/{ids[0]}/cancel")
    by_network = client.get("/v1/runs", params={"network_id": network_id}).json()["data"]
    assert [r["id"] for r in by_network] == ids[::-1]
    assert [
        r["id"] for r in client.get("/v1/runs", params={"status": "cancelled"}).json()["data"]
    ] == [ids[0]]
    queued = client.get("/v1/runs", params={"status": "queued", "dataset_id": dataset_id}).json()
    assert {r["id"] for r in queued["data"]} == {ids[1], ids[2], other}
    page = client.get("/v1/runs", params={"limit": 3}).json()
    assert page["has_more"] and page["next_after"] == page["data"][-1]["id"]
    rest = client.get("/v1/runs", params={"limit": 3, "after": page["next_after"]}).json()
    assert [r["id"] for r in rest["data"]] == [ids[0]] and not rest["has_more"]
    assert client.get("/v1/runs", params={"status": "done"}).status_code == 422


def test_cancel_queued_is_immediate_and_idempotent(client: Any) -> None:
    network_id, dataset_id = create_xor(client)
    run_id = client.post("/v1/runs", json=run_body(network_id, dataset_id)).json()["id"]
    first = client.post(f"/v1/runs/{run_id}/cancel")
    assert first.status_code == 200
    assert first.json()["status"] == "cancelled" and first.json()["stop_reason"] == "cancelled"
    assert first.json()["finished_at"] is not None
    second = client.post(f"/v1/runs/{run_id}/cancel").json()
    assert second == first.json()


def test_queued_run_has_no_weights_yet(client: Any) -> None:
    network_id, dataset_id = create_xor(client)
    run_id = client.post("/v1/runs", json=run_body(network_id, dataset_id)).json()["id"]
    assert client.get(f"/v1/runs/{run_id}/weights").status_code == 409
    response = client.post(f"/v1/runs/{run_id}/predict", json={"X": XOR_X})
    assert response.status_code == 409 and "no weights" in response.json()["detail"]
    assert client.get(f"/v1/runs/{run_id}/history").json() == {
        "epoch": [],
        "loss": [],
        "val_loss": [],
    }
    assert client.get(f"/v1/runs/{run_id}/checkpoints").json()["data"] == []


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/v1/runs/run_nope"),
        ("get", "/v1/runs/run_nope/history"),
        ("post", "/v1/runs/run_nope/cancel"),
        ("get", "/v1/runs/run_nope/checkpoints"),
        ("get", "/v1/runs/run_nope/weights"),
        ("get", "/v1/checkpoints/run_nope"),
    ],
)
def test_unknown_run_is_404(client: Any, method: str, path: str) -> None:
    response = getattr(client, method)(path)
    assert response.status_code == 404
    assert "run_nope" in response.json()["detail"]


def test_predict_unknown_run_is_404(client: Any) -> None:
    response = client.post("/v1/runs/run_nope/predict", json={"X": XOR_X})
    assert response.status_code == 404


def _softmax_network(client: Any) -> str:
    body = {
        "name": "soft",
        "input_size": 2,
        "layers": [{"units": 3, "activation": "relu"}, {"units": 2, "activation": "softmax"}],
    }
    network_id: str = client.post("/v1/networks", json=body).json()["id"]
    return network_id


def test_unknown_ids_in_body_are_404(client: Any) -> None:
    network_id, dataset_id = create_xor(client)
    cases = [
        (run_body("net_missing", dataset_id), "net_missing"),
        (run_body(network_id, "ds_missing"), "ds_missing"),
        (run_body(network_id, dataset_id, validation={"dataset_id": "ds_val"}), "ds_val"),
        (run_body(network_id, dataset_id, init_from="ckpt_missing"), "ckpt_missing"),
    ]
    for body, missing in cases:
        response = client.post("/v1/runs", json=body)
        assert response.status_code == 404, body
        assert missing in response.json()["detail"]
    assert client.get("/v1/runs").json()["data"] == []


BAD_RUNS: list[tuple[dict[str, Any], list[Any]]] = [
    ({"loss": "hinge"}, ["body", "loss"]),
    ({"reduction": "max"}, ["body", "reduction"]),
    (
        {"optimizer": {"name": "lbfgs"}},
        ["body", "optimizer", "name"],
    ),  # rmsprop exists since issue 11
    ({"optimizer": {"name": "sgd", "learning_rate": -1}}, ["body", "optimizer", "learning_rate"]),
    ({"optimizer": {"name": "sgd", "learning_rte": 0.1}}, ["body", "optimizer", "learning_rte"]),
    ({"optimizer": {"name": "sgd", "beta1": 0.9}}, ["body", "optimizer", "beta1"]),
    ({"epochs": 0}, ["body", "epochs"]),
    ({"epochs": "many"}, ["body", "epochs"]),
    ({"batch_size": 0}, ["body", "batch_size"]),
    ({"history_every": 0}, ["body", "history_every"]),
    ({"checkpoint_every": 0}, ["body", "checkpoint_every"]),
    ({"seed": -3}, ["body", "seed"]),
    ({"validation": {"fraction": 1.5}}, ["body", "validation", "fraction"]),
    ({"validation": {"fraction": 0.2, "dataset_id": "x"}}, ["body", "validation"]),
    ({"validation": {}}, ["body", "validation"]),
    ({"validation": {"fraction": 0.1}}, ["body", "validation", "fraction"]),
    ({"early_stopping": {"monitor": "val_loss"}}, ["body", "early_stopping", "monitor"]),
    ({"early_stopping": {"patience": 0}}, ["body", "early_stopping", "patience"]),
    ({"loss": "cross_entropy"}, ["body", "loss"]),
    ({"dtype": "float16"}, ["body", "dtype"]),
    ({"colour": "blue"}, ["body", "colour"]),
]


@pytest.mark.parametrize(("change", "loc"), BAD_RUNS)
def test_bad_run_is_422_and_writes_nothing(
    client: Any, change: dict[str, Any], loc: list[Any]
) -> None:
    network_id, dataset_id = create_xor(client)
    response = client.post("/v1/runs", json=run_body(network_id, dataset_id, **change))
    assert response.status_code == 422, response.text
    detail = response.json()["detail"][0]
    assert detail["loc"][: len(loc)] == loc, detail
    assert detail["msg"]
    assert client.get("/v1/runs").json()["data"] == []


def test_data_that_does_not_fit_the_network(client: Any) -> None:
    network_id, _ = create_xor(client)
    wide = client.post("/v1/datasets", json={"name": "w", "X": [[0, 1, 2]] * 2, "y": [[0]] * 2})
    two_targets = client.post("/v1/datasets", json={"name": "t", "X": XOR_X, "y": [[0, 1]] * 4})
    out_of_range = client.post("/v1/datasets", json={"name": "r", "X": XOR_X, "y": [[2]] * 4})
    labels = client.post("/v1/datasets", json={"name": "l", "X": XOR_X, "y": [0, 1, 2, 1]})
    cases = [
        (wide.json()["id"], "features", "mse"),
        (two_targets.json()["id"], "target column", "mse"),
        (out_of_range.json()["id"], "between 0 and 1", "binary_cross_entropy"),
    ]
    for dataset_id, words, loss in cases:
        response = client.post("/v1/runs", json=run_body(network_id, dataset_id, loss=loss))
        assert response.status_code == 422, response.text
        detail = response.json()["detail"][0]
        assert detail["loc"] == ["body", "dataset_id"]
        assert words in detail["msg"] and dataset_id in detail["msg"]
    softmax = _softmax_network(client)
    response = client.post(
        "/v1/runs", json=run_body(softmax, labels.json()["id"], loss="cross_entropy")
    )
    assert response.status_code == 422
    assert "out of range" in response.json()["detail"][0]["msg"]
    good_validation = client.post(
        "/v1/runs",
        json=run_body(
            network_id, labels.json()["id"], validation={"dataset_id": wide.json()["id"]}
        ),
    )
    assert good_validation.status_code == 422
    assert good_validation.json()["detail"][0]["loc"] == ["body", "validation", "dataset_id"]
    assert client.get("/v1/runs").json()["data"] == []


def test_labels_train_cross_entropy(client: Any) -> None:
    softmax = _softmax_network(client)
    labels = client.post("/v1/datasets", json={"name": "l", "X": XOR_X, "y": [0, 1, 1, 0]}).json()
    response = client.post("/v1/runs", json=run_body(softmax, labels["id"], loss="cross_entropy"))
    assert response.status_code == 202, response.text
    plain = client.post("/v1/datasets", json={"name": "p", "X": XOR_X, "y": XOR_Y}).json()
    network_id = client.post(
        "/v1/networks",
        json={"name": "n", "input_size": 2, "layers": [{"units": 1, "activation": "sigmoid"}]},
    ).json()["id"]
    response = client.post("/v1/runs", json=run_body(network_id, labels["id"], loss="mse"))
    assert response.status_code == 202, response.text
    assert client.post("/v1/runs", json=run_body(network_id, plain["id"])).status_code == 202


def test_history_query_bounds(client: Any) -> None:
    network_id, dataset_id = create_xor(client)
    run_id = client.post("/v1/runs", json=run_body(network_id, dataset_id)).json()["id"]
    for params in ({"max_points": 0}, {"limit": 0}, {"after_epoch": -1}, {"limit": "x"}):
        assert client.get(f"/v1/runs/{run_id}/history", params=params).status_code == 422


def test_predict_body_validation(client: Any) -> None:
    network_id, dataset_id = create_xor(client)
    run_id = client.post("/v1/runs", json=run_body(network_id, dataset_id)).json()["id"]
    for body in ({"X": []}, {"X": [[0, "a"]]}, {"x": [[0, 1]]}):
        assert client.post(f"/v1/runs/{run_id}/predict", json=body).status_code == 422
