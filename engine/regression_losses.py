r"""The robust regression losses: ``l1``, ``huber`` and ``smooth_l1``.

With :math:`d = A - Y` elementwise and N the number of elements (``mean``; ``sum``
drops the 1/N), as PyTorch's kernels compute them:

=============  ==================================================  =========================================
key            value per element                                   dL/dA per element
=============  ==================================================  =========================================
``l1``         :math:`|d|` (``torch.nn.L1Loss``)                   :math:`\mathrm{sgn}(d)/N`
``huber``      :math:`\tfrac12 d^2` if :math:`|d| < \delta`,        :math:`d/N` inside, :math:`\pm\delta/N`
               else :math:`\delta(|d| - \tfrac12\delta)`            outside (``torch.nn.HuberLoss``)
``smooth_l1``  :math:`\tfrac12 d^2/\beta` if :math:`|d| < \beta`,   :math:`d/(N\beta)` inside, :math:`\pm 1/N`
               else :math:`|d| - \tfrac12\beta`                     outside (``torch.nn.SmoothL1Loss``)
=============  ==================================================  =========================================

``smooth_l1`` with ``beta`` 0 is ``l1``, as in PyTorch. The gradient then goes
through the output activation's backward rule, as for ``mse``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from engine.activation_base import Activation
from engine.loss_base import Loss

Array = NDArray[np.floating]


def _total(values: Array, reduction: str) -> float:
    total = float(values.sum())
    return total / values.size if reduction == "mean" else total


class L1(Loss):
    """``torch.nn.L1Loss``: the mean (or sum) of absolute errors over all elements."""

    name = "l1"

    def value(self, Z: Array, A: Array, Y: Array, reduction: str) -> float:
        return _total(np.abs(A - Y), reduction)

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
        diff = np.subtract(A, Y, out=out)
        total = _total(np.abs(diff, out=work), reduction)
        np.sign(diff, out=diff)
        if reduction == "mean":
            np.multiply(diff, 1.0 / diff.size, out=diff)
        return total, activation.backward(diff, Z, A, work)


class Huber(Loss):
    """``torch.nn.HuberLoss(delta=delta)``."""

    name = "huber"

    def __init__(self, delta: float = 1.0) -> None:
        self.delta = delta

    def _values(self, diff: Array) -> Array:
        z = np.abs(diff)
        delta = self.delta
        return np.where(z < delta, 0.5 * z * z, delta * (z - 0.5 * delta))

    def value(self, Z: Array, A: Array, Y: Array, reduction: str) -> float:
        return _total(self._values(A - Y), reduction)

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
        diff = np.subtract(A, Y, out=out)
        total = _total(self._values(diff), reduction)
        norm = 1.0 / diff.size if reduction == "mean" else 1.0
        delta = self.delta
        np.multiply(diff, norm, out=work)
        np.copyto(work, norm * delta, where=diff >= delta)
        np.copyto(work, -norm * delta, where=diff <= -delta)
        np.copyto(out, work)
        return total, activation.backward(out, Z, A, work)


class SmoothL1(Loss):
    """``torch.nn.SmoothL1Loss(beta=beta)`` (``l1`` when ``beta`` is 0)."""

    name = "smooth_l1"

    def __init__(self, beta: float = 1.0) -> None:
        self.beta = beta

    def _values(self, diff: Array) -> Array:
        z = np.abs(diff)
        beta = self.beta
        if beta == 0.0:
            return z
        return np.where(z < beta, 0.5 * z * z / beta, z - 0.5 * beta)

    def value(self, Z: Array, A: Array, Y: Array, reduction: str) -> float:
        return _total(self._values(A - Y), reduction)

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
        if self.beta == 0.0:
            return L1().value_and_delta(Z, A, Y, reduction, activation, out, work)
        diff = np.subtract(A, Y, out=out)
        total = _total(self._values(diff), reduction)
        norm = 1.0 / diff.size if reduction == "mean" else 1.0
        beta = self.beta
        np.multiply(diff, norm, out=work)
        np.divide(work, beta, out=work)
        np.copyto(work, norm, where=diff >= beta)
        np.copyto(work, -norm, where=diff <= -beta)
        np.copyto(out, work)
        return total, activation.backward(out, Z, A, work)
