"""Names, tags and metadata of runs, networks and datasets (issue 13): round trips,
PATCH of only those fields, list filters, and every sort order of the run list with
exact cursor pagination. Every test runs on SQLite and PostgreSQL through the real app.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import XOR_NETWORK, XOR_X, XOR_Y, create_xor, run_body, wait_terminal

LABELS = {"tags": ["baseline", "xor"], "metadata": {"owner": "ana", "nested": {"k": [1, 2.5]}}}


def _loc(response: Any) -> list[list[Any]]:
    return [error["loc"] for error in response.json()["detail"]]


def test_labels_round_trip_on_create_get_and_list(client: TestClient) -> None:
    network = client.post("/v1/networks", json={**XOR_NETWORK, **LABELS}).json()
    dataset = client.post(
        "/v1/datasets", json={"name": "xor", "X": XOR_X, "y": XOR_Y, **LABELS}
    ).json()
    builtin = client.post(
        "/v1/datasets", json={"builtin": "moons", "n_samples": 20, "tags": ["moons"]}
    ).json()
    run = client.post(
        "/v1/runs", json={**run_body(network["id"], dataset["id"]), "name": "first", **LABELS}
    ).json()
    for kind, obj in (("networks", network), ("datasets", dataset), ("runs", run)):
        assert obj["tags"] == LABELS["tags"] and obj["metadata"] == LABELS["metadata"]
        fetched = client.get(f"/v1/{kind}/{obj['id']}").json()
        assert fetched["tags"] == LABELS["tags"] and fetched["metadata"] == LABELS["metadata"]
        listed = client.get(f"/v1/{kind}").json()["data"]
        assert [item["tags"] for item in listed if item["id"] == obj["id"]] == [LABELS["tags"]]
    assert builtin["tags"] == ["moons"] and builtin["metadata"] == {}
    assert run["name"] == "first" and run["sweep_id"] is None and run["best_epoch"] is None
    # Labels are not training config: re-POSTing the config makes the same run, unnamed.
    assert not {"name", "tags", "metadata"} & set(run["config"])
    plain = client.post("/v1/runs", json=run["config"]).json()
    assert plain["name"] is None and plain["tags"] == [] and plain["metadata"] == {}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("tags", ["a"] * 2),
        ("tags", [f"t{i}" for i in range(21)]),
        ("tags", ["x" * 65]),
        ("tags", [""]),
        ("tags", [" padded"]),
        ("tags", ["a,b"]),
        ("tags", ["line\nbreak"]),
        ("tags", "notalist"),
        ("metadata", {"blob": "x" * 16_400}),
        ("metadata", [1, 2]),
        ("name", ""),
        ("name", "n" * 201),
    ],
)
def test_bad_labels_are_422_at_the_field_and_store_nothing(
    client: TestClient, field: str, value: Any
) -> None:
    network_id, dataset_id = create_xor(client)
    before = len(client.get("/v1/runs").json()["data"])
    response = client.post("/v1/runs", json={**run_body(network_id, dataset_id), field: value})
    assert response.status_code == 422, response.text
    assert all(loc[:2] == ["body", field] for loc in _loc(response)), response.text
    assert len(client.get("/v1/runs").json()["data"]) == before
    patched = client.patch(f"/v1/networks/{network_id}", json={field: value})
    assert patched.status_code == 422 and _loc(patched)[0][:2] == ["body", field]


def test_metadata_at_the_size_limit_is_accepted(client: TestClient) -> None:
    padding = 16_384 - len('{"blob":""}')
    network = client.post("/v1/networks", json={**XOR_NETWORK, "metadata": {"blob": "x" * padding}})
    assert network.status_code == 201, network.text
    too_big = {"blob": "x" * (padding + 1)}
    response = client.patch(f"/v1/networks/{network.json()['id']}", json={"metadata": too_big})
    assert response.status_code == 422 and "16384" in response.json()["detail"][0]["msg"]


def test_non_finite_metadata_is_422(client: TestClient) -> None:
    response = client.post(
        "/v1/networks",
        content=b'{"name": "n", "input_size": 2, "layers": [{"units": 1, "activation": '
        b'"sigmoid"}], "metadata": {"x": NaN}}',
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 422, response.text


def test_patch_changes_only_the_given_labels(client: TestClient) -> None:
    network_id, dataset_id = create_xor(client)
    run = client.post("/v1/runs", json={**run_body(network_id, dataset_id), **LABELS}).json()
    for kind, obj_id in (("networks", network_id), ("datasets", dataset_id), ("runs", run["id"])):
        before = client.get(f"/v1/{kind}/{obj_id}").json()
        response = client.patch(f"/v1/{kind}/{obj_id}", json={"tags": ["new"]})
        assert response.status_code == 200, response.text
        after = response.json()
        assert after == {**before, "tags": ["new"]}
        assert client.get(f"/v1/{kind}/{obj_id}").json() == after
        renamed = client.patch(f"/v1/{kind}/{obj_id}", json={"name": "renamed", "metadata": {}})
        assert renamed.json() == {**after, "name": "renamed", "metadata": {}}
        assert client.patch(f"/v1/{kind}/{obj_id}", json={}).json() == renamed.json()
    assert client.patch(f"/v1/runs/{run['id']}", json={"name": None}).json()["name"] is None
    for kind, obj_id in (("networks", network_id), ("datasets", dataset_id)):
        response = client.patch(f"/v1/{kind}/{obj_id}", json={"name": None})
        assert response.status_code == 422 and _loc(response) == [["body", "name"]]
    assert client.get("/v1/runs?tag=new").json()["data"][0]["id"] == run["id"]
    assert client.get("/v1/runs?tag=baseline").json()["data"] == []


@pytest.mark.parametrize(
    ("kind", "field", "value"),
    [
        ("runs", "status", "succeeded"),
        ("runs", "epochs", 1),
        ("runs", "config", {}),
        ("runs", "network_id", "net_x"),
        ("runs", "sweep_id", "swp_x"),
        ("runs", "best_epoch", 3),
        ("networks", "layers", []),
        ("networks", "input_size", 3),
        ("datasets", "X", [[1, 2]]),
        ("datasets", "n_samples", 1),
    ],
)
def test_patch_cannot_touch_any_other_field(
    client: TestClient, kind: str, field: str, value: Any
) -> None:
    network_id, dataset_id = create_xor(client)
    run_id = client.post("/v1/runs", json=run_body(network_id, dataset_id)).json()["id"]
    obj_id = {"runs": run_id, "networks": network_id, "datasets": dataset_id}[kind]
    before = client.get(f"/v1/{kind}/{obj_id}").json()
    response = client.patch(f"/v1/{kind}/{obj_id}", json={"tags": ["t"], field: value})
    assert response.status_code == 422, response.text
    assert _loc(response) == [["body", field]]
    assert response.json()["detail"][0]["msg"] == "Extra inputs are not permitted"
    assert client.get(f"/v1/{kind}/{obj_id}").json() == before


def test_patch_of_unknown_or_other_tenants_objects_is_404(make_client: Callable[..., Any]) -> None:
    with make_client(api_keys="alice,bob") as client:
        alice = {"Authorization": "Bearer alice"}
        bob = {"Authorization": "Bearer bob"}
        network_id, _ = create_xor(_Authed(client, alice))
        for path in (f"/v1/networks/{network_id}", "/v1/runs/run_nope", "/v1/datasets/ds_nope"):
            response = client.patch(path, json={"tags": ["x"]}, headers=bob)
            assert response.status_code == 404, response.text
        assert client.get(f"/v1/networks/{network_id}", headers=alice).json()["tags"] == []


class _Authed:
    """``client`` with fixed headers (for the create_xor helper)."""

    def __init__(self, client: TestClient, headers: dict[str, str]) -> None:
        self.client, self.headers = client, headers

    def post(self, url: str, **kwargs: Any) -> Any:
        return self.client.post(url, headers=self.headers, **kwargs)


def _ids(client: TestClient, url: str) -> list[str]:
    return [item["id"] for item in client.get(url).json()["data"]]


def test_filters_by_tags_name_prefix_and_time(client: TestClient) -> None:
    network_id, dataset_id = create_xor(client)
    made = {}
    for name, tags in (
        ("a_1", ["x", "y"]),
        ("a%1", ["x"]),
        ("ab", ["y"]),
        ("b", ["x", "y", "z"]),
    ):
        body = {**run_body(network_id, dataset_id), "name": name, "tags": tags}
        made[name] = client.post("/v1/runs", json=body).json()
    newest_first = [made[name]["id"] for name in ("b", "ab", "a%1", "a_1")]
    assert _ids(client, "/v1/runs?tag=x") == [made[n]["id"] for n in ("b", "a%1", "a_1")]
    assert _ids(client, "/v1/runs?tag=x&tag=y") == [made[n]["id"] for n in ("b", "a_1")]
    assert _ids(client, "/v1/runs?tag=y&tag=x&tag=z") == [made["b"]["id"]]
    assert _ids(client, "/v1/runs?tag=x&tag=missing") == []
    # % and _ are literal characters of the prefix, not patterns.
    assert _ids(client, "/v1/runs?name_prefix=a_") == [made["a_1"]["id"]]
    assert _ids(client, "/v1/runs?name_prefix=a%25") == [made["a%1"]["id"]]
    assert _ids(client, "/v1/runs?name_prefix=a") == newest_first[1:]
    assert _ids(client, "/v1/runs?name_prefix=a&tag=y") == [made[n]["id"] for n in ("ab", "a_1")]
    times = [datetime.fromisoformat(made[n]["created_at"]) for n in ("a_1", "ab")]
    after, before = times[0], times[1]
    between = _ids(
        client,
        f"/v1/runs?created_after={after.isoformat()}&created_before={before.isoformat()}".replace(
            "+", "%2B"
        ),
    )
    assert between == [made["a%1"]["id"]]
    naive = (before - timedelta(0)).replace(tzinfo=None).isoformat()
    assert _ids(client, f"/v1/runs?created_before={naive}") == [
        made[n]["id"] for n in ("a%1", "a_1")
    ]
    assert _ids(client, "/v1/runs?sweep_id=swp_none") == []
    # The same filters on networks and datasets.
    client.patch(f"/v1/networks/{network_id}", json={"tags": ["net"], "name": "xor-net"})
    assert _ids(client, "/v1/networks?tag=net&name_prefix=xor-") == [network_id]
    assert _ids(client, "/v1/networks?tag=other") == []
    client.patch(f"/v1/datasets/{dataset_id}", json={"tags": ["data"]})
    assert _ids(client, "/v1/datasets?tag=data&name_prefix=xo") == [dataset_id]
    assert _ids(client, "/v1/datasets?name_prefix=zz") == []


@pytest.mark.parametrize(
    "query",
    [
        "sort=lossy",
        "sort=metric:",
        "sort=metric:bad-name",
        "sort=--loss",
        "after=%25%25notatoken&sort=loss",
        "created_after=2026-01-02T00:00:00Z&created_before=2026-01-01T00:00:00Z",
        "created_after=yesterday",
        "created_before=21385279",  # pydantic would read Unix seconds
        "created_after=1.5e9",
        "tag=" + "x" * 65,
        "&".join(f"tag=t{i}" for i in range(21)),
        "name_prefix=",
        "sort_by=loss",
    ],
)
def test_bad_list_queries_are_422(client: TestClient, query: str) -> None:
    response = client.get(f"/v1/runs?{query}")
    assert response.status_code == 422, response.text
    assert all(loc[0] == "query" for loc in _loc(response)), response.text


def _expected(runs: list[dict[str, Any]], key: str, descending: bool) -> list[str]:
    """The documented order: by value (nulls last either way), ties by id, same direction."""

    def value(run: dict[str, Any]) -> Any:
        if key == "created_at":
            return run["id"]
        if key.startswith("metric:"):
            return run["metrics"].get(key[len("metric:") :])
        return run[key]

    present = [run for run in runs if value(run) is not None]
    missing = [run for run in runs if value(run) is None]
    present.sort(key=lambda run: (value(run), run["id"]), reverse=descending)
    missing.sort(key=lambda run: run["id"], reverse=descending)
    return [run["id"] for run in present + missing]


def _all_pages(client: TestClient, sort: str, limit: int) -> list[str]:
    ids: list[str] = []
    after: str | None = None
    while True:
        params: dict[str, Any] = {"sort": sort, "limit": limit}
        if after is not None:
            params["after"] = after
        response = client.get("/v1/runs", params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        ids += [run["id"] for run in body["data"]]
        assert len(body["data"]) <= limit
        if not body["has_more"]:
            assert body["next_after"] is None
            return ids
        after = body["next_after"]


SORTS = [
    "-created_at",
    "created_at",
    "loss",
    "-loss",
    "val_loss",
    "-val_loss",
    "best_loss",
    "-best_loss",
    "best_epoch",
    "-best_epoch",
    "epoch",
    "-epoch",
    "name",
    "-name",
    "metric:mae",
    "-metric:mae",
    "metric:nothing",
]


def test_every_sort_order_pages_exactly_over_30_runs(make_client: Callable[..., Any]) -> None:
    with make_client(workers=2) as client:
        network_id, dataset_id = create_xor(client)
        made = []
        for index in range(24):
            # Pairs of identical configs: equal losses, so ties are broken by id.
            body = run_body(
                network_id,
                dataset_id,
                epochs=5 + 10 * (index // 2),
                metrics=["mae"],
                name=f"run-{index % 5}",
            )
            made.append(client.post("/v1/runs", json=body).json()["id"])
        for run_id in made:
            assert wait_terminal(client, run_id)["status"] == "succeeded"
    with make_client(workers=0) as client:  # six more that stay queued: no values yet
        for index in range(6):
            body = run_body(network_id, dataset_id, name=None if index % 2 else f"q{index}")
            client.post("/v1/runs", json=body)
        runs = [run for run in _all_runs(client)]
        assert len(runs) == 30
        losses = [run["loss"] for run in runs if run["loss"] is not None]
        assert len(losses) == 24 and len(set(losses)) == 12  # 12 distinct values, each twice
        assert all(math.isfinite(loss) for loss in losses)
        for sort in SORTS:
            descending = sort.startswith("-")
            expected = _expected(runs, sort.lstrip("-"), descending)
            for limit in (1, 7, 100):
                assert _all_pages(client, sort, limit) == expected, (sort, limit)
        default = client.get("/v1/runs", params={"limit": 5}).json()
        assert [run["id"] for run in default["data"]] == _expected(runs, "created_at", True)[:5]
        assert default["next_after"] == default["data"][-1]["id"]  # as before: the last id
        token = client.get("/v1/runs", params={"sort": "loss", "limit": 3}).json()["next_after"]
        other = client.get("/v1/runs", params={"sort": "-loss", "after": token})
        assert other.status_code == 422 and _loc(other) == [["query", "after"]]


def _all_runs(client: TestClient) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = []
    after = None
    while True:
        params: dict[str, Any] = {"limit": 100}
        if after:
            params["after"] = after
        body = client.get("/v1/runs", params=params).json()
        runs += body["data"]
        if not body["has_more"]:
            return runs
        after = body["next_after"]


def test_concurrent_patches_of_one_object_all_succeed(client: TestClient) -> None:
    from concurrent.futures import ThreadPoolExecutor

    network_id, _ = create_xor(client)
    bodies = [{"tags": ["same", f"t{i}"], "metadata": {"i": i}} for i in range(12)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        responses = list(
            pool.map(lambda body: client.patch(f"/v1/networks/{network_id}", json=body), bodies)
        )
    assert [response.status_code for response in responses] == [200] * 12
    final = client.get(f"/v1/networks/{network_id}").json()
    assert final["tags"] == ["same", f"t{final['metadata']['i']}"]
    assert _ids(client, f"/v1/networks?tag={final['tags'][1]}") == [network_id]
    assert _ids(client, "/v1/networks?tag=same") == [network_id]
    others = [f"t{i}" for i in range(12) if f"t{i}" != final["tags"][1]]
    assert all(_ids(client, f"/v1/networks?tag={tag}") == [] for tag in others)
