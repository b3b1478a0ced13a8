"""Tenant isolation: two API keys x every endpoint, ids in paths and in bodies.

Every operation of the OpenAPI schema that takes an id is called by the other
tenant and must answer exactly what an unknown id answers (404, same detail),
and must leave the owner's resources untouched.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import XOR_X, XOR_Y, create_xor, run_body, wait_terminal

KEYS = {"alpha": "alpha-key-0123456789", "beta": "beta-key-9876543210"}
ID_PARAM = re.compile(r"\{(network_id|dataset_id|run_id|checkpoint_id|sweep_id)\}")
UNKNOWN = {
    "network_id": "net_000000000000000000000000",
    "dataset_id": "ds_000000000000000000000000",
    "run_id": "run_000000000000000000000000",
    "checkpoint_id": "ckpt_000000000000000000000000",
    "sweep_id": "swp_000000000000000000000000",
}


class TenantClient:
    """The test client with one tenant's bearer token on every request."""

    def __init__(self, client: Any, key: str) -> None:
        self.client = client
        self.headers = {"Authorization": f"Bearer {key}"}

    def request(self, method: str, url: str, **kwargs: Any) -> Any:
        return self.client.request(method, url, headers=self.headers, **kwargs)

    def get(self, url: str, **kwargs: Any) -> Any:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> Any:
        return self.request("POST", url, **kwargs)


def _resources(tenant: TenantClient) -> dict[str, str]:
    """A trained run with checkpoints, its network and datasets."""
    network_id, dataset_id = create_xor(tenant)
    validation = tenant.post("/v1/datasets", json={"name": "val", "X": XOR_X, "y": XOR_Y})
    body = run_body(network_id, dataset_id, epochs=40, checkpoint_every=10)
    run = tenant.post("/v1/runs", json=body).json()
    finished = wait_terminal(tenant, run["id"])
    assert finished["status"] == "succeeded", finished
    checkpoints = tenant.get(f"/v1/runs/{run['id']}/checkpoints").json()["data"]
    sweep = tenant.post(
        "/v1/sweeps",
        json={
            "network_id": network_id,
            "dataset_id": dataset_id,
            "config": {"loss": "mse", "epochs": 5},
            "parameters": {"optimizer.learning_rate": {"choice": [0.5]}},
            "max_trials": 1,
            "parallelism": 1,
            "objective": {"metric": "loss"},
        },
    )
    assert sweep.status_code == 201, sweep.text
    return {
        "sweep_id": sweep.json()["id"],
        "network_id": network_id,
        "dataset_id": dataset_id,
        "validation_id": validation.json()["id"],
        "run_id": run["id"],
        "checkpoint_id": checkpoints[0]["id"],
    }


@pytest.fixture
def tenants(
    make_client: Any,
) -> Iterator[tuple[dict[str, TenantClient], dict[str, dict[str, str]]]]:
    with make_client(workers=1, api_keys=",".join(KEYS.values())) as client:
        clients = {name: TenantClient(client, key) for name, key in KEYS.items()}
        yield clients, {name: _resources(tenant) for name, tenant in clients.items()}


def _operations(tenant: TenantClient) -> list[tuple[str, str]]:
    paths = tenant.get("/openapi.json").json()["paths"]
    found = [
        (method.upper(), path)
        for path, operations in paths.items()
        for method in operations
        if ID_PARAM.search(path)
    ]
    assert len(found) >= 15, found
    return found


def _call(tenant: TenantClient, method: str, path: str, ids: dict[str, str]) -> Any:
    url = ID_PARAM.sub(lambda match: ids[match.group(1)], path)
    body: dict[str, Any] | None = None
    if url.endswith("/predict"):
        body = {"X": XOR_X}
    elif url.endswith("/evaluate"):
        body = {"X": XOR_X, "y": XOR_Y}
    elif method == "PATCH":
        body = {"tags": ["intruder"]}
    return tenant.request(method, url, json=body)


