"""Named and categorical columns, missing cells, standardize, raw-row predict (issue 12)."""

from __future__ import annotations

import gzip
import io
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from tests.conftest import wait_terminal

IRIS_CSV = Path(__file__).parents[2] / "app" / "datasets" / "builtin_data" / "iris.csv"
SPECIES = ["setosa", "versicolor", "virginica"]


def iris_text() -> str:
    """The shipped iris data with its species as names (``versicolor`` etc.)."""
    lines = IRIS_CSV.read_text().splitlines()
    rows = [line.rsplit(",", 1) for line in lines[1:]]
    return "\n".join([lines[0]] + [f"{x},{SPECIES[int(label)]}" for x, label in rows]) + "\n"


def _csv(client: Any, text: str | bytes, target: str = "y", **form: Any) -> Any:
    content = text.encode() if isinstance(text, str) else text
    return client.post(
        "/v1/datasets/csv",
        files={"file": ("d.csv", content, "text/csv")},
        data={"target": target, **form},
    )


def _file(client: Any, filename: str, content: bytes, **form: Any) -> Any:
    return client.post("/v1/datasets/file", files={"file": (filename, content)}, data=form)


def _data(client: Any, dataset_id: str) -> dict[str, Any]:
    response = client.get(f"/v1/datasets/{dataset_id}/data", params={"limit": 1000})
    assert response.status_code == 200, response.text
    return dict(response.json())


def _train(client: Any, dataset_id: str, inputs: int, outputs: int, **config: Any) -> str:
    network = client.post(
        "/v1/networks",
        json={
            "name": "n",
            "input_size": inputs,
            "layers": [
                {"units": 8, "activation": "tanh"},
                {"units": outputs, "activation": "softmax" if outputs > 1 else "identity"},
            ],
        },
    )
    assert network.status_code == 201, network.text
    body = {
        "network_id": network.json()["id"],
        "dataset_id": dataset_id,
        "loss": "cross_entropy" if outputs > 1 else "mse",
        "optimizer": {"name": "adam", "learning_rate": 0.05},
        "epochs": 150,
        "seed": 3,
        **config,
    }
    run = client.post("/v1/runs", json=body)
    assert run.status_code == 202, run.text
    finished = wait_terminal(client, run.json()["id"])
    assert finished["status"] == "succeeded", finished
    return str(finished["id"])


def test_iris_with_species_names_trains_and_predicts_names(live_client: Any) -> None:
    dataset = _csv(live_client, iris_text(), target="species", standardize="true").json()
    assert dataset["target_type"] == "labels" and dataset["classes"] == SPECIES
    assert dataset["feature_names"] == [
        "sepal_length_cm",
        "sepal_width_cm",
        "petal_length_cm",
        "petal_width_cm",
    ]
    assert dataset["target_names"] == ["species"]
    run_id = _train(live_client, dataset["id"], 4, 3)
    raw = [[5.1, 3.5, 1.4, 0.2], [6.4, 3.2, 4.5, 1.5], [7.7, 3.0, 6.1, 2.3]]
    response = live_client.post(f"/v1/runs/{run_id}/predict", json={"X": raw})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["labels"] == SPECIES
    assert len(answer["predictions"]) == 3 and len(answer["predictions"][0]) == 3


def test_categorical_feature_is_one_hot_and_predict_takes_names(live_client: Any) -> None:
    rows = ["color,size,y"] + [
        f"{color},{size},{value}"
        for color, value in (("red", 1.0), ("blue", -1.0), ("green", 0.0))
        for size in (1, 2, 3)
    ]
    dataset = _csv(live_client, "\n".join(rows) + "\n").json()
    assert dataset["feature_names"] == ["color=blue", "color=green", "color=red", "size"]
    assert dataset["n_features"] == 4 and dataset["target_type"] == "values"
    X = _data(live_client, dataset["id"])["X"]
    assert X[0] == [0.0, 0.0, 1.0, 1.0] and X[3] == [1.0, 0.0, 0.0, 1.0]
    run_id = _train(live_client, dataset["id"], 4, 1, loss="mse")
    response = live_client.post(f"/v1/runs/{run_id}/predict", json={"X": [["red", 2], ["blue", 2]]})
    assert response.status_code == 200, response.text
    red, blue = (row[0] for row in response.json()["predictions"])
    assert red > 0.5 and blue < -0.5
    assert "labels" not in response.json()
    unknown = live_client.post(f"/v1/runs/{run_id}/predict", json={"X": [["purple", 2]]})
    assert unknown.status_code == 422, unknown.text
    detail = unknown.json()["detail"][0]
    assert detail["loc"] == ["body", "X", 0, 0] and "'purple'" in detail["msg"]
    wrong = live_client.post(f"/v1/runs/{run_id}/predict", json={"X": [["red", "big"]]})
    assert wrong.status_code == 422 and wrong.json()["detail"][0]["loc"] == ["body", "X", 0, 1]
    short = live_client.post(f"/v1/runs/{run_id}/predict", json={"X": [["red"]]})
    assert short.status_code == 422 and short.json()["detail"][0]["loc"] == ["body", "X", 0]


