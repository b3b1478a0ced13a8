"""GET /v1/runs/compare and GET /v1/plots/compare.png (issue 13). Real app, both databases."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.conftest import create_xor, run_body, wait_terminal


def _two_runs(client: TestClient) -> tuple[dict[str, Any], dict[str, Any], str]:
    network_id, dataset_id = create_xor(client)
    wider = client.post(
        "/v1/networks",
        json={
            "name": "wide",
            "input_size": 2,
            "layers": [
                {"units": 5, "activation": "sigmoid"},
                {"units": 1, "activation": "sigmoid"},
            ],
            "init": {"scheme": "xavier_uniform", "seed": 7},
        },
    ).json()["id"]
    first = run_body(network_id, dataset_id, epochs=120, name="slow", metrics=["mae"])
    second = run_body(wider, dataset_id, epochs=80, metrics=["mae"])
    second["optimizer"] = {"name": "sgd", "learning_rate": 0.9, "momentum": 0.9}
    runs = []
    for body in (first, second):
        run_id = client.post("/v1/runs", json=body).json()["id"]
        runs.append(wait_terminal(client, run_id))
    return runs[0], runs[1], dataset_id


def test_compare_marks_differing_fields_and_reports_final_and_best(
    live_client: TestClient,
) -> None:
    first, second, _ = _two_runs(live_client)
    response = live_client.get("/v1/runs/compare", params={"ids": f"{first['id']},{second['id']}"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert [run["id"] for run in body["runs"]] == [first["id"], second["id"]]
    fields = {field["field"]: field for field in body["fields"]}
    assert fields["optimizer.learning_rate"] == {
        "field": "optimizer.learning_rate",
        "values": [0.5, 0.9],
        "differs": True,
    }
    assert fields["epochs"]["values"] == [120, 80] and fields["epochs"]["differs"]
    assert fields["network.layers.0.units"]["values"] == [3, 5]
    assert fields["loss"] == {"field": "loss", "values": ["mse", "mse"], "differs": False}
    assert fields["seed"]["differs"] is False
    assert (
        set(body["differing"])
        == {field for field, item in fields.items() if item["differs"]}
        >= {"epochs", "optimizer.learning_rate", "network_id", "network.layers.0.units"}
    )
    for compared, run in zip(body["runs"], (first, second), strict=True):
        assert compared["final"] == {
            "epoch": run["epoch"],
            "loss": run["loss"],
            "val_loss": run["val_loss"],
            "metrics": run["metrics"],
        }
        history = live_client.get(f"/v1/runs/{run['id']}/history").json()
        index = history["epoch"].index(run["best_epoch"])
        assert compared["best"] == {
            "epoch": run["best_epoch"],
            "best_loss": run["best_loss"],
            "loss": history["loss"][index],
            "val_loss": None,
            "mae": history["mae"][index],
            "val_mae": None,
        }
        assert compared["best"]["loss"] == run["best_loss"]
    assert body["runs"][0]["name"] == "slow"
    repeated = live_client.get(
        "/v1/runs/compare", params=[("ids", first["id"]), ("ids", second["id"])]
    )
    assert repeated.json() == body


@pytest.mark.parametrize(
    "query",
    ["", "ids=", "ids=a,a", "ids=" + ",".join(f"run_{i}" for i in range(21)), "ids=" + "x" * 65],
)
def test_bad_compare_ids_are_422(client: TestClient, query: str) -> None:
    response = client.get(f"/v1/runs/compare?{query}")
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"][:2] == ["query", "ids"]


def test_compare_unknown_run_is_404(client: TestClient) -> None:
    network_id, dataset_id = create_xor(client)
    run_id = client.post("/v1/runs", json=run_body(network_id, dataset_id)).json()["id"]
    response = client.get(f"/v1/runs/compare?ids={run_id},run_nope")
    assert response.status_code == 404 and "run_nope" in response.json()["detail"]
    single = client.get(f"/v1/runs/compare?ids={run_id}").json()
    assert single["differing"] == [] and single["runs"][0]["best"]["epoch"] is None
    assert client.get(f"/v1/plots/compare.png?runs={run_id}").status_code == 409


def _image(response: Any) -> np.ndarray:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    return np.asarray(Image.open(io.BytesIO(response.content)).convert("RGB"))


def test_compare_plot_overlays_the_runs(make_client: Callable[..., Any]) -> None:
    with make_client(workers=1) as client:
        first, second, _ = _two_runs(client)
        runs = f"{first['id']},{second['id']}"
        both = _image(client.get(f"/v1/plots/compare.png?runs={runs}&metric=loss"))
        one = _image(client.get(f"/v1/plots/compare.png?runs={first['id']}&metric=loss"))
        assert both.shape == (480, 640, 3)
        assert not np.array_equal(both, one)  # the second run's line and legend entry
        logged = _image(client.get(f"/v1/plots/compare.png?runs={runs}&metric=loss&log=true"))
        assert not np.array_equal(both, logged)
        sized = client.get(f"/v1/plots/compare.png?runs={runs}&metric=mae&width=300&height=200")
        assert _image(sized).shape == (200, 300, 3)
        response = client.get(f"/v1/plots/compare.png?runs={runs}&metric=accuracy")
        assert response.status_code == 422 and "mae" in response.json()["detail"][0]["msg"]
        response = client.get(f"/v1/plots/compare.png?runs={runs}")  # val_loss: not recorded
        assert response.status_code == 422
        response = client.get(f"/v1/plots/compare.png?runs={runs}&metric=a-b")
        assert response.status_code == 422
        assert client.get(f"/v1/plots/compare.png?runs={runs},run_nope").status_code == 404
        assert client.get(f"/v1/plots/compare.png?runs={runs}&width=5").status_code == 422
