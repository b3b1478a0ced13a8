"""A run's trained model as a file: ONNX, NumPy ``.npz`` or JSON.

All three hold the weights ``GET /v1/runs/{id}/weights`` serves, in the run's
dtype, with the network spec and where they come from (run, network, epoch):

- ``json``: ``{"format": "backprop.mlp", "format_version": 1, "run_id",
  "network_id", "epoch", "dtype", "spec", "layers": [{"weights", "bias"}]}``.
  ``engine.Network.from_spec({**doc["spec"], "weights": doc["layers"]})``
  rebuilds the network.
- ``npz``: arrays ``layer0.weights``, ``layer0.bias`` (layers without a bias
  have none), ... and ``spec``: the JSON document above without ``layers``,
  UTF-8 encoded, as a uint8 array. No object arrays: ``np.load`` works with
  ``allow_pickle=False``.
- ``onnx``: input ``X`` of shape (N, input_size); per layer ``MatMul`` by the
  weights, ``Add`` of the bias, then the activation (``Identity``, ``Sigmoid``,
  ``Tanh``, ``Relu``, ``LeakyRelu`` with the layer's ``negative_slope``,
  ``Softmax`` over the last axis, and the smooth ones built from elementwise
  operators that onnxruntime implements for float32 and float64 alike: see
  :mod:`app.exports.onnx_activations`); output ``Y`` of shape (N, output_size). Dropout
  is a training-time operation and is not in the graph. Tensors are float32 or
  float64 (ONNX ``DOUBLE``) as the run trained. The JSON document without
  ``layers`` is in the model's metadata (``backprop.spec`` and friends). A run on a
  standardized dataset starts with ``Sub`` of the features' means and ``Div`` by their
  scales (``backprop.transform`` in the metadata), so the model takes raw numeric rows.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import onnx
from numpy.typing import NDArray
from onnx import TensorProto, helper, numpy_helper

from app.api.json_out import extend_object, file_dumps
from app.api.presenters import layers_json
from app.exports.onnx_activations import activation_nodes
from app.services.artifacts import TrainedModel

ExportFormat = Literal["onnx", "npz", "json"]
FORMAT_NAME = "backprop.mlp"
FORMAT_VERSION = 1
ONNX_OPSET = 17
"""Softmax over one axis needs opset 13; 17 is run by every onnxruntime since 1.11."""
ONNX_IR_VERSION = 8
"""The IR version of opset 17 (onnx 1.12): the newest runtimes and older ones load it."""
PRODUCER = "backprop"
PRODUCER_VERSION = "0.1.0"

MEDIA_TYPES: dict[str, str] = {
    "onnx": "application/octet-stream",
    "npz": "application/zip",
    "json": "application/json",
}


READ_BYTES = 64 * 1024
SPOOL_BYTES = 1024 * 1024


@dataclass(frozen=True)
class ExportFile:
    """A file to send: its bytes (in pieces), media type and suggested name."""

    chunks: Iterable[bytes]
    media_type: str
    filename: str


def _np_dtype(model: TrainedModel) -> type[np.floating[Any]]:
    return np.float32 if model.dtype == "float32" else np.float64


def header(model: TrainedModel) -> dict[str, Any]:
    """The JSON document that describes the weights (everything but the arrays)."""
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "run_id": model.run_id,
        "network_id": model.network_id,
        "epoch": model.epoch,
        "dtype": model.dtype,
        "spec": model.spec,
    }


def json_chunks(model: TrainedModel) -> Iterator[bytes]:
    """The JSON export: :func:`header` plus ``layers`` (non-finite values are null),
    written row chunk by row chunk (the bytes of one ``json.dumps`` of the document)."""
    return extend_object(
        file_dumps(header(model)), [("layers", layers_json(model.layers, file_dumps))], file_dumps
    )


def to_json(model: TrainedModel) -> bytes:
    """The JSON export in one piece."""
    return b"".join(json_chunks(model))


def _file_chunks(file: Any) -> Iterator[bytes]:
    with file:
        file.seek(0)
        while chunk := file.read(READ_BYTES):
            yield chunk


def npz_chunks(model: TrainedModel) -> Iterator[bytes]:
    """The ``.npz`` export, written to a spooled temporary file (NumPy writes each array
    in bounded pieces) and read back in pieces."""
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115 - closed by _file_chunks
    try:
        _write_npz(model, spool)
    except BaseException:
        spool.close()
        raise
    return _file_chunks(spool)


def to_npz(model: TrainedModel) -> bytes:
    """The ``.npz`` export (``np.savez``; no pickled objects) in one piece."""
    return b"".join(npz_chunks(model))


def _write_npz(model: TrainedModel, file: Any) -> None:
    dtype = _np_dtype(model)
    arrays: dict[str, NDArray[Any]] = {}
    for index, layer in enumerate(model.layers):
        arrays[f"layer{index}.weights"] = np.asarray(layer["weights"], dtype=dtype)
        if layer.get("bias") is not None:
            arrays[f"layer{index}.bias"] = np.asarray(layer["bias"], dtype=dtype)
    arrays["spec"] = np.frombuffer(json.dumps(header(model)).encode("utf-8"), dtype=np.uint8)
    savez: Callable[..., None] = np.savez  # its stubs type **kwds as if allow_pickle
    savez(file, **arrays)  # numeric arrays only: nothing is pickled


def _standardize_nodes(
    transform: dict[str, Any] | None, dtype: type[np.floating[Any]]
) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto], str]:
    """``(X - mean) / scale`` of the run's transform (nothing without standardize): the
    nodes, their constants and the name of the network's input."""
    if not transform or transform.get("mean") is None:
        return [], [], "X"
    initializers = [
        numpy_helper.from_array(np.asarray(transform["mean"], dtype=dtype), name="input.mean"),
        numpy_helper.from_array(np.asarray(transform["scale"], dtype=dtype), name="input.scale"),
    ]
    nodes = [
        helper.make_node("Sub", ["X", "input.mean"], ["input.centered"], name="input/Sub"),
        helper.make_node(
            "Div", ["input.centered", "input.scale"], ["input.scaled"], name="input/Div"
        ),
    ]
    return nodes, initializers, "input.scaled"