MISSING_CSV = "a,c,y\n1,u,0\n,v,1\n3,,1\n5,v,0\n"


def test_missing_cells_default_is_422_naming_line_and_column(client: Any) -> None:
    response = _csv(client, MISSING_CSV)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"][0]
    assert detail["loc"] == ["body", "file"]
    assert "line 3, column 'a': missing value" in detail["msg"]


@pytest.mark.parametrize(
    ("missing", "expected_X", "expected_y"),
    [
        ("drop", [[1.0, 1.0, 0.0], [5.0, 0.0, 1.0]], [0, 0]),
        (
            "most_frequent",
            [[1.0, 1.0, 0.0], [1.0, 0.0, 1.0], [3.0, 0.0, 1.0], [5.0, 0.0, 1.0]],
            [0, 1, 1, 0],
        ),
    ],
)
def test_missing_options(
    client: Any, missing: str, expected_X: list[list[float]], expected_y: list[int]
) -> None:
    response = _csv(client, MISSING_CSV, missing=missing)
    assert response.status_code == 201, response.text
    dataset = response.json()
    assert dataset["feature_names"] == ["a", "c=u", "c=v"]
    assert _data(client, dataset["id"]) == {"X": expected_X, "y": expected_y}


def test_missing_mean_fills_numeric_columns_and_refuses_categorical(client: Any) -> None:
    text = "a,b,y\n1,10,0\n,20,1\n4,,1\n"
    dataset = _csv(client, text, missing="mean").json()
    assert _data(client, dataset["id"])["X"] == [[1.0, 10.0], [2.5, 20.0], [4.0, 15.0]]
    refused = _csv(client, MISSING_CSV, missing="mean")
    assert refused.status_code == 422
    assert "line 4, column 'c'" in refused.json()["detail"][0]["msg"]
    target = _csv(client, "a,y\n1,0\n2,\n", missing="mean")
    assert target.status_code == 422 and "missing target" in target.json()["detail"][0]["msg"]
    bad = _csv(client, MISSING_CSV, missing="zero")
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "missing"]


BAD_COLUMNS = [
    ("a,b,a,y\n1,2,3,0\n", "y", "duplicate"),
    ("a,y\n=1+1,0\n", "y", "formula"),
    ("a,y1,y2\n1,u,0\n", "y1,y2", "only target"),
    ("a,b,y\n1,x,0\n2,3,1\n", "y", "line 2, column 'b': 'x' is not a number"),
]


@pytest.mark.parametrize(("text", "target", "message"), BAD_COLUMNS)
def test_bad_columns_are_422(client: Any, text: str, target: str, message: str) -> None:
    response = _csv(client, text, target=target)
    assert response.status_code == 422, response.text
    assert message in response.json()["detail"][0]["msg"]


def test_too_many_categories_is_422(client: Any) -> None:
    text = "id,y\n" + "".join(f"id{i},0\n" for i in range(1100))
    response = _csv(client, text)
    assert response.status_code == 422
    assert "at most 1024" in response.json()["detail"][0]["msg"]


def test_csv_gz_equals_csv(client: Any) -> None:
    text = iris_text()
    plain = _csv(client, text, target="species").json()
    zipped = _file(client, "iris.csv.gz", gzip.compress(text.encode()), target="species")
    assert zipped.status_code == 201, zipped.text
    assert zipped.json()["sha256"] == plain["sha256"] and zipped.json()["name"] == "iris"
    assert zipped.json()["classes"] == SPECIES
    broken = _file(client, "x.csv.gz", b"not gzip", target="y")
    assert broken.status_code == 422 and broken.json()["detail"][0]["loc"] == ["body", "file"]


def test_json_names_and_their_errors(client: Any) -> None:
    body = {"name": "n", "X": [[0, 1], [1, 0]], "y": [0, 1], "feature_names": ["p", "q"]}
    created = client.post("/v1/datasets", json={**body, "target_names": ["t"]}).json()
    assert created["feature_names"] == ["p", "q"] and created["target_names"] == ["t"]
    default = client.post("/v1/datasets", json={"name": "d", "X": [[0, 1]], "y": [[1, 2]]})
    assert default.json()["feature_names"] == ["x0", "x1"]
    assert default.json()["target_names"] == ["y0", "y1"]
    for names, message in ((["p"], "has 1 names"), (["p", "p"], "given twice")):
        response = client.post("/v1/datasets", json={**body, "feature_names": names})
        assert response.status_code == 422, response.text
        detail = response.json()["detail"][0]
        assert detail["loc"] == ["body", "feature_names"] and message in detail["msg"]


