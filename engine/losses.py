r"""Loss functions: each computes the batch loss and its gradient at the output layer.

A loss is a small object with two functions (after Nielsen's ``fn`` and
``delta``): :meth:`Loss.value` and :meth:`Loss.value_and_delta`. They follow
PyTorch exactly:

=========================  ==========================================  ==================================
key                        value (``mean``; ``sum`` drops the 1/N)     dL/dZ at the output layer
=========================  ==========================================  ==================================
``mse``                    :math:`\frac{1}{N}\sum (A - Y)^2`           activation backward of
                           (``torch.nn.MSELoss``, N = all elements)    :math:`\frac{2}{N}(A - Y)`
``binary_cross_entropy``   ``torch.nn.BCELoss`` on sigmoid outputs,    :math:`(A - Y)/N`, fused with sigmoid
                           computed from the logits ``Z``
``cross_entropy``          ``torch.nn.CrossEntropyLoss`` on the        :math:`(A - Y)/N`, fused with softmax,
                           pre-softmax ``Z``, N = samples              N = samples
=========================  ==========================================  ==================================

plus ``l1``, ``huber`` and ``smooth_l1`` (:mod:`engine.regression_losses`) and the
options of :mod:`engine.loss_options` (class weights, label smoothing, positive
weights: :mod:`engine.weighted_losses`).

The cross-entropies are computed stably from the pre-activations
(:math:`\max(Z,0) - ZY + \log(1 + e^{-|Z|})` and ``log_softmax``), so large
logits neither overflow nor produce ``log(0)``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from engine.activation_base import Activation
from engine.activations import row_max
from engine.loss_base import REDUCTIONS, Loss
from engine.loss_options import LossOptions
from engine.regression_losses import L1, Huber, SmoothL1
from engine.weighted_losses import PosWeightBinaryCrossEntropy, WeightedCrossEntropy

__all__ = ["LOSSES", "REDUCTIONS", "Loss", "make_loss"]

Array = NDArray[np.floating]


class MeanSquaredError(Loss):
    """``torch.nn.MSELoss``: the mean (or sum) of squared errors over all elements."""

    name = "mse"

    def value(self, Z: Array, A: Array, Y: Array, reduction: str) -> float:
        diff = A - Y
        total = float(np.vdot(diff, diff))
        return total / diff.size if reduction == "mean" else total

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
        diff = np.subtract(A, Y, out)
        total = float(np.vdot(diff, diff))
        if reduction == "mean":
            total /= diff.size
            np.multiply(2.0 / diff.size, diff, diff)
        else:
            np.multiply(2.0, diff, diff)
        return total, activation.backward(diff, Z, A, work)


class BinaryCrossEntropy(Loss):
    """``torch.nn.BCELoss`` on sigmoid outputs, from the logits for stability."""

    name = "binary_cross_entropy"
    required_activation = "sigmoid"
    is_classification = True

    def value(self, Z: Array, A: Array, Y: Array, reduction: str) -> float:
        return self._value(Z, Y, reduction, np.empty_like(Z), np.empty_like(Z))

    @staticmethod
    def _value(Z: Array, Y: Array, reduction: str, losses: Array, work: Array) -> float:
        r"""The sum of :math:`\max(Z, 0) - ZY + \log(1 + e^{-|Z|})`; two scratch arrays like ``Z``."""
        np.maximum(Z, 0.0, out=losses)
        np.multiply(Z, Y, out=work)
        np.subtract(losses, work, out=losses)
        np.abs(Z, out=work)
        np.negative(work, out=work)
        np.exp(work, out=work)
        np.log1p(work, out=work)
        np.add(losses, work, out=losses)
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
        total = self._value(Z, Y, reduction, out, work)
        np.subtract(A, Y, out=out)
        if reduction == "mean":
            np.divide(out, A.size, out=out)
        return total, out


class CrossEntropy(Loss):
    """``torch.nn.CrossEntropyLoss`` on the pre-softmax values, mean over samples."""

    name = "cross_entropy"
    required_activation = "softmax"
    is_classification = True

    def value(self, Z: Array, A: Array, Y: Array, reduction: str) -> float:
        return self._value(Z, Y, reduction, np.empty_like(Z), np.empty_like(Z))

    @staticmethod
    def _value(Z: Array, Y: Array, reduction: str, log_softmax: Array, work: Array) -> float:
        r"""The sum of :math:`-Y \log \mathrm{softmax}(Z)`; two scratch arrays like ``Z``."""
        np.subtract(Z, row_max(Z, work), out=log_softmax)
        np.exp(log_softmax, out=work)
        log_sum = work.sum(axis=1, keepdims=True)
        np.log(log_sum, out=log_sum)
        np.subtract(log_softmax, log_sum, out=log_softmax)
        total = -float(np.vdot(Y, log_softmax))
        return total / Z.shape[0] if reduction == "mean" else total

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
        total = self._value(Z, Y, reduction, out, work)
        np.subtract(A, Y, out=out)
        if reduction == "mean":
            np.divide(out, Z.shape[0], out=out)
        return total, out


LOSSES: dict[str, Loss] = {
    cls.name: cls()
    for cls in (MeanSquaredError, BinaryCrossEntropy, CrossEntropy, L1, Huber, SmoothL1)
}
"""The losses by the key users write in a run config (with default options)."""


def make_loss(name: str, options: LossOptions, label_targets: bool = True) -> Loss:
    """The loss ``name`` with its ``loss_options``.

    Parameters
    ----------
    name : str
        A key of :data:`LOSSES`.
    options : LossOptions
        Its options (defaults give the plain loss of :data:`LOSSES`, same code path).
    label_targets : bool
        For ``cross_entropy`` with options: whether the data's targets were
        integer class labels (PyTorch's class-index semantics) or probability rows.
    """
    if name == "huber":
        return Huber(options.delta)
    if name == "smooth_l1":
        return SmoothL1(options.beta)
    if name == "cross_entropy" and (options.label_smoothing or options.class_weights):
        return WeightedCrossEntropy(options.label_smoothing, options.class_weights, label_targets)
    if name == "binary_cross_entropy" and options.pos_weight is not None:
        return PosWeightBinaryCrossEntropy(options.pos_weight)
    return LOSSES[name]
