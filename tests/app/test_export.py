"""GET /v1/runs/{id}/export: ONNX (run in onnxruntime), npz and JSON."""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import engine
from tests.conftest import create_xor, run_body, wait_terminal

ACTIVATIONS = ("identity", "sigmoid", "tanh", "relu", "leaky_relu", "softmax")
HIDDEN = ("identity", "sigmoid", "tanh", "relu", "leaky_relu")
DTYPES = ("float32", "float64")
N_CLASSES = 3


SEED = 6
"""An init under which no output is constant over the test inputs (checked by the tests)."""


def _network(output: str) -> dict[str, Any]:
    """Every hidden activation once (rotated, so each also feeds the output) and ``output``."""
    shift = ACTIVATIONS.index(output) % len(HIDDEN)
    hidden = HIDDEN[shift:] + HIDDEN[:shift]
    return {
        "name": f"all-{output}",
        "input_size": 2,
        "layers": [
            # One hidden layer without bias: the ONNX graph then has MatMul and no Add.
            {"units": 4, "activation": activation, "bias": index != 2}
            for index, activation in enumerate(hidden)
        ]
        + [{"units": N_CLASSES if output == "softmax" else 1, "activation": output}],
        "init": {"scheme": "xavier_uniform", "seed": SEED},
    }


def _datasets(client: Any) -> tuple[str, str]:
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, size=(24, 2))
    values = {"name": "values", "X": X.tolist(), "y": (0.5 + X[:, :1] * X[:, 1:]).tolist()}
    labels = {"name": "labels", "X": X.tolist(), "y": (np.arange(24) % N_CLASSES).tolist()}
    ids = []
    for body in (values, labels):
        response = client.post("/v1/datasets", json=body)
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    return ids[0], ids[1]


@pytest.fixture
def trained(live_client: Any) -> dict[tuple[str, str], str]:
    """A finished run for every (output activation, dtype); all hidden activations in each."""
    values_id, labels_id = _datasets(live_client)
    runs: dict[tuple[str, str], str] = {}
    for output in ACTIVATIONS:
        network = live_client.post("/v1/networks", json=_network(output)).json()
        for dtype in DTYPES:
            softmax = output == "softmax"
            body = run_body(
                network["id"],
                labels_id if softmax else values_id,
                loss="cross_entropy" if softmax else "mse",
                optimizer={"name": "sgd", "learning_rate": 0.05},
                epochs=40,
                dtype=dtype,
            )
            response = live_client.post("/v1/runs", json=body)
            assert response.status_code == 202, response.text
            runs[(output, dtype)] = response.json()["id"]
    for run_id in runs.values():
        assert wait_terminal(live_client, run_id)["status"] == "succeeded"
    return runs


def _export(client: Any, run_id: str, fmt: str) -> bytes:
    response = client.get(f"/v1/runs/{run_id}/export", params={"format": fmt})
    assert response.status_code == 200, response.text
    disposition = response.headers["content-disposition"]
    assert disposition.startswith("attachment; filename=") and disposition.endswith(f'.{fmt}"')
    assert run_id in disposition
    content: bytes = response.content
    return content


def test_exports_for_every_activation_and_dtype(
    live_client: Any, trained: dict[tuple[str, str], str]
) -> None:
    """One live server for both checks: training the 12 runs is most of the time."""
    _check_onnx_matches_predict(live_client, trained)
    _check_npz_and_json_round_trip_to_the_exact_weights(live_client, trained)
    run_id = trained[("sigmoid", "float64")]
    response = live_client.get(f"/v1/runs/{run_id}/export")  # onnx by default
    assert response.status_code == 200
    assert response.headers["content-disposition"] == (
        f'attachment; filename="{run_id}-epoch40.onnx"'
    )
    assert onnx.load_from_string(response.content).graph.output[0].name == "Y"