def _forward(weights: list[dict[str, Any]], X: np.ndarray) -> np.ndarray:
    hidden = np.tanh(X @ np.asarray(weights[0]["weights"]) + np.asarray(weights[0]["bias"]))
    return hidden @ np.asarray(weights[1]["weights"]) + np.asarray(weights[1]["bias"])


def test_standardize_predicts_raw_rows_and_onnx_agrees(live_client: Any) -> None:
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.normal(100, 15, 64), rng.normal(-3, 0.01, 64), np.full(64, 7.0)])
    y = ((X[:, 0] - 100) / 15 - (X[:, 1] + 3) / 0.01).reshape(-1, 1)  # order 1
    dataset = live_client.post(
        "/v1/datasets",
        json={"name": "s", "X": X.tolist(), "y": y.tolist(), "standardize": True},
    ).json()
    transform = dataset["transform"]
    np.testing.assert_allclose(transform["mean"][:2], X[:, :2].mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(transform["scale"][:2], X[:, :2].std(axis=0), rtol=1e-12)
    assert transform["mean"][2] == 0.0 and transform["scale"][2] == 1.0  # zero variance
    stored = np.asarray(_data(live_client, dataset["id"])["X"])
    np.testing.assert_allclose(stored[:, :2].mean(axis=0), 0, atol=1e-9)
    np.testing.assert_allclose(stored[:, 2], 7.0)
    run_id = _train(live_client, dataset["id"], 3, 1, loss="mse")
    raw = rng.normal([100, -3, 7], [15, 0.01, 1], size=(16, 3))
    predicted = live_client.post(f"/v1/runs/{run_id}/predict", json={"X": raw.tolist()}).json()
    weights = live_client.get(f"/v1/runs/{run_id}/weights").json()["layers"]
    scaled = (raw - np.asarray(transform["mean"])) / np.asarray(transform["scale"])
    np.testing.assert_allclose(
        predicted["predictions"], _forward(weights, scaled), rtol=1e-10, atol=1e-12
    )
    assert np.ptp(np.asarray(predicted["predictions"])) > 1e-3
    model = onnx.load_from_string(
        live_client.get(f"/v1/runs/{run_id}/export", params={"format": "onnx"}).content
    )
    assert [node.op_type for node in model.graph.node][:2] == ["Sub", "Div"]
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (got,) = session.run(["Y"], {"X": raw})
    np.testing.assert_allclose(got, predicted["predictions"], rtol=0, atol=1e-6)


def test_npz_npy_parquet_arrow_equal_json(client: Any) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(5)
    X = rng.normal(size=(40, 3))
    y = rng.integers(0, 3, size=40)
    json_sha = client.post(
        "/v1/datasets", json={"name": "j", "X": X.tolist(), "y": y.tolist()}
    ).json()["sha256"]
    npz = io.BytesIO()
    np.savez_compressed(npz, X=X, y=y)
    npy = io.BytesIO()
    np.save(npy, np.column_stack([X, y]))
    table = pa.table({"a": X[:, 0], "b": X[:, 1], "c": X[:, 2], "label": y})
    parquet = io.BytesIO()
    pq.write_table(table, parquet)
    arrow = io.BytesIO()
    with pa.ipc.new_file(arrow, table.schema) as writer:
        writer.write_table(table)
    uploads = [
        ("d.npz", npz.getvalue(), {}),
        ("d.parquet", parquet.getvalue(), {"target": "label"}),
        ("d.arrow", arrow.getvalue(), {"target": "label"}),
    ]
    for filename, content, form in uploads:
        response = _file(client, filename, content, **form)
        assert response.status_code == 201, (filename, response.text)
        assert response.json()["sha256"] == json_sha, filename
    # .npy: one table; the float label column is one value column, as JSON floats are.
    response = _file(client, "d.npy", npy.getvalue(), target="-1")
    assert response.status_code == 201, response.text
    values_sha = client.post(
        "/v1/datasets", json={"name": "v", "X": X.tolist(), "y": [[float(v)] for v in y]}
    ).json()["sha256"]
    assert response.json()["sha256"] == values_sha
    assert response.json()["feature_names"] == ["c0", "c1", "c2"]
    assert parquet_names(client, parquet.getvalue()) == ["a", "b", "c"]


def parquet_names(client: Any, content: bytes) -> list[str]:
    return list(_file(client, "p.parquet", content, target="label").json()["feature_names"])


class Boom:
    """Unpickling this would run code."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (Path("/tmp/backprop-pickle-was-loaded"),))


def test_pickles_and_object_arrays_are_refused_unloaded(client: Any) -> None:
    import pickle

    marker = Path("/tmp/backprop-pickle-was-loaded")
    marker.unlink(missing_ok=True)
    objects = io.BytesIO()
    np.savez(objects, X=np.array([[Boom()]], dtype=object), y=np.array([0]))
    pickled = pickle.dumps(np.array([[1.0, 0.0]]))
    raw_pickle = pickle.dumps(Boom())
    cases = [
        ("o.npz", objects.getvalue(), {}, "dtype '|O'"),
        ("p.npy", pickled, {"target": "0"}, "pickles are never loaded"),
        ("b.npy", raw_pickle, {"target": "0"}, "pickles are never loaded"),
        ("s.npz", _npz(X=np.array([["a"]]), y=np.array([0])), {}, "only numeric"),
        ("m.npz", _npz(X=np.ones((2, 2))), {}, "no array(s) ['y']"),
        ("n.npz", _npz(X=np.array([[np.nan]]), y=np.array([1])), {}, "not finite"),
        ("d.txt", b"1,2", {"target": "y"}, "cannot tell the format"),
        ("d.npy", _npy(np.ones((3, 2))), {"target": "5"}, "out of range"),
        ("d.npy", _npy(np.ones((3, 2))), {}, "needs target"),
        ("d.npy", _npy(np.ones((3, 2)))[:-8], {"target": "0"}, "truncated"),
        ("d.npy", _npy(np.ones(3)), {"target": "0"}, "must be 2-D"),
        ("c.npz", _corrupt(_npz(X=np.ones((2, 2)), y=np.array([0, 1]))), {}, "cannot be read"),
        ("z.npz", b"PK not a zip", {}, "not an .npz file"),
        ("q.parquet", b"PAR1 nonsense", {"target": "y"}, "not a readable parquet file"),
        ("a.arrow", b"ARROW1 nonsense", {"target": "y"}, "not a readable arrow file"),
    ]
    for filename, content, form, message in cases:
        response = _file(client, filename, content, **form)
        assert response.status_code == 422, (filename, response.text)
        assert message in response.json()["detail"][0]["msg"], (filename, response.text)
    assert not marker.exists()


def _npz(**arrays: Any) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _corrupt(npz: bytes) -> bytes:
    """An .npz whose first member's data bytes are changed (its CRC no longer matches)."""
    start = npz.index(b"\x93NUMPY") + 200
    return npz[:start] + bytes(b ^ 0xFF for b in npz[start : start + 16]) + npz[start + 16 :]


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def test_parquet_nested_column_is_refused_and_strings_are_categorical(client: Any) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    def parquet(table: Any) -> bytes:
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        return buffer.getvalue()

    nested = pa.table({"a": [[1, 2], [3]], "y": [0, 1]})
    response = _file(client, "n.parquet", parquet(nested), target="y")
    assert response.status_code == 422
    assert "column 'a' has type list" in response.json()["detail"][0]["msg"]
    strings = pa.table({"c": ["b", None, "a"], "y": ["no", "yes", "no"]})
    refused = _file(client, "s.parquet", parquet(strings), target="y")
    assert refused.status_code == 422 and "row 1, column 'c'" in refused.json()["detail"][0]["msg"]
    created = _file(client, "s.parquet", parquet(strings), target="y", missing="drop").json()
    # The dropped row's class stays a class: categories are those of the file.
    assert created["feature_names"] == ["c=a", "c=b"] and created["classes"] == ["no", "yes"]
    assert _data(client, created["id"]) == {"X": [[0.0, 1.0], [1.0, 0.0]], "y": [0, 0]}


def test_large_numeric_csv_over_several_arrow_blocks() -> None:
    """The pyarrow path (batches of ARROW_BLOCK_BYTES) gives the exact values and labels,
    and a bad cell near the end still gets its line number from the exact path."""
    from app.datasets.parsing import ARROW_BLOCK_BYTES, parse_csv

    rng = np.random.default_rng(2)
    X = rng.normal(size=(80_000, 9)).round(4)
    y = rng.integers(0, 7, 80_000)
    buffer = io.StringIO()
    np.savetxt(buffer, np.column_stack([X, y]), fmt=["%.4f"] * 9 + ["%d"], delimiter=",")
    text = ",".join([*(f"f{i}" for i in range(9)), "y"]) + "\n" + buffer.getvalue()
    assert len(text) > ARROW_BLOCK_BYTES  # two batches at least
    parsed = parse_csv(text.encode(), ["y"])
    assert parsed.target_type == "labels" and parsed.feature_names == tuple(
        f"f{i}" for i in range(9)
    )
    assert np.array_equal(parsed.X, X) and parsed.y.tolist() == y.tolist()
    lines = text.splitlines()
    lines[79_990] = lines[79_990].replace(",", ",x", 1)
    with pytest.raises(Exception, match="line 79991, column 'f1': 'x"):
        parse_csv("\n".join(lines).encode(), ["y"])
