"""The ONNX export of every issue 11 activation (and of dropout layers) equals predict to 1e-6."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import engine
from app.exports.formats import to_onnx
from app.services.artifacts import TrainedModel

NEW = ["gelu", "gelu_tanh", "elu", "selu", "softplus", "silu", "leaky_relu"]


def network(activation: str) -> engine.Network:
    """``activation`` on both hidden layers (with dropout) and on the output."""
    layer: dict[str, Any] = {"activation": activation}
    if activation == "leaky_relu":
        layer["negative_slope"] = 0.2
    spec = {
        "input_size": 3,
        "layers": [
            {"units": 6, **layer, "dropout": 0.4},
            {"units": 5, **layer, "dropout": 0.1},
            {"units": 2, **layer},
        ],
        "init": {"seed": 1},
    }
    net = engine.Network.from_spec(spec)
    net.params[...] = np.random.default_rng(2).normal(scale=1.5, size=net.n_parameters)
    return net


def exported(net: engine.Network, dtype: str) -> onnx.ModelProto:
    model = TrainedModel(
        run_id="run_x",
        network_id="net_x",
        epoch=3,
        dtype=dtype,
        spec=net.spec,
        layers=[
            {k: None if v is None else v.astype(dtype) for k, v in layer.items()}
            for layer in net.get_weights()
        ],
    )
    return to_onnx(model)


@pytest.mark.parametrize("activation", NEW)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_onnx_export_of_new_activations_equals_predict(activation: str, dtype: str) -> None:
    net = network(activation)
    model = exported(net, dtype)
    onnx.checker.check_model(model, full_check=True)
    ops = {node.op_type for node in model.graph.node}
    assert "Dropout" not in ops  # dropout is training-only
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    X = np.random.default_rng(3).uniform(-4, 4, size=(200, 3))
    X[0] = [30.0, -30.0, 0.0]  # softplus's threshold and the tails of exp
    X[1] = [900.0, -900.0, 400.0]  # exp overflows here, in float64 too
    (got,) = session.run(["Y"], {"X": X.astype(dtype)})
    assert got.dtype == np.dtype(dtype)
    if dtype == "float32":
        net.astype(np.float32)
    expected = net.predict(X)
    assert np.isfinite(expected).all() and np.isfinite(got).all()
    for rows in (slice(0, 1), slice(1, 2), slice(2, None)):  # each to 1e-6 of its own scale
        scale = max(1.0, float(np.abs(expected[rows]).max()))
        np.testing.assert_allclose(got[rows], expected[rows], rtol=0, atol=1e-6 * scale)
    assert np.ptp(got[2:]) > 1e-2  # the network computes something


def test_leaky_relu_exports_its_negative_slope() -> None:
    model = exported(network("leaky_relu"), "float64")
    slopes = [
        attribute.f
        for node in model.graph.node
        if node.op_type == "LeakyRelu"
        for attribute in node.attribute
        if attribute.name == "alpha"
    ]
    assert slopes == pytest.approx([0.2, 0.2, 0.2])
