"""Networks: create, read, list, initial weights, delete, and every bad input."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import XOR_NETWORK, create_xor, run_body


def test_create_echoes_spec_and_draws_seed(client: Any) -> None:
    response = client.post("/v1/networks", json={**XOR_NETWORK, "init": None})
    assert response.status_code == 201
    body = response.json()
    assert response.headers["location"] == f"/v1/networks/{body['id']}"
    assert body["id"].startswith("net_")
    assert body["n_parameters"] == 2 * 3 + 3 + 3 * 1 + 1
    assert body["layers"][0] == {"units": 3, "activation": "sigmoid", "bias": True}
    assert isinstance(body["init"]["seed"], int)
    assert body["created_at"].endswith("Z")


def test_same_seed_same_initial_weights(client: Any) -> None:
    first = client.post("/v1/networks", json=XOR_NETWORK).json()["id"]
    second = client.post("/v1/networks", json=XOR_NETWORK).json()["id"]
    weights = [client.get(f"/v1/networks/{i}/weights").json() for i in (first, second)]
    assert weights[0] == weights[1]
    assert weights[0]["epoch"] == 0
    assert len(weights[0]["layers"][0]["weights"]) == 2


def test_explicit_weights_round_trip(client: Any) -> None:
    layers = [
        {"weights": [[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]], "bias": [0.0, 0.1, 0.2]},
        {"weights": [[1.0], [-1.0], [0.5]], "bias": None},
    ]
    response = client.post("/v1/networks", json={**XOR_NETWORK, "weights": layers})
    assert response.status_code == 201, response.text
    got = client.get(f"/v1/networks/{response.json()['id']}/weights").json()["layers"]
    assert got[0] == layers[0]
    assert got[1]["weights"] == layers[1]["weights"]
    assert got[1]["bias"] == [0.0]


def test_get_list_and_paginate(client: Any) -> None:
    ids = [client.post("/v1/networks", json=XOR_NETWORK).json()["id"] for _ in range(5)]
    assert client.get(f"/v1/networks/{ids[0]}").json()["id"] == ids[0]
    first = client.get("/v1/networks", params={"limit": 2}).json()
    assert [n["id"] for n in first["data"]] == ids[::-1][:2]
    assert first["has_more"] is True
    second = client.get("/v1/networks", params={"limit": 2, "after": first["next_after"]}).json()
    third = client.get("/v1/networks", params={"limit": 2, "after": second["next_after"]}).json()
    seen = [n["id"] for page in (first, second, third) for n in page["data"]]
    assert seen == ids[::-1]
    assert third["has_more"] is False and third["next_after"] is None
    assert len(client.get("/v1/networks").json()["data"]) == 5


@pytest.mark.parametrize("limit", [0, 101, -1])
def test_list_limit_bounds(client: Any, limit: int) -> None:
    response = client.get("/v1/networks", params={"limit": limit})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "limit"]


def test_delete(client: Any) -> None:
    network_id = client.post("/v1/networks", json=XOR_NETWORK).json()["id"]
    assert client.delete(f"/v1/networks/{network_id}").status_code == 204
    assert client.get(f"/v1/networks/{network_id}").status_code == 404
    assert client.delete(f"/v1/networks/{network_id}").status_code == 404


def test_delete_conflicts_with_queued_run_then_cascades(client: Any) -> None:
    # Issue 13: runs are deleted with their network only when asked (?cascade=true).
    network_id, dataset_id = create_xor(client)
    run_id = client.post("/v1/runs", json=run_body(network_id, dataset_id)).json()["id"]
    response = client.delete(f"/v1/networks/{network_id}")
    assert response.status_code == 409
    assert "used by 1 run;" in response.json()["detail"]
    response = client.delete(f"/v1/networks/{network_id}", params={"cascade": True})
    assert response.status_code == 409
    assert run_id in response.json()["detail"]
    client.post(f"/v1/runs/{run_id}/cancel")
    assert client.delete(f"/v1/networks/{network_id}").status_code == 409
    assert client.get(f"/v1/runs/{run_id}").status_code == 200
    assert client.delete(f"/v1/networks/{network_id}?cascade=true").status_code == 204
    assert client.get(f"/v1/runs/{run_id}").status_code == 404


def test_unknown_ids(client: Any) -> None:
    for path in ("/v1/networks/net_nope", "/v1/networks/net_nope/weights"):
        response = client.get(path)
        assert response.status_code == 404
        assert "net_nope" in response.json()["detail"]


def _layers(*acts: str) -> list[dict[str, Any]]:
    return [{"units": 2, "activation": a} for a in acts]


BAD_NETWORKS: list[tuple[dict[str, Any], list[Any]]] = [
    ({"layers": _layers("sigmoid", "nope")}, ["body", "layers", 1, "activation"]),
    ({"layers": _layers("softmax", "sigmoid")}, ["body", "layers", 0, "activation"]),
    ({"layers": []}, ["body", "layers"]),
    ({"layers": [{"units": 0, "activation": "relu"}]}, ["body", "layers", 0, "units"]),
    ({"input_size": 0}, ["body", "input_size"]),
    ({"input_size": "two"}, ["body", "input_size"]),
    ({"init": {"scheme": "magic"}}, ["body", "init", "scheme"]),
    ({"init": {"seed": -1}}, ["body", "init", "seed"]),
    ({"layerz": []}, ["body", "layerz"]),
    ({"name": ""}, ["body", "name"]),
    ({"weights": [{"weights": [[1.0]], "bias": None}]}, ["body", "weights"]),
    (
        {"layers": [{"units": 100_000, "activation": "relu"}] * 3},
        ["body", "layers"],
    ),
]


@pytest.mark.parametrize(("change", "loc"), BAD_NETWORKS)
def test_bad_network_is_422_naming_the_field(
    client: Any, change: dict[str, Any], loc: list[Any]
) -> None:
    response = client.post("/v1/networks", json={**XOR_NETWORK, **change})
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert detail[0]["loc"][: len(loc)] == loc, detail
    assert detail[0]["msg"]
    assert client.get("/v1/networks").json()["data"] == []


def test_wrong_weight_shape_names_layer(client: Any) -> None:
    layers = [
        {"weights": [[0.1, 0.2], [0.4, 0.5]], "bias": [0.0, 0.1, 0.2]},
        {"weights": [[1.0], [-1.0], [0.5]], "bias": [0.0]},
    ]
    response = client.post("/v1/networks", json={**XOR_NETWORK, "weights": layers})
    assert response.status_code == 422
    loc = response.json()["detail"][0]["loc"]
    assert loc[:3] == ["body", "weights", 0]


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_weights_rejected(client: Any, literal: str) -> None:
    content = (
        '{"name": "x", "input_size": 1, "layers": [{"units": 1, "activation": "identity"}],'
        f' "weights": [{{"weights": [[{literal}]], "bias": [0]}}]}}'
    )
    response = client.post(
        "/v1/networks", content=content, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][:2] == ["body", "weights"]


def test_malformed_json_is_422(client: Any) -> None:
    response = client.post(
        "/v1/networks", content="{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
