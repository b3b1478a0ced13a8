"""The service accepts every issue 11 field, shows it in the network and run objects, refuses
invalid combinations with a 422 naming the field, and a trained run records the lr column."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tests.conftest import run_body, wait_terminal

RNG = np.random.default_rng(0)
X = RNG.normal(size=(40, 3))
LABELS = (X[:, 0] + X[:, 1] > 0).astype(int) + (X[:, 2] > 0.7).astype(int)

NETWORK: dict[str, Any] = {
    "name": "breadth",
    "input_size": 3,
    "layers": [
        {"units": 8, "activation": "gelu", "dropout": 0.2},
        {"units": 6, "activation": "leaky_relu", "negative_slope": 0.1, "dropout": 0.1},
        {"units": 3, "activation": "softmax"},
    ],
    "init": {"scheme": "lecun_normal", "seed": 3},
}

RUN: dict[str, Any] = {
    "loss": "cross_entropy",
    "loss_options": {"label_smoothing": 0.05, "class_weights": [1.0, 2.0, 0.5]},
    "optimizer": {"name": "adamw", "learning_rate": 0.01, "amsgrad": True},
    "lr_schedule": {"name": "plateau", "monitor": "val_loss", "patience": 2, "factor": 0.5},
    "grad_clip": {"max_norm": 1.0, "norm_type": "inf"},
    "metrics": ["accuracy", "precision", "recall", "f1"],
    "epochs": 30,
    "batch_size": 8,
    "validation": {"fraction": 0.25},
}


def create(client: Any) -> tuple[str, str]:
    network = client.post("/v1/networks", json=NETWORK)
    assert network.status_code == 201, network.text
    dataset = client.post("/v1/datasets", json={"name": "d", "X": X.tolist(), "y": LABELS.tolist()})
    assert dataset.status_code == 201, dataset.text
    return network.json()["id"], dataset.json()["id"]


def test_networks_show_dropout_negative_slope_and_the_new_activations(client: Any) -> None:
    network_id, _ = create(client)
    body = client.get(f"/v1/networks/{network_id}").json()
    assert body["layers"] == [
        {"units": 8, "activation": "gelu", "bias": True, "dropout": 0.2},
        {
            "units": 6,
            "activation": "leaky_relu",
            "bias": True,
            "negative_slope": 0.1,
            "dropout": 0.1,
        },
        {"units": 3, "activation": "softmax", "bias": True},
    ]
    assert body["init"]["scheme"] == "lecun_normal"


def test_runs_accept_and_show_every_new_field(client: Any) -> None:
    network_id, dataset_id = create(client)
    response = client.post("/v1/runs", json=run_body(network_id, dataset_id, **RUN))
    assert response.status_code == 202, response.text
    config = response.json()["config"]
    assert config["optimizer"] == {
        "name": "adamw",
        "learning_rate": 0.01,
        "beta1": 0.9,
        "beta2": 0.999,
        "eps": 1e-8,
        "weight_decay": 0.01,
        "amsgrad": True,
    }
    assert config["lr_schedule"] == {
        "name": "plateau",
        "monitor": "val_loss",
        "mode": "min",
        "factor": 0.5,
        "patience": 2,
        "threshold": 1e-4,
        "threshold_mode": "rel",
        "cooldown": 0,
        "min_lr": 0.0,
    }
    assert config["grad_clip"] == {"max_norm": 1.0, "norm_type": "inf"}
    assert config["metrics"] == ["accuracy", "precision", "recall", "f1"]
    assert config["loss_options"] == {"label_smoothing": 0.05, "class_weights": [1.0, 2.0, 0.5]}


@pytest.mark.parametrize(
    ("changes", "loc", "words"),
    [
        (
            {"lr_schedule": {"name": "multistep", "milestones": [5, 50]}},
            ["body", "lr_schedule", "milestones", 1],
            "past",
        ),
        (
            {"loss_options": {"class_weights": [1.0, 2.0]}},
            ["body", "loss_options", "class_weights"],
            "3 output units",
        ),
        (
            {"loss_options": {"pos_weight": [1.0, 2.0, 3.0]}},
            ["body", "loss_options", "pos_weight"],
            "class_weights",
        ),
        (
            {"lr_schedule": {"name": "onecycle", "max_learning_rate": 0}},
            ["body", "lr_schedule", "max_learning_rate"],
            "greater than 0",
        ),
        ({"metrics": ["rmse"]}, ["body", "metrics", 0], "regression"),
        ({"grad_clip": {"max_norm": 1.0, "value": 0.5}}, ["body", "grad_clip"], "exactly one"),
        (
            {"optimizer": {"name": "rmsprop", "amsgrad": True}},
            ["body", "optimizer", "amsgrad"],
            "unknown",
        ),
        ({"lr_schedule": {"step_size": 3}}, ["body", "lr_schedule", "name"], "required"),
        ({"lr_schedule": {"name": "cosine", "tmax": 3}}, ["body", "lr_schedule", "tmax"], "Extra"),
    ],
)
def test_invalid_combinations_are_a_422_naming_the_field(
    client: Any, changes: dict[str, Any], loc: list[Any], words: str
) -> None:
    network_id, dataset_id = create(client)
    response = client.post("/v1/runs", json=run_body(network_id, dataset_id, **{**RUN, **changes}))
    assert response.status_code == 422, response.text
    detail = response.json()["detail"][0]
    assert detail["loc"] == loc, detail
    assert words in detail["msg"], detail
    assert client.get("/v1/runs").json()["data"] == []  # nothing half-written


@pytest.mark.parametrize(
    ("layer", "loc"),
    [
        ({"units": 3, "activation": "softmax", "dropout": 0.2}, ["body", "layers", 1, "dropout"]),
        (
            {"units": 3, "activation": "softmax", "negative_slope": 0.2},
            ["body", "layers", 1, "negative_slope"],
        ),
    ],
)
def test_invalid_layer_settings_are_a_422(
    client: Any, layer: dict[str, Any], loc: list[Any]
) -> None:
    body = {**NETWORK, "layers": [NETWORK["layers"][0], layer]}
    response = client.post("/v1/networks", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == loc


def test_a_trained_run_records_metrics_and_the_lr_column(live_client: Any) -> None:
    network_id, dataset_id = create(live_client)
    body = run_body(network_id, dataset_id, **RUN)
    run_id = live_client.post("/v1/runs", json=body).json()["id"]
    run = wait_terminal(live_client, run_id, timeout=120)
    assert run["status"] == "succeeded", run
    assert {"accuracy", "val_accuracy", "f1", "val_f1", "precision", "recall"} <= set(
        run["metrics"]
    )
    assert "lr" not in run["metrics"]  # the learning rate is a history column, not a metric
    history = live_client.get(f"/v1/runs/{run_id}/history").json()
    assert len(history["lr"]) == len(history["epoch"]) == 30
    assert history["lr"][0] == 0.01 and min(history["lr"]) < 0.01  # the plateau cut it
    assert len(history["val_f1"]) == 30


def test_the_docs_examples_of_the_new_fields_are_accepted(client: Any) -> None:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    network = client.post("/v1/networks", json=schemas["NetworkCreate"]["examples"][1])
    assert network.status_code == 201, network.text
    dataset = client.post("/v1/datasets", json={"builtin": "moons", "n_samples": 200})
    assert dataset.status_code == 201, dataset.text
    body = dict(schemas["RunCreate"]["examples"][1])
    body.update(network_id=network.json()["id"], dataset_id=dataset.json()["id"])
    response = client.post("/v1/runs", json=body)
    assert response.status_code == 202, response.text
    config = response.json()["config"]
    assert config["lr_schedule"]["name"] == "cosine" and config["grad_clip"]["max_norm"] == 1.0
