"""GET /v1/datasets/{id}/data pages and GET /v1/datasets/{id}/stats (issue 12)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def _dataset(client: Any, X: list[list[float]], y: list[Any]) -> str:
    response = client.post("/v1/datasets", json={"name": "d", "X": X, "y": y})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def test_pages_are_exact_slices(client: Any) -> None:
    X = [[float(i), float(i * i)] for i in range(250)]
    y = [i % 3 for i in range(250)]
    dataset_id = _dataset(client, X, y)
    first = client.get(f"/v1/datasets/{dataset_id}/data")
    assert first.status_code == 200
    assert first.json() == {"X": X[:100], "y": y[:100]}  # default 100 rows
    assert first.headers["x-has-more"] == "true" and first.headers["x-total-count"] == "250"
    last = client.get(f"/v1/datasets/{dataset_id}/data", params={"offset": 240, "limit": 20})
    assert last.json() == {"X": X[240:], "y": y[240:]}
    assert last.headers["x-has-more"] == "false"
    exact = client.get(f"/v1/datasets/{dataset_id}/data", params={"offset": 150, "limit": 100})
    assert exact.json() == {"X": X[150:], "y": y[150:]} and exact.headers["x-has-more"] == "false"
    past = client.get(f"/v1/datasets/{dataset_id}/data", params={"offset": 1000})
    assert past.json() == {"X": [], "y": []}
    pages: list[list[float]] = []
    offset = 0
    while True:
        page = client.get(f"/v1/datasets/{dataset_id}/data", params={"offset": offset, "limit": 64})
        pages.extend(page.json()["X"])
        offset += 64
        if page.headers["x-has-more"] == "false":
            break
    assert pages == X


def test_page_parameters_are_bounded(client: Any) -> None:
    dataset_id = _dataset(client, [[0.0]], [0])
    for params in ({"limit": 0}, {"limit": 50_001}, {"offset": -1}, {"limt": 5}):
        response = client.get(f"/v1/datasets/{dataset_id}/data", params=params)
        assert response.status_code == 422, params
        loc = response.json()["detail"][0]["loc"]
        assert loc[0] == "query" and loc[1] in params, (params, loc)
    assert client.get("/v1/datasets/ds_unknown/data").status_code == 404
    assert client.get("/v1/datasets/ds_unknown/stats").status_code == 404


def test_stats_are_exact_on_known_moments(client: Any) -> None:
    # Column a: 0..9 (mean 4.5, population variance 8.25); b: constant; c: -1/+1.
    X = [[float(i), 2.0, (-1.0) ** i] for i in range(10)]
    dataset_id = _dataset(client, X, [[float(i) / 2] for i in range(10)])
    stats = client.get(f"/v1/datasets/{dataset_id}/stats")
    assert stats.status_code == 200, stats.text
    body = stats.json()
    assert body["n_samples"] == 10 and body["class_counts"] is None
    a, b, c = body["features"]
    assert a == {
        "name": "x0",
        "count": 10,
        "missing": 0,
        "min": 0.0,
        "max": 9.0,
        "mean": 4.5,
        "std": math.sqrt(8.25),
    }
    assert (b["mean"], b["std"], b["min"], b["max"]) == (2.0, 0.0, 2.0, 2.0)
    assert (c["mean"], c["std"]) == (0.0, 1.0)
    (target,) = body["targets"]
    assert target["name"] == "y0" and target["mean"] == 2.25
    assert target["std"] == np.std([i / 2 for i in range(10)])


def test_stats_count_named_classes(client: Any) -> None:
    text = "f,kind\n" + "".join(
        f"{i},{name}\n" for i, name in enumerate(["cat"] * 3 + ["dog"] * 5 + ["ant"])
    )
    response = client.post(
        "/v1/datasets/csv", files={"file": ("pets.csv", text.encode())}, data={"target": "kind"}
    )
    assert response.status_code == 201, response.text
    dataset = response.json()
    body = client.get(f"/v1/datasets/{dataset['id']}/stats").json()
    assert body["class_counts"] == {"ant": 1, "cat": 3, "dog": 5}
    assert body["targets"][0]["name"] == "kind" and body["features"][0]["name"] == "f"
    labels = _dataset(client, [[0.0], [1.0], [2.0]], [0, 2, 2])
    assert client.get(f"/v1/datasets/{labels}/stats").json()["class_counts"] == {"0": 1, "2": 2}
