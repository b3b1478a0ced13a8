r"""Activation functions, each with the local backward rule it owns.

Every activation maps the pre-activation ``Z`` of shape (n_samples, units) to
``A`` of the same shape, writing into a caller-owned buffer so that nothing is
allocated per batch. ``backward`` turns ``dA`` (dL/dA) into ``dZ`` (dL/dZ) in
place of ``dA``'s buffer where it can.

The formulas are PyTorch's, written so that the classic tutorials' NumPy
expressions are reproduced to the bit:

================  ===============================  ===================================
key               forward                          backward
================  ===============================  ===================================
``identity``      :math:`A = Z`                    :math:`dZ = dA`
``sigmoid``       :math:`A = 1 / (1 + e^{-Z})`     :math:`dZ = dA \cdot A \cdot (1 - A)`
``tanh``          :math:`A = \tanh Z`              :math:`dZ = dA \cdot (1 - A^2)`
``relu``          :math:`A = \max(Z, 0)`           :math:`dZ = dA \cdot [Z > 0]`
``leaky_relu``    :math:`A = Z` or :math:`s Z`     :math:`dZ = dA` or :math:`s\,dA`
                  (``negative_slope`` s, 0.01)
``softmax``       :math:`A = e^{Z} / \sum e^{Z}`   :math:`dZ = A (dA - \sum dA \cdot A)`
================  ===============================  ===================================

and, in :mod:`engine.smooth_activations`, ``gelu`` (exact, with erf), ``gelu_tanh``,
``elu`` (alpha 1), ``selu``, ``softplus`` (beta 1, threshold 20) and ``silu``.

``1 / (1 + exp(-Z))`` overflows ``exp`` harmlessly to ``inf`` for very negative
``Z`` (giving exactly 0); training runs under ``np.errstate(over="ignore")`` so
that it is silent.
"""

from __future__ import annotations

import numpy as np

from engine.activation_base import Activation, Array
from engine.smooth_activations import ELU, GELU, SELU, GELUTanh, SiLU, Softplus

# Positional ``out`` arguments: keyword parsing is a measurable share of a tiny layer's cost.
negative, exp, add, subtract, multiply, divide = (
    np.negative,
    np.exp,
    np.add,
    np.subtract,
    np.multiply,
    np.divide,
)
greater, maximum = np.greater, np.maximum  # maximum: keyword out (positional is deprecated)

LEAKY_RELU_SLOPE = 0.01
"""Default negative slope of ``leaky_relu``, as ``torch.nn.LeakyReLU``'s."""


class Identity(Activation):
    """:math:`A = Z`."""

    name = "identity"
    is_identity = True

    def forward(self, Z: Array, out: Array) -> Array:
        return Z

    def backward(self, dA: Array, Z: Array, A: Array, work: Array) -> Array:
        return dA


class Sigmoid(Activation):
    """:math:`A = 1 / (1 + e^{-Z})`, exactly the tutorials' expression."""

    name = "sigmoid"

    def forward(self, Z: Array, out: Array) -> Array:
        negative(Z, out)
        exp(out, out)
        add(out, 1.0, out)
        return divide(1.0, out, out)

    def backward(self, dA: Array, Z: Array, A: Array, work: Array) -> Array:
        multiply(dA, A, dA)
        subtract(1.0, A, work)
        return multiply(dA, work, dA)


class Tanh(Activation):
    """:math:`A = \\tanh Z`."""

    name = "tanh"

    def forward(self, Z: Array, out: Array) -> Array:
        return np.tanh(Z, out=out)

    def backward(self, dA: Array, Z: Array, A: Array, work: Array) -> Array:
        multiply(A, A, work)
        subtract(1.0, work, work)
        return multiply(dA, work, dA)


class ReLU(Activation):
    """:math:`A = \\max(Z, 0)`; the derivative at 0 is 0, as PyTorch."""

    name = "relu"

    def forward(self, Z: Array, out: Array) -> Array:
        # The same maximum as with the scalar 0.0, but NumPy vectorizes only the
        # array-with-array loop: several times faster. ``out`` must not be ``Z``.
        out.fill(0.0)
        return maximum(Z, out, out=out)

    def backward(self, dA: Array, Z: Array, A: Array, work: Array) -> Array:
        greater(Z, 0.0, work)
        return multiply(dA, work, dA)


class LeakyReLU(Activation):
    """:math:`A = Z` for :math:`Z > 0`, else ``negative_slope`` times :math:`Z` (default 0.01)."""

    name = "leaky_relu"

    def __init__(self, negative_slope: float = LEAKY_RELU_SLOPE) -> None:
        self.negative_slope = negative_slope

    @property
    def params(self) -> dict[str, float]:
        return {"negative_slope": self.negative_slope}

    def forward(self, Z: Array, out: Array) -> Array:
        # max(Z, s Z) is Z for Z > 0 and s Z otherwise, for any slope s in [0, 1].
        np.multiply(Z, self.negative_slope, out=out)
        return np.maximum(Z, out, out=out)

    def backward(self, dA: Array, Z: Array, A: Array, work: Array) -> Array:
        np.multiply(dA, self.negative_slope, out=work)
        np.copyto(dA, work, where=Z <= 0.0)
        return dA


class Softmax(Activation):
    """Row-wise :math:`A_{ij} = e^{Z_{ij} - m_i} / \\sum_k e^{Z_{ik} - m_i}` with :math:`m_i = \\max_k Z_{ik}`."""

    name = "softmax"

    def forward(self, Z: Array, out: Array) -> Array:
        np.subtract(Z, row_max(Z, out), out=out)
        np.exp(out, out=out)
        total: Array = out.sum(axis=1, keepdims=True)
        return np.divide(out, total, out=out)

    def backward(self, dA: Array, Z: Array, A: Array, work: Array) -> Array:
        np.multiply(dA, A, out=work)
        np.subtract(dA, work.sum(axis=1, keepdims=True), out=dA)
        return np.multiply(A, dA, out=dA)


def row_max(Z: Array, scratch: Array) -> Array:
    """The maximum of each row of ``Z`` (n_samples, units), as a column (n_samples, 1).

    NumPy reduces short rows one at a time; reducing the columns of a transposed
    copy, written to ``scratch`` (any array of ``Z.size`` elements and ``Z``'s
    dtype), is several times faster for a softmax's few units. A maximum does
    not depend on the order its elements are compared in.
    """
    columns = scratch.reshape(Z.shape[1], Z.shape[0])
    np.copyto(columns, Z.T)
    peaks: Array = np.maximum.reduce(columns, axis=0)
    return peaks[:, np.newaxis]


ACTIVATION_CLASSES: tuple[type[Activation], ...] = (
    Identity,
    Sigmoid,
    Tanh,
    ReLU,
    LeakyReLU,
    Softmax,
    GELU,
    GELUTanh,
    ELU,
    SELU,
    Softplus,
    SiLU,
)

ACTIVATIONS: dict[str, Activation] = {cls.name: cls() for cls in ACTIVATION_CLASSES}
"""The activations by the key users write in a spec (with default settings)."""


def make_activation(name: str, negative_slope: float | None = None) -> Activation:
    """A fresh instance of activation ``name`` for one layer.

    Parameters
    ----------
    name : str
        A key of :data:`ACTIVATIONS`.
    negative_slope : float, optional
        ``leaky_relu``'s slope for negative inputs (default 0.01).
    """
    if name == "leaky_relu":
        return LeakyReLU(LEAKY_RELU_SLOPE if negative_slope is None else negative_slope)
    return type(ACTIVATIONS[name])()