def _check_onnx_matches_predict(live_client: Any, trained: dict[tuple[str, str], str]) -> None:
    """The ONNX model in onnxruntime gives POST /predict's outputs to 1e-6."""
    X = np.random.default_rng(1).uniform(-2, 2, size=(64, 2))
    for (output, dtype), run_id in trained.items():
        response = live_client.get(f"/v1/runs/{run_id}/export", params={"format": "onnx"})
        assert response.headers["content-type"] == "application/octet-stream"
        model = onnx.load_from_string(_export(live_client, run_id, "onnx"))
        onnx.checker.check_model(model, full_check=True)
        ops = [node.op_type for node in model.graph.node]
        expected_op = {"identity": "Identity", "leaky_relu": "LeakyRelu", "relu": "Relu"}
        assert expected_op.get(output, output.capitalize()) == ops[-1]
        assert {"MatMul", "Add", "Sigmoid", "Tanh", "Relu", "LeakyRelu", "Identity"} <= set(ops)
        props = {p.key: p.value for p in model.metadata_props}
        weights = live_client.get(f"/v1/runs/{run_id}/weights").json()
        assert props["backprop.run_id"] == run_id and props["backprop.dtype"] == dtype
        assert props["backprop.epoch"] == str(weights["epoch"]) == "40"
        assert json.loads(props["backprop.spec"])["layers"][-1]["activation"] == output

        session = ort.InferenceSession(
            model.SerializeToString(), providers=["CPUExecutionProvider"]
        )
        (got,) = session.run(["Y"], {"X": X.astype(dtype)})
        assert got.dtype == np.dtype(dtype), (output, dtype)
        expected = live_client.post(f"/v1/runs/{run_id}/predict", json={"X": X.tolist()}).json()
        np.testing.assert_allclose(
            got, np.asarray(expected["predictions"]), rtol=0, atol=1e-6, err_msg=f"{output} {dtype}"
        )
        # The network really computes something: the comparison is not of constants.
        assert np.ptp(got) > 1e-3, (output, dtype)


def _check_npz_and_json_round_trip_to_the_exact_weights(
    live_client: Any, trained: dict[tuple[str, str], str]
) -> None:
    """Both hold exactly GET /weights' arrays, in the run's dtype, with the same header."""
    for (output, dtype), run_id in trained.items():
        weights = live_client.get(f"/v1/runs/{run_id}/weights").json()
        layers = weights["layers"]

        response = live_client.get(f"/v1/runs/{run_id}/export", params={"format": "npz"})
        assert response.headers["content-type"] == "application/zip"
        with np.load(io.BytesIO(_export(live_client, run_id, "npz")), allow_pickle=False) as npz:
            arrays = dict(npz)
        header = json.loads(arrays.pop("spec").tobytes().decode("utf-8"))
        assert header["run_id"] == run_id and header["epoch"] == weights["epoch"]
        assert header["dtype"] == dtype and header["format"] == "backprop.mlp"
        expected_names = set()
        for index, layer in enumerate(layers):
            W = arrays[f"layer{index}.weights"]
            assert W.dtype == np.dtype(dtype)
            assert np.array_equal(W, np.asarray(layer["weights"], dtype=dtype))
            assert np.array_equal(W.astype(np.float64), np.asarray(layer["weights"]))
            expected_names.add(f"layer{index}.weights")
            if layer["bias"] is None:
                assert f"layer{index}.bias" not in arrays
            else:
                assert np.array_equal(arrays[f"layer{index}.bias"], np.asarray(layer["bias"]))
                expected_names.add(f"layer{index}.bias")
        assert set(arrays) == expected_names

        response = live_client.get(f"/v1/runs/{run_id}/export", params={"format": "json"})
        assert response.headers["content-type"] == "application/json"
        document = json.loads(_export(live_client, run_id, "json"))
        assert document["layers"] == layers
        assert {k: v for k, v in document.items() if k != "layers"} == header
        # The JSON export rebuilds the network in the engine, with the service's outputs.
        net = engine.Network.from_spec({**document["spec"], "weights": document["layers"]})
        X = [[0.5, -0.25], [1.5, 2.0]]
        predicted = live_client.post(f"/v1/runs/{run_id}/predict", json={"X": X}).json()
        assert net.predict(np.asarray(X)).tolist() == predicted["predictions"], output


def test_export_errors(client: Any) -> None:
    for fmt in ("onnx", "npz", "json"):
        response = client.get("/v1/runs/run_nope/export", params={"format": fmt})
        assert response.status_code == 404 and "run_nope" in response.json()["detail"]
    network_id, dataset_id = create_xor(client)
    run_id = client.post("/v1/runs", json=run_body(network_id, dataset_id)).json()["id"]
    for fmt in ("onnx", "npz", "json"):
        response = client.get(f"/v1/runs/{run_id}/export", params={"format": fmt})
        assert response.status_code == 409 and "no weights" in response.json()["detail"]
    for fmt in ("xml", "ONNX", "", "pickle"):
        response = client.get(f"/v1/runs/{run_id}/export", params={"format": fmt})
        assert response.status_code == 422, fmt
        assert response.json()["detail"][0]["loc"] == ["query", "format"]


def test_export_is_documented(client: Any) -> None:
    operation = client.get("/openapi.json").json()["paths"]["/v1/runs/{run_id}/export"]["get"]
    assert set(operation["responses"]["200"]["content"]) == {
        "application/octet-stream",
        "application/zip",
        "application/json",
    }
    assert {"404", "409", "422"} <= set(operation["responses"])
    (fmt,) = [p for p in operation["parameters"] if p["name"] == "format"]
    assert fmt["schema"]["enum"] == ["onnx", "npz", "json"] and fmt["schema"]["default"] == "onnx"
