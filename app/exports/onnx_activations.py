"""ONNX nodes for each activation of a layer spec, in float32 or float64 graphs (opset 17).

The classic activations map to one operator each (``LeakyRelu`` takes the
layer's ``negative_slope``). onnxruntime has no float64 kernels for ``Erf``,
``Elu``, ``Selu``, ``Softplus`` or ``Gelu``, so the smooth activations are built
from elementwise operators it has for both types, as the engine computes them:

=============  ==========================================================================
activation     graph
=============  ==========================================================================
``gelu``       ``Mul(Mul(x, 0.5), Add(Erf(Mul(x, 1/sqrt 2)), 1))``; in float64 graphs the
               ``Erf`` runs in float32 between two ``Cast`` nodes (about 1e-7 absolute)
``gelu_tanh``  ``Mul(Mul(x, 0.5), Add(Tanh(Mul(Add(x, Mul(x*x*x, 0.044715)), sqrt(2/pi))), 1))``
``elu``        ``Where(Less(x, 0), Sub(Exp(x), 1), x)``
``selu``       ``Where(Less(x, 0), Mul(Sub(Exp(x), 1), scale * alpha), Mul(x, scale))``
``softplus``   ``Where(Greater(x, 20), x, Log(Add(Exp(x), 1)))``
``silu``       ``Mul(x, Sigmoid(x))``
=============  ==========================================================================
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from engine.smooth_activations import (
    GELU_BETA,
    GELU_KAPPA,
    SELU_NEGATIVE,
    SELU_SCALE,
    SOFTPLUS_THRESHOLD,
    SQRT1_2,
)

SINGLE_OPERATORS: dict[str, tuple[str, dict[str, Any]]] = {
    "identity": ("Identity", {}),
    "sigmoid": ("Sigmoid", {}),
    "tanh": ("Tanh", {}),
    "relu": ("Relu", {}),
    "softmax": ("Softmax", {"axis": -1}),
}


@dataclass
class GraphPart:
    """Nodes and constant initializers that compute one layer's activation."""

    prefix: str
    dtype: type[np.floating[Any]]
    nodes: list[onnx.NodeProto] = field(default_factory=list)
    initializers: list[onnx.TensorProto] = field(default_factory=list)
    count: int = 0

    def node(self, op_type: str, inputs: list[str], output: str | None = None, **attrs: Any) -> str:
        """Add ``op_type(inputs)``; returns its output name (a fresh one unless given)."""
        self.count += 1
        name = output or f"{self.prefix}.{op_type.lower()}{self.count}"
        self.nodes.append(
            helper.make_node(
                op_type, inputs, [name], name=f"{self.prefix}/{op_type}{self.count}", **attrs
            )
        )
        return name

    def constant(self, label: str, value: float) -> str:
        """A scalar initializer of the graph's dtype (broadcast by the elementwise ops)."""
        name = f"{self.prefix}.{label}"
        if all(init.name != name for init in self.initializers):
            self.initializers.append(
                numpy_helper.from_array(np.asarray(value, dtype=self.dtype), name=name)
            )
        return name


def _gelu(part: GraphPart, x: str, y: str) -> None:
    scaled = part.node("Mul", [x, part.constant("sqrt1_2", SQRT1_2)])
    if part.dtype is np.float64:  # onnxruntime's Erf is float32 only
        single = part.node("Cast", [scaled], to=TensorProto.FLOAT)
        erf = part.node("Cast", [part.node("Erf", [single])], to=TensorProto.DOUBLE)
    else:
        erf = part.node("Erf", [scaled])
    half = part.node("Mul", [x, part.constant("half", 0.5)])
    part.node("Mul", [half, part.node("Add", [erf, part.constant("one", 1.0)])], y)


def _gelu_tanh(part: GraphPart, x: str, y: str) -> None:
    cube = part.node("Mul", [part.node("Mul", [x, x]), x])
    inner = part.node("Add", [x, part.node("Mul", [cube, part.constant("kappa", GELU_KAPPA)])])
    tanh = part.node("Tanh", [part.node("Mul", [inner, part.constant("beta", GELU_BETA)])])
    half = part.node("Mul", [x, part.constant("half", 0.5)])
    part.node("Mul", [half, part.node("Add", [tanh, part.constant("one", 1.0)])], y)


def _expm1(part: GraphPart, x: str) -> str:
    return part.node("Sub", [part.node("Exp", [x]), part.constant("one", 1.0)])


def _elu(part: GraphPart, x: str, y: str) -> None:
    negative = part.node("Less", [x, part.constant("zero", 0.0)])
    part.node("Where", [negative, _expm1(part, x), x], y)


def _selu(part: GraphPart, x: str, y: str) -> None:
    negative = part.node("Less", [x, part.constant("zero", 0.0)])
    below = part.node("Mul", [_expm1(part, x), part.constant("scale_alpha", SELU_NEGATIVE)])
    above = part.node("Mul", [x, part.constant("scale", SELU_SCALE)])
    part.node("Where", [negative, below, above], y)


def _softplus(part: GraphPart, x: str, y: str) -> None:
    large = part.node("Greater", [x, part.constant("threshold", SOFTPLUS_THRESHOLD)])
    smooth = part.node(
        "Log", [part.node("Add", [part.node("Exp", [x]), part.constant("one", 1.0)])]
    )
    part.node("Where", [large, x, smooth], y)


def _silu(part: GraphPart, x: str, y: str) -> None:
    part.node("Mul", [x, part.node("Sigmoid", [x])], y)


COMPOSITES: dict[str, Callable[[GraphPart, str, str], None]] = {
    "gelu": _gelu,
    "gelu_tanh": _gelu_tanh,
    "elu": _elu,
    "selu": _selu,
    "softplus": _softplus,
    "silu": _silu,
}


def activation_nodes(
    layer: Mapping[str, Any], x: str, y: str, prefix: str, dtype: type[np.floating[Any]]
) -> GraphPart:
    """The nodes computing ``y = activation(x)`` for the layer spec ``layer``."""
    part = GraphPart(prefix=prefix, dtype=dtype)
    activation = str(layer["activation"])
    if activation == "leaky_relu":
        slope = float(layer.get("negative_slope", 0.01))
        part.nodes.append(
            helper.make_node("LeakyRelu", [x], [y], name=f"{prefix}/LeakyRelu", alpha=slope)
        )
    elif activation in SINGLE_OPERATORS:
        op_type, attributes = SINGLE_OPERATORS[activation]
        part.nodes.append(
            helper.make_node(op_type, [x], [y], name=f"{prefix}/{op_type}", **attributes)
        )
    else:
        COMPOSITES[activation](part, x, y)
    return part
