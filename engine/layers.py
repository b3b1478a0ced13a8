"""The fully connected layer: ``A = activation(X @ W + b)``.

A layer owns no arrays of its own: its weights and gradients are views into the
network's flat parameter and gradient vectors (so an optimizer updates every
parameter with a handful of vectorized operations), and its forward/backward
buffers live in a :class:`Workspace` that is allocated once per batch size and
overwritten on every batch. Nothing grows per call.

The hot path passes ``out`` positionally and calls ``np.dot``: on the tiny
networks of the tutorials, per-call overhead is most of the cost.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from engine.activation_base import Activation

# ``np.dot`` with a C-contiguous ``out`` costs half of ``np.matmul`` on small arrays
# (both call the same BLAS routine); positional ``out`` skips keyword parsing.
dot = np.dot
add = np.add

Array = NDArray[np.floating]


@dataclass
class DropoutBuffers:
    """Preallocated buffers of inverted dropout on one layer's output, for one batch size.

    Attributes
    ----------
    uniform : ndarray of float32, shape (batch, units)
        The draws of the run's generator.
    keep : ndarray of bool, shape (batch, units)
        ``uniform >= p``: the units kept.
    noise : ndarray of shape (batch, units)
        ``keep / (1 - p)``, as ``torch.nn.Dropout``'s noise tensor.
    out : ndarray of shape (batch, units)
        ``A * noise``: what the next layer sees.
    """

    uniform: NDArray[np.float32]
    keep: NDArray[np.bool_]
    noise: Array
    out: Array


@dataclass
class Workspace:
    """Preallocated buffers of one layer for one batch size.

    Attributes
    ----------
    Z : ndarray of shape (batch, units)
        Pre-activations.
    A : ndarray of shape (batch, units)
        Activations (the same array as ``Z`` for ``identity``).
    dA : ndarray of shape (batch, units)
        Gradient with respect to ``A``, turned into dL/dZ in place.
    work : ndarray of shape (batch, units)
        Scratch space for the activation's backward rule.
    X : ndarray of shape (batch, fan_in) or None
        The input of the latest forward pass (a reference, not a copy).
    dropout : DropoutBuffers or None
        The mask buffers of a layer with dropout (None without).
    """

    Z: Array
    A: Array
    dA: Array
    work: Array
    X: Array | None = None
    dropout: DropoutBuffers | None = None


class Dense:
    """A fully connected layer.

    Parameters
    ----------
    fan_in : int
        Width of the input.
    units : int
        Width of the output.
    activation : Activation
        Nonlinearity applied to ``X @ W + b``.
    bias : bool
        Whether the layer has a bias vector.
    dropout : float
        Probability of zeroing each output in training (inverted dropout after
        the activation, as ``torch.nn.Dropout``); 0 for none.
    """

    def __init__(
        self, fan_in: int, units: int, activation: Activation, bias: bool, dropout: float = 0.0
    ) -> None:
        self.fan_in = fan_in
        self.units = units
        self.activation = activation
        self.has_bias = bias
        self.dropout = dropout
        self.W: Array = np.empty((0, 0))
        self.b: Array | None = None
        self.gW: Array = np.empty((0, 0))
        self.gb: Array | None = None

    @property
    def n_parameters(self) -> int:
        """Number of trainable scalars: ``fan_in * units`` (+ ``units`` with a bias)."""
        return self.fan_in * self.units + (self.units if self.has_bias else 0)

    def bind(self, params: Array, grads: Array, offset: int) -> int:
        """Point ``W``, ``b`` and their gradients at slices of the flat vectors.

        Returns the offset just past this layer's parameters.
        """
        n_weights = self.fan_in * self.units
        shape = (self.fan_in, self.units)
        self.W = params[offset : offset + n_weights].reshape(shape)
        self.gW = grads[offset : offset + n_weights].reshape(shape)
        offset += n_weights
        if self.has_bias:
            self.b = params[offset : offset + self.units]
            self.gb = grads[offset : offset + self.units]
            offset += self.units
        return offset

    def workspace(self, batch: int, dtype: np.dtype[np.floating]) -> Workspace:
        """Allocate the buffers for batches of ``batch`` samples."""
        shape = (batch, self.units)
        Z = np.empty(shape, dtype)
        A = Z if self.activation.is_identity else np.empty(shape, dtype)
        dropout = None
        if self.dropout:
            dropout = DropoutBuffers(
                uniform=np.empty(shape, np.float32),
                keep=np.empty(shape, np.bool_),
                noise=np.empty(shape, dtype),
                out=np.empty(shape, dtype),
            )
        return Workspace(
            Z=Z, A=A, dA=np.empty(shape, dtype), work=np.empty(shape, dtype), dropout=dropout
        )

    def drop(self, A: Array, buffers: DropoutBuffers, rng: np.random.Generator) -> Array:
        """Inverted dropout of this layer's activations ``A`` (batch, units) in training.

        Draws one float32 uniform per unit from ``rng`` (row-major), keeps the
        units whose draw is at least ``p`` and scales them by ``1 / (1 - p)``,
        computed in ``A``'s dtype as PyTorch's ``noise.div_(1 - p)`` is. Returns
        ``buffers.out``; the backward pass multiplies dL/d(out) by ``buffers.noise``.
        """
        p = self.dropout
        rng.random(dtype=np.float32, out=buffers.uniform)
        np.greater_equal(buffers.uniform, p, out=buffers.keep)
        one = A.dtype.type(1.0)
        np.multiply(buffers.keep, one / A.dtype.type(1.0 - p), out=buffers.noise)
        return np.multiply(A, buffers.noise, out=buffers.out)

    def forward(self, X: Array) -> tuple[Array, Array]:
        """Inference forward pass, allocating its outputs.

        Parameters
        ----------
        X : ndarray of shape (n_samples, fan_in)

        Returns
        -------
        Z, A : ndarray of shape (n_samples, units)
        """
        Z = X @ self.W
        if self.b is not None:
            Z += self.b
        A = self.activation.forward(Z, Z if self.activation.is_identity else np.empty_like(Z))
        return Z, A

    def forward_train(self, X: Array, ws: Workspace) -> Array:
        """Training forward pass into ``ws``; returns ``ws.A`` of shape (batch, units)."""
        ws.X = X
        Z = ws.Z
        dot(X, self.W, Z)
        if self.b is not None:
            add(Z, self.b, Z)
        return self.activation.forward(Z, ws.A)

    def backward(self, dZ: Array, ws: Workspace, dX_out: Array | None) -> None:
        """Accumulate nothing: overwrite ``gW``/``gb`` from ``dZ`` and write dL/dX.

        Parameters
        ----------
        dZ : ndarray of shape (batch, units)
            Gradient of the loss with respect to this layer's pre-activations.
        ws : Workspace
            The workspace of the matching forward pass.
        dX_out : ndarray of shape (batch, fan_in) or None
            Where to write dL/dX (the previous layer's ``dA``); None for the
            first layer, whose input needs no gradient.
        """
        assert ws.X is not None
        dot(ws.X.T, dZ, self.gW)
        if self.gb is not None:
            dZ.sum(axis=0, out=self.gb)
        if dX_out is not None:
            dot(dZ, self.W.T, dX_out)
