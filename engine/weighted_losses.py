r"""The classification losses with options: class weights, label smoothing, positive weights.

``cross_entropy`` with ``label_smoothing`` :math:`\epsilon` and/or ``class_weights``
:math:`w` is ``torch.nn.CrossEntropyLoss(weight=w, label_smoothing=eps)``. PyTorch
treats the two kinds of targets differently, and so does this loss
(:math:`\ell = \log\mathrm{softmax}(Z)`, C classes, N samples):

- integer class labels :math:`y_i` (``nll_loss`` semantics): the sample weights
  are :math:`w_{y_i}` and ``mean`` divides by their sum :math:`W = \sum_i w_{y_i}`::

      loss = (1 - eps) * sum_i -w[y_i] l[i, y_i] / W  +  eps / C * sum_i sum_c -w[c] l[i, c] / W
      dZ_i = ((1 - eps) w[y_i] + eps / C * sum(w)) p_i - ((1 - eps) w[y_i] e_{y_i} + eps / C * w)   (/ W)

- probability (or one-hot) rows :math:`Y_i`: smoothed to
  :math:`Y' = (1 - \epsilon) Y + \epsilon / C` and ``mean`` divides by N::

      loss = sum_i sum_c -w[c] Y'[i, c] l[i, c] / N
      dZ_i = (sum_c w[c] Y'[i, c]) p_i - w * Y'_i   (/ N)

``binary_cross_entropy`` with ``pos_weight`` :math:`p_w` (one per output) is
``torch.nn.BCEWithLogitsLoss(pos_weight=pw)`` on the logits, with
:math:`l_w = 1 + (p_w - 1) y`::

      loss = (1 - y) Z + l_w * softplus(-Z)          (mean over all elements)
      dZ   = (p_w y + 1 - y) sigmoid(Z) - p_w y       (/ N)

Without options these losses are the plain ones of :mod:`engine.losses`, whose
code path (and cost) is unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from engine.activation_base import Activation
from engine.activations import row_max
from engine.loss_base import Loss

Array = NDArray[np.floating]


def log_softmax(Z: Array, out: Array, work: Array) -> Array:
    """Row-wise ``log_softmax`` of ``Z`` (n, C) into ``out`` (``work``: scratch of Z's size)."""
    np.subtract(Z, row_max(Z, work), out=out)
    np.exp(out, out=work)
    log_sum = work.sum(axis=1, keepdims=True)
    np.log(log_sum, out=log_sum)
    result: Array = np.subtract(out, log_sum, out=out)
    return result


class WeightedCrossEntropy(Loss):
    """``torch.nn.CrossEntropyLoss`` with ``weight`` and ``label_smoothing``.

    Parameters
    ----------
    label_smoothing : float
        In [0, 1].
    class_weights : sequence of float or None
        One positive weight per class; None weighs every class 1.
    label_targets : bool
        Whether the targets were integer class labels (one-hot encoded by the
        engine; ``nll_loss`` semantics) rather than probability rows.
    """

    name = "cross_entropy"
    required_activation = "softmax"
    is_classification = True

    def __init__(
        self,
        label_smoothing: float,
        class_weights: Sequence[float] | None,
        label_targets: bool,
    ) -> None:
        self.label_smoothing = label_smoothing
        self.class_weights = None if class_weights is None else tuple(class_weights)
        self.label_targets = label_targets

    def _weights(self, Y: Array) -> Array:
        n_classes = Y.shape[1]
        if self.class_weights is None:
            return np.ones(n_classes, Y.dtype)
        return np.asarray(self.class_weights, Y.dtype)

    def _terms(self, Y: Array, w: Array) -> tuple[Array, Array, float]:
        """Per-sample factors ``a`` (n, 1) and targets ``b`` (n, C) with dZ = (a p - b) / D, and D."""
        eps, n_classes = self.label_smoothing, Y.shape[1]
        if self.label_targets:
            sample_weights = (Y @ w)[:, np.newaxis]
            a = (1.0 - eps) * sample_weights + (eps / n_classes) * w.sum()
            b = (1.0 - eps) * sample_weights * Y + (eps / n_classes) * w
            return a, b, float(sample_weights.sum())
        smoothed = Y * (1.0 - eps) + eps / n_classes if eps else Y
        b = smoothed * w
        return b.sum(axis=1, keepdims=True), b, float(Y.shape[0])

    def _value(self, log_p: Array, Y: Array, w: Array, reduction: str) -> float:
        eps, n_samples, n_classes = self.label_smoothing, int(Y.shape[0]), int(Y.shape[1])
        if self.label_targets:
            nll = -float(np.vdot(Y * w, log_p))
            smooth = -float(log_p.sum(axis=0) @ w)
            if reduction == "mean":
                total_weight = float((Y @ w).sum())
                if self.class_weights is None:
                    return (1.0 - eps) * (nll / total_weight) + smooth / n_samples * (
                        eps / n_classes
                    )
                return (1.0 - eps) * (nll / total_weight) + smooth / total_weight * (
                    eps / n_classes
                )
            return (1.0 - eps) * nll + smooth * (eps / n_classes)
        smoothed = Y * (1.0 - eps) + eps / n_classes if eps else Y
        total = -float(np.vdot(smoothed * w, log_p))
        return total / n_samples if reduction == "mean" else total

    def value(self, Z: Array, A: Array, Y: Array, reduction: str) -> float:
        log_p = log_softmax(Z, np.empty_like(Z), np.empty_like(Z))
        return self._value(log_p, Y, self._weights(Y), reduction)

    def value_and_delta(
        self,
        Z: Array,
        A: Array,
        Y: Array,
        reduction: str,
        activation: Activation,
        out: Array,
        work: Array,
    ) -> tuple[float, Array]:
        w = self._weights(Y)
        total = self._value(log_softmax(Z, out, work), Y, w, reduction)
        a, b, denominator = self._terms(Y, w)
        np.multiply(A, a, out=out)
        np.subtract(out, b, out=out)
        if reduction == "mean":
            np.divide(out, denominator, out=out)
        return total, out


class PosWeightBinaryCrossEntropy(Loss):
    """``torch.nn.BCEWithLogitsLoss(pos_weight=...)`` on the sigmoid layer's logits.

    Parameters
    ----------
    pos_weight : sequence of float
        One non-negative weight per output for its positive targets.
    """

    name = "binary_cross_entropy"
    required_activation = "sigmoid"
    is_classification = True

    def __init__(self, pos_weight: Sequence[float]) -> None:
        self.pos_weight = tuple(pos_weight)

    def value(self, Z: Array, A: Array, Y: Array, reduction: str) -> float:
        pos_weight = np.asarray(self.pos_weight, Z.dtype)
        log_weight = (pos_weight - 1.0) * Y + 1.0
        softplus = np.maximum(-Z, 0.0) + np.log1p(np.exp(-np.abs(Z)))
        losses = (1.0 - Y) * Z + log_weight * softplus
        total = float(losses.sum())
        return total / losses.size if reduction == "mean" else total

    def value_and_delta(
        self,
        Z: Array,
        A: Array,
        Y: Array,
        reduction: str,
        activation: Activation,
        out: Array,
        work: Array,
    ) -> tuple[float, Array]:
        total = self.value(Z, A, Y, reduction)
        np.multiply(np.asarray(self.pos_weight, Z.dtype), Y, out=work)
        np.add(work, 1.0, out=out)
        np.subtract(out, Y, out=out)
        np.multiply(out, A, out=out)
        np.subtract(out, work, out=out)
        if reduction == "mean":
            np.divide(out, A.size, out=out)
        return total, out
