"""Each BACKPROP_MAX_* limit at its boundary: the limit accepted, one more rejected
with the documented status; CSV uploads that are tricky but never evaluated."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import XOR_NETWORK, XOR_X, XOR_Y, create_xor, run_body, wait_terminal

KEYS = "alpha-key-0123456789,beta-key-9876543210"


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _padded(body: dict[str, Any], size: int) -> bytes:
    """``body`` as JSON padded with trailing whitespace to exactly ``size`` bytes."""
    raw = json.dumps(body).encode()
    assert len(raw) <= size
    return raw + b" " * (size - len(raw))


def test_body_size_by_header_and_while_streaming(make_client: Any) -> None:
    limit = 4096
    body = {"name": "d", "X": [[0.5]] * 10, "y": [[1.0]] * 10}
    headers = {"Content-Type": "application/json"}
    with make_client(max_body_bytes=limit) as client:
        for size, expected in ((limit - 1, 201), (limit, 201), (limit + 1, 413)):
            response = client.post("/v1/datasets", content=_padded(body, size), headers=headers)
            assert response.status_code == expected, (size, response.text)

        def chunks(size: int) -> Iterator[bytes]:  # no Content-Length: counted while reading
            data = _padded(body, size)
            for start in range(0, len(data), 1000):
                yield data[start : start + 1000]

        assert (
            client.post("/v1/datasets", content=chunks(limit), headers=headers).status_code == 201
        )
        streamed = client.post("/v1/datasets", content=chunks(limit + 1), headers=headers)
        assert streamed.status_code == 413
        assert "4096 bytes" in streamed.json()["detail"]


def test_dataset_cells(make_client: Any) -> None:
    limit = 9  # X (n x 1) + y (n labels) = 2n cells; X (3 x 2) + y (3) = 9
    with make_client(max_dataset_cells=limit) as client:
        cases = [
            ({"X": [[0]] * 4, "y": [0] * 4}, 201),  # 8 = limit - 1
            ({"X": [[0, 1]] * 3, "y": [0] * 3}, 201),  # 9 = limit
            ({"X": [[0]] * 5, "y": [0] * 5}, 422),  # 10 = limit + 1
        ]
        for data, expected in cases:
            response = client.post("/v1/datasets", json={"name": "d", **data})
            assert response.status_code == expected, response.text
        assert "BACKPROP_MAX_DATASET_CELLS" in response.json()["detail"][0]["msg"]
        csv_ok = "a,b,y\n" + "0,1,0\n" * 3  # 9 cells
        csv_big = "a,b,y\n" + "0,1,0\n" * 4  # 12 cells: refused at line 5
        for text, expected in ((csv_ok, 201), (csv_big, 422)):
            response = client.post(
                "/v1/datasets/csv", files={"file": ("d.csv", text)}, data={"target": "y"}
            )
            assert response.status_code == expected, response.text
        assert "line 5" in response.json()["detail"][0]["msg"]


def test_network_parameters(make_client: Any) -> None:
    limit = 20  # one unit with a bias on k inputs: k + 1 parameters

    def network(inputs: int) -> dict[str, Any]:
        return {
            "name": "n",
            "input_size": inputs,
            "layers": [{"units": 1, "activation": "sigmoid"}],
        }

    with make_client(max_network_parameters=limit) as client:
        for inputs, expected in ((limit - 2, 201), (limit - 1, 201), (limit, 422)):
            response = client.post("/v1/networks", json=network(inputs))
            assert response.status_code == expected, response.text
        detail = response.json()["detail"][0]
        assert detail["loc"] == ["body", "layers"] and "21 parameters" in detail["msg"]


def test_epochs_times_samples(make_client: Any) -> None:
    limit = 1000
    with make_client(max_run_work=limit) as client:
        network_id = client.post("/v1/networks", json=XOR_NETWORK).json()["id"]
        one = client.post("/v1/datasets", json={"name": "one", "X": [[0, 1]], "y": [[1]]})
        xor = client.post("/v1/datasets", json={"name": "xor", "X": XOR_X, "y": XOR_Y})
        cases = [(one, limit - 1, 202), (one, limit, 202), (one, limit + 1, 422), (xor, 251, 422)]
        for dataset, epochs, expected in cases:
            body = run_body(network_id, dataset.json()["id"], epochs=epochs)
            response = client.post("/v1/runs", json=body)
            assert response.status_code == expected, response.text
        detail = response.json()["detail"][0]
        assert detail["loc"] == ["body", "epochs"] and "251 epochs x 4 samples" in detail["msg"]


def test_predict_rows_and_history_page(make_client: Any) -> None:
    with make_client(workers=1, max_predict_rows=5, max_history_points=10) as client:
        network_id, dataset_id = create_xor(client)
        run = client.post("/v1/runs", json=run_body(network_id, dataset_id, epochs=25)).json()
        assert wait_terminal(client, run["id"])["status"] == "succeeded"
        predict = f"/v1/runs/{run['id']}/predict"
        for rows, expected in ((4, 200), (5, 200), (6, 422)):
            response = client.post(predict, json={"X": [[0, 1]] * rows})
            assert response.status_code == expected, response.text
        assert "BACKPROP_MAX_PREDICT_ROWS" in response.json()["detail"][0]["msg"]

        history = f"/v1/runs/{run['id']}/history"
        for query, expected, points in (("limit=9", 200, 9), ("limit=10", 200, 10)):
            response = client.get(f"{history}?{query}")
            assert response.status_code == expected and len(response.json()["epoch"]) == points
        for query in ("limit=11", "max_points=11"):
            response = client.get(f"{history}?{query}")
            assert response.status_code == 422
            assert response.json()["detail"][0]["loc"] == ["query", query.split("=")[0]]
        # Without a limit: one capped page, then the rest after its last epoch.
        first = client.get(history)
        assert first.json()["epoch"] == list(range(1, 11)) and first.headers["x-has-more"] == "true"
        last = client.get(f"{history}?after_epoch=20")
        assert last.json()["epoch"] == list(range(21, 26))
        assert last.headers["x-has-more"] == "false"
        overview = client.get(f"{history}?max_points=10").json()["epoch"]
        assert len(overview) == 10 and overview[0] == 1 and overview[-1] == 25


@pytest.fixture
def keyed(make_client: Any) -> Iterator[Any]:
    with make_client(api_keys=KEYS, max_active_runs=2) as client:
        yield client


def test_active_runs_per_tenant(keyed: Any) -> None:
    alpha, beta = (_auth(key) for key in KEYS.split(","))
    network = keyed.post("/v1/networks", json=XOR_NETWORK, headers=alpha).json()["id"]
    data = {"name": "xor", "X": XOR_X, "y": XOR_Y}
    dataset = keyed.post("/v1/datasets", json=data, headers=alpha).json()["id"]
    body = run_body(network, dataset, epochs=10)
    runs = [keyed.post("/v1/runs", json=body, headers=alpha) for _ in range(2)]
    assert [r.status_code for r in runs] == [202, 202]
    refused = keyed.post("/v1/runs", json=body, headers=alpha)
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) > 0
    assert "BACKPROP_MAX_ACTIVE_RUNS" in refused.json()["detail"]
    # Another tenant is not affected.
    beta_net = keyed.post("/v1/networks", json=XOR_NETWORK, headers=beta).json()["id"]
    beta_ds = keyed.post("/v1/datasets", json=data, headers=beta).json()["id"]
    beta_run = keyed.post("/v1/runs", json=run_body(beta_net, beta_ds, epochs=10), headers=beta)
    assert beta_run.status_code == 202
    # A finished (cancelled) run frees its place.
    keyed.post(f"/v1/runs/{runs[0].json()['id']}/cancel", headers=alpha)
    assert keyed.post("/v1/runs", json=body, headers=alpha).status_code == 202


CSV_CASES = [
    (
        "formula",
        "a,y\n1,0\n=SUM(A1:A2),1\n",
        422,
        "line 3, column 'a': '=SUM(A1:A2)' is not a number",
    ),
    ("at-formula", "a,y\n@SUM(1),0\n", 422, "line 2"),
    ("python-underscore", "a,y\n1_000,0\n", 422, "'1_000' is not a number"),
    ("hex", "a,y\n0x10,0\n", 422, "'0x10' is not a number"),
    ("quoted-comma-number", 'a,y\n"1,5",0\n', 422, "line 2, column 'a': '1,5' is not a number"),
    ("non-utf8", b"a,y\n1,0\n2,1\n\xff,0\n", 422, "line 4: not UTF-8"),
    ("bom-non-utf8", b"\xef\xbb\xbfa,y\n1,\xfe\n", 422, "line 2: not UTF-8"),
]


@pytest.mark.parametrize(
    ("text", "status", "message"), [c[1:] for c in CSV_CASES], ids=[c[0] for c in CSV_CASES]
)
def test_csv_rejections_name_the_line(client: Any, text: Any, status: int, message: str) -> None:
    response = client.post(
        "/v1/datasets/csv", files={"file": ("d.csv", text)}, data={"target": "y"}
    )
    assert response.status_code == status, response.text
    assert message in response.json()["detail"][0]["msg"]


def test_csv_parses_bom_quotes_blank_lines_and_signs(client: Any) -> None:
    text = '\ufeff"x,1", y\n\n"+1.5",0\n\n  -2e-1 ,1\n   \n".5",1\n'.encode()
    response = client.post(
        "/v1/datasets/csv", files={"file": ("d.csv", text)}, data={"target": "y"}
    )
    assert response.status_code == 201, response.text
    dataset = response.json()
    assert (dataset["n_samples"], dataset["n_features"], dataset["target_type"]) == (3, 1, "labels")
    data = client.get(f"/v1/datasets/{dataset['id']}/data").json()
    assert data == {"X": [[1.5], [-0.2], [0.5]], "y": [0, 1, 1]}