def to_onnx(model: TrainedModel) -> onnx.ModelProto:
    """The ONNX model: ``Y = act_n(... act_1(X @ W_1 + b_1) ... @ W_n + b_n)``."""
    dtype = _np_dtype(model)
    elem_type = TensorProto.FLOAT if dtype is np.float32 else TensorProto.DOUBLE
    layer_specs = model.spec["layers"]
    nodes, initializers, current = _standardize_nodes(model.transform, dtype)
    for index, (layer_spec, layer) in enumerate(zip(layer_specs, model.layers, strict=True)):
        prefix = f"layer{index}"
        initializers.append(
            numpy_helper.from_array(
                np.asarray(layer["weights"], dtype=dtype), name=f"{prefix}.weights"
            )
        )
        out = f"{prefix}.matmul"
        nodes.append(
            helper.make_node(
                "MatMul", [current, f"{prefix}.weights"], [out], name=f"{prefix}/MatMul"
            )
        )
        if layer.get("bias") is not None:
            initializers.append(
                numpy_helper.from_array(
                    np.asarray(layer["bias"], dtype=dtype), name=f"{prefix}.bias"
                )
            )
            nodes.append(
                helper.make_node(
                    "Add", [out, f"{prefix}.bias"], [f"{prefix}.z"], name=f"{prefix}/Add"
                )
            )
            out = f"{prefix}.z"
        result = "Y" if index == len(layer_specs) - 1 else f"{prefix}.a"
        graph_part = activation_nodes(layer_spec, out, result, prefix, dtype)
        nodes.extend(graph_part.nodes)
        initializers.extend(graph_part.initializers)
        current = result
    graph = helper.make_graph(
        nodes,
        "backprop_mlp",
        [helper.make_tensor_value_info("X", elem_type, ["N", int(model.spec["input_size"])])],
        [helper.make_tensor_value_info("Y", elem_type, ["N", int(layer_specs[-1]["units"])])],
        initializer=initializers,
        doc_string=f"Backprop run {model.run_id} at epoch {model.epoch}",
    )
    onnx_model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", ONNX_OPSET)],
        ir_version=ONNX_IR_VERSION,
        producer_name=PRODUCER,
        producer_version=PRODUCER_VERSION,
        doc_string="A multi-layer perceptron trained by Backprop.",
    )
    props = header(model)
    helper.set_model_props(
        onnx_model,
        {
            "backprop.format": f"{FORMAT_NAME}/{FORMAT_VERSION}",
            "backprop.run_id": model.run_id,
            "backprop.network_id": model.network_id,
            "backprop.epoch": str(model.epoch),
            "backprop.dtype": model.dtype,
            "backprop.spec": json.dumps(props["spec"]),
            "backprop.transform": json.dumps(model.transform),
        },
    )
    return onnx_model


def export(model: TrainedModel, fmt: ExportFormat) -> ExportFile:
    """Build the export file of ``model`` in format ``fmt``."""
    chunks: Iterable[bytes]
    if fmt == "onnx":
        chunks = [to_onnx(model).SerializeToString()]
    elif fmt == "npz":
        chunks = npz_chunks(model)
    else:
        chunks = json_chunks(model)
    return ExportFile(
        chunks=chunks,
        media_type=MEDIA_TYPES[fmt],
        filename=f"{model.run_id}-epoch{model.epoch}.{fmt}",
    )