def _check_paths(
    clients: dict[str, TenantClient], resources: Any, owner: str, intruder: str
) -> None:
    mine, theirs = resources[owner], clients[intruder]
    operations = _operations(theirs)
    for method, path in operations:
        foreign = _call(theirs, method, path, mine)
        unknown = _call(theirs, method, path, UNKNOWN)
        assert foreign.status_code == 404, (method, path, foreign.text)
        assert unknown.status_code == 404, (method, path, unknown.text)
        # The same answer as for an id that never existed: nothing confirms it exists.
        foreign_detail = foreign.json()["detail"]
        for name, value in mine.items():
            foreign_detail = foreign_detail.replace(value, UNKNOWN.get(name, value))
        assert foreign_detail == unknown.json()["detail"], (method, path)
    # The owner still has everything (the intruder's DELETE and cancel did nothing).
    owner_client = clients[owner]
    for method, path in operations:
        if method == "GET":
            response = _call(owner_client, method, path, mine)
            assert response.status_code == 200, (method, path, response.text)
            if "/{" in path and path.count("/") == 3:  # the object itself: PATCH changed nothing
                assert "intruder" not in response.json().get("tags", []), (path, response.text)
    sweep = owner_client.get(f"/v1/sweeps/{mine['sweep_id']}").json()
    assert sweep["status"] != "cancelled", sweep  # the intruder's cancel did nothing


def _check_bodies(
    clients: dict[str, TenantClient], resources: Any, owner: str, intruder: str
) -> None:
    mine, own = resources[owner], resources[intruder]
    theirs = clients[intruder]
    cases = [
        ({"network_id": mine["network_id"]}, "network"),
        ({"dataset_id": mine["dataset_id"]}, "dataset"),
        ({"validation": {"dataset_id": mine["validation_id"]}}, "dataset"),
        ({"init_from": mine["checkpoint_id"]}, "checkpoint"),
    ]
    for override, kind in cases:
        body = {**run_body(own["network_id"], own["dataset_id"], epochs=5), **override}
        response = theirs.post("/v1/runs", json=body)
        assert response.status_code == 404, (override, response.text)
        assert response.json()["detail"].startswith(f"{kind} "), response.text
    for override, kind in cases[:2]:  # a sweep on another tenant's network or dataset
        body = {
            "network_id": own["network_id"],
            "dataset_id": own["dataset_id"],
            "config": {"loss": "mse", "epochs": 5},
            "parameters": {"optimizer.learning_rate": {"choice": [0.5]}},
            "objective": {"metric": "loss"},
            **override,
        }
        response = theirs.post("/v1/sweeps", json=body)
        assert response.status_code == 404, (override, response.text)
        assert response.json()["detail"].startswith(f"{kind} "), response.text
    # Filters by another tenant's ids find nothing.
    for query in (
        f"network_id={mine['network_id']}",
        f"dataset_id={mine['dataset_id']}",
        f"sweep_id={mine['sweep_id']}",
    ):
        assert theirs.get(f"/v1/runs?{query}").json()["data"] == []


def _check_lists(clients: dict[str, TenantClient], resources: Any) -> None:
    for name, tenant in clients.items():
        other = resources["beta" if name == "alpha" else "alpha"]
        listed = {
            item["id"]
            for url in ("/v1/networks", "/v1/datasets", "/v1/runs", "/v1/sweeps")
            for item in tenant.get(url).json()["data"]
        }
        mine = resources[name]
        assert {mine["network_id"], mine["dataset_id"], mine["run_id"], mine["sweep_id"]} <= listed
        assert not listed & set(other.values())


def test_two_tenants_by_every_endpoint(tenants: Any) -> None:
    """One setup (a trained run per tenant), every check in both directions."""
    clients, resources = tenants
    for owner, intruder in (("alpha", "beta"), ("beta", "alpha")):
        _check_paths(clients, resources, owner, intruder)
        _check_bodies(clients, resources, owner, intruder)
    _check_lists(clients, resources)


def test_without_keys_everything_is_one_tenant(make_client: Any) -> None:
    """Without keys everything belongs to one default tenant (and keys never leak into it)."""
    with make_client() as client:
        network_id, _ = create_xor(client)
        assert client.get(f"/v1/networks/{network_id}").status_code == 200
        assert "owner" not in client.get(f"/v1/networks/{network_id}").json()


def test_no_body_sets_service_fields(client: Any) -> None:
    network_id, dataset_id = create_xor(client)
    bodies = {
        "/v1/networks": {
            "name": "n",
            "input_size": 1,
            "layers": [{"units": 1, "activation": "identity"}],
        },
        "/v1/datasets": {"name": "d", "X": [[0]], "y": [[0]]},
        "/v1/runs": run_body(network_id, dataset_id, epochs=5),
    }
    for field in ("owner", "status", "epoch", "id", "created_at", "tenant"):
        for url, body in bodies.items():
            response = client.post(url, json={**body, field: "x"})
            assert response.status_code == 422, (url, response.text)
            assert response.json()["detail"][0]["loc"] == ["body", field]
