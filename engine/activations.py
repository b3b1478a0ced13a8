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
``leaky_relu``    :math:`A = Z` or :math:`0.01 Z`  :math:`dZ = dA` or :math:`0.01\,dA`
``softmax``       :math:`A = e^{Z} / \sum e^{Z}`   :math:`dZ = A (dA - \sum dA \cdot A)`
================  ===============================  ===================================

``1 / (1 + exp(-Z))`` overflows ``exp`` harmlessly to ``inf`` for very negative
``Z`` (giving exactly 0); training runs under ``np.errstate(over="ignore")`` so
that it is silent.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.floating]

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
"""Negative slope of ``leaky_relu``, as ``torch.nn.LeakyReLU``'s default."""


class Activation:
    """Base class: an elementwise (or row-wise) nonlinearity with its derivative."""

    name: ClassVar[str] = ""
    #: True when ``forward`` returns ``Z`` itself (no buffer needed).
    is_identity: ClassVar[bool] = False

    def forward(self, Z: Array, out: Array) -> Array:
        """Compute ``A`` from ``Z`` (shape (n_samples, units)) into ``out``."""
        raise NotImplementedError

    def backward(self, dA: Array, Z: Array, A: Array, work: Array) -> Array:
        """Return ``dZ`` of shape (n_samples, units), overwriting ``dA`` and ``work``.

        Parameters
        ----------
        dA : ndarray of shape (n_samples, units)
            Gradient of the loss with respect to the activations; overwritten.
        Z, A : ndarray of shape (n_samples, units)
            The pre-activations and activations of the forward pass.
        work : ndarray of shape (n_samples, units)
            Scratch buffer.
        """
        raise NotImplementedError


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
    """:math:`A = Z` for :math:`Z > 0`, else :math:`0.01 Z`."""

    name = "leaky_relu"

    def forward(self, Z: Array, out: Array) -> Array:
        np.multiply(Z, LEAKY_RELU_SLOPE, out=out)
        return np.maximum(Z, out, out=out)

    def backward(self, dA: Array, Z: Array, A: Array, work: Array) -> Array:
        np.multiply(dA, LEAKY_RELU_SLOPE, out=work)
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


ACTIVATIONS: dict[str, Activation] = {
    cls.name: cls() for cls in (Identity, Sigmoid, Tanh, ReLU, LeakyReLU, Softmax)
}
"""The activations by the key users write in a spec."""
