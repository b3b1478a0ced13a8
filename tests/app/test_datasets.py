"""Datasets: JSON and CSV uploads, reads, delete, and every bad input."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import XOR_X, XOR_Y, create_xor, run_body


def test_json_dataset_round_trip(client: Any) -> None:
    response = client.post("/v1/datasets", json={"name": "xor", "X": XOR_X, "y": XOR_Y})
    assert response.status_code == 201
    body = response.json()
    assert body["id"].startswith("ds_")
    assert (body["n_samples"], body["n_features"], body["n_targets"]) == (4, 2, 1)
    assert body["target_type"] == "values"
    assert len(body["sha256"]) == 64
    assert client.get(f"/v1/datasets/{body['id']}").json() == body
    data = client.get(f"/v1/datasets/{body['id']}/data").json()
    assert data == {"X": XOR_X, "y": XOR_Y}
    again = client.post("/v1/datasets", json={"name": "copy", "X": XOR_X, "y": XOR_Y}).json()
    assert again["sha256"] == body["sha256"]


def test_one_d_numbers_become_a_column(client: Any) -> None:
    body = client.post("/v1/datasets", json={"name": "d", "X": XOR_X, "y": [0.0, 1, 1, 0.5]})
    assert body.status_code == 201
    assert body.json()["target_type"] == "values"
    assert client.get(f"/v1/datasets/{body.json()['id']}/data").json()["y"] == [
        [0.0],
        [1.0],
        [1.0],
        [0.5],
    ]


def test_integer_labels_are_kept(client: Any) -> None:
    body = client.post("/v1/datasets", json={"name": "d", "X": XOR_X, "y": [0, 1, 2, 1]}).json()
    assert body["target_type"] == "labels" and body["n_targets"] == 1
    assert client.get(f"/v1/datasets/{body['id']}/data").json()["y"] == [0, 1, 2, 1]


def test_list_and_delete(client: Any) -> None:
    ids = [
        client.post("/v1/datasets", json={"name": f"d{i}", "X": XOR_X, "y": XOR_Y}).json()["id"]
        for i in range(3)
    ]
    listed = client.get("/v1/datasets", params={"limit": 2}).json()
    assert [d["id"] for d in listed["data"]] == ids[::-1][:2] and listed["has_more"]
    assert client.delete(f"/v1/datasets/{ids[0]}").status_code == 204
    assert client.get(f"/v1/datasets/{ids[0]}").status_code == 404
    assert client.get(f"/v1/datasets/{ids[0]}/data").status_code == 404
    assert client.delete(f"/v1/datasets/{ids[0]}").status_code == 404


def test_delete_conflicts_while_a_queued_run_uses_it(client: Any) -> None:
    network_id, dataset_id = create_xor(client)
    validation_id = client.post("/v1/datasets", json={"name": "v", "X": XOR_X, "y": XOR_Y}).json()[
        "id"
    ]
    run = client.post(
        "/v1/runs",
        json=run_body(network_id, dataset_id, validation={"dataset_id": validation_id}),
    ).json()
    for target in (dataset_id, validation_id):
        response = client.delete(f"/v1/datasets/{target}", params={"cascade": True})
        assert response.status_code == 409
        assert run["id"] in response.json()["detail"]
    client.post(f"/v1/runs/{run['id']}/cancel")
    # Issue 13: a dataset that runs used is not deleted under them (409 with the count)
    # unless ?cascade=true, which deletes those runs too.
    response = client.delete(f"/v1/datasets/{validation_id}")
    assert response.status_code == 409 and "used by 1 run;" in response.json()["detail"]
    assert client.get(f"/v1/runs/{run['id']}").status_code == 200
    assert client.delete(f"/v1/datasets/{dataset_id}?cascade=true").status_code == 204
    assert client.get(f"/v1/runs/{run['id']}").status_code == 404
    assert client.delete(f"/v1/datasets/{validation_id}").status_code == 204


BAD_JSON: list[tuple[Any, Any, list[Any], str]] = [
    ([[0, 0], [1]], [[0], [1]], ["body", "X", 1], "ragged"),
    ([[0, "a"]], [[0]], ["body", "X", 0, 1], ""),
    ([[0, True]], [[0]], ["body", "X", 0, 1], ""),
    ([["1", 0]], [[0]], ["body", "X", 0, 0], ""),
    ([], [], ["body", "X"], "at least one"),
    ([[]], [[0]], ["body", "X", 0], "at least one feature"),
    (XOR_X, [], ["body", "y"], "at least one"),
    (XOR_X, [[0], [1], [1]], ["body", "y"], "3 samples but X has 4"),
    (XOR_X, [[0], [1], [1, 2], [0]], ["body", "y", 2], "ragged"),
    (XOR_X, [0, 1, "x", 0], ["body", "y", 2], "number"),
    (XOR_X, [[0], [1], ["x"], [0]], ["body", "y", 2, 0], "number"),
    (XOR_X, [[0], 1, [1], [0]], ["body", "y", 1], "mixes"),
    (XOR_X, [True, False, True, False], ["body", "y", 0], "number"),
    ("nope", [[0]], ["body", "X"], ""),
]


@pytest.mark.parametrize(("X", "y", "loc", "msg"), BAD_JSON)
def test_bad_json_dataset(client: Any, X: Any, y: Any, loc: list[Any], msg: str) -> None:
    response = client.post("/v1/datasets", json={"name": "bad", "X": X, "y": y})
    assert response.status_code == 422, response.text
    detail = response.json()["detail"][0]
    assert detail["loc"] == loc, detail
    assert msg in detail["msg"]
    assert client.get("/v1/datasets").json()["data"] == []


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_values_rejected(client: Any, literal: str) -> None:
    for content in (
        f'{{"name": "n", "X": [[0, {literal}]], "y": [[0]]}}',
        f'{{"name": "n", "X": [[0, 1]], "y": [[{literal}]]}}',
        f'{{"name": "n", "X": [[0, 1]], "y": [{literal}]}}',
    ):
        response = client.post(
            "/v1/datasets", content=content, headers={"content-type": "application/json"}
        )
        assert response.status_code == 422, content
        assert "finite" in response.json()["detail"][0]["msg"]


def _csv(client: Any, text: str | bytes, target: str = "y", **data: str) -> Any:
    content = text.encode() if isinstance(text, str) else text
    return client.post(
        "/v1/datasets/csv",
        files={"file": ("xor.csv", content, "text/csv")},
        data={"target": target, **data},
    )


def test_csv_upload(client: Any) -> None:
    response = _csv(client, "a,b,y\n0,0,0.0\n0,1,1.0\n\n1,0,1.0\n1,1,0.0\n")
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["name"] == "xor" and body["target_type"] == "values"
    assert (body["n_samples"], body["n_features"], body["n_targets"]) == (4, 2, 1)
    data = client.get(f"/v1/datasets/{body['id']}/data").json()
    assert data == {"X": [[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]], "y": XOR_Y}


def test_csv_labels_and_multi_target(client: Any) -> None:
    labels = _csv(client, "y,a\n0,1.5\n2,2.5\n", name="labels").json()
    assert labels["target_type"] == "labels" and labels["name"] == "labels"
    assert client.get(f"/v1/datasets/{labels['id']}/data").json()["y"] == [0, 2]
    multi = _csv(client, "a,t1,t2\n1,0,1\n2,1,0\n", target="t1, t2").json()
    assert multi["n_targets"] == 2 and multi["n_features"] == 1


BAD_CSV: list[tuple[bytes | str, str, list[Any], str]] = [
    ("", "y", ["body", "file"], "header"),
    ("a,b,y\n", "y", ["body", "file"], "no data rows"),
    ("a,b,y\n0,0,0\n0,1\n", "y", ["body", "file"], "line 3: expected 3 fields, got 2"),
    ("a,b,y\n0,0,0\n0,x,1\n", "y", ["body", "file"], "line 3, column 'b'"),
    ("a,b,y\n0,0,0\n0,nan,1\n", "y", ["body", "file"], "line 3, column 'b': 'nan' is not finite"),
    ("a,b,y\n0,0,0\n", "z", ["body", "target"], "'z'"),
    ("a,b,y\n0,0,0\n", " ", ["body", "target"], "at least one"),
    ("y\n1\n", "y", ["body", "target"], "no features"),
    ("a,a,y\n0,0,0\n", "y", ["body", "file"], "duplicate"),
    (b"a,b,y\n\xff\xfe,0,0\n", "y", ["body", "file"], "UTF-8"),
    ('a,b,y\n0,"0,0\n', "y", ["body", "file"], "line"),
]


@pytest.mark.parametrize(("text", "target", "loc", "msg"), BAD_CSV)
def test_bad_csv(client: Any, text: bytes | str, target: str, loc: list[Any], msg: str) -> None:
    response = _csv(client, text, target=target)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"][0]
    assert detail["loc"] == loc
    assert msg in detail["msg"], detail["msg"]


def test_csv_missing_fields_is_422(client: Any) -> None:
    response = client.post("/v1/datasets/csv", data={"target": "y"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "file"]


def test_body_over_limit_is_413(make_client: Any) -> None:
    with make_client(max_body_bytes=2048) as small:
        big = {"name": "big", "X": [[0.5, 0.5]] * 400, "y": [[0]] * 400}
        response = small.post("/v1/datasets", json=big)
        assert response.status_code == 413
        assert "2048" in response.json()["detail"]
        assert (
            small.post("/v1/datasets", json={"name": "ok", "X": XOR_X, "y": XOR_Y}).status_code
            == 201
        )
