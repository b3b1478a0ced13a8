r"""The smooth activations: ``gelu``, ``gelu_tanh``, ``elu``, ``selu``, ``softplus``, ``silu``.

Each follows PyTorch's CPU kernel (``aten/src/ATen/native/cpu/Activation.cpp``,
``Gelu.h``, ``Elu.h``) operation by operation, so the results differ from
PyTorch's only where its vectorized ``exp``/``erf``/``tanh`` round differently
(about one unit in the last place):

=============  ===========================================  ==============================================
key            forward                                      backward (:math:`dZ` from :math:`dA`)
=============  ===========================================  ==============================================
``gelu``       :math:`\tfrac{Z}{2}(1 + \mathrm{erf}(Z/\sqrt2))`  :math:`dA\,(\Phi(Z) + Z\,\varphi(Z))`
``gelu_tanh``  :math:`\tfrac{Z}{2}(1 + \tanh u)`,               :math:`dA\,(\tfrac12(1 + \tanh u) + \tfrac{Z}{2}(1 - \tanh^2 u)\,u')`
               :math:`u = \sqrt{2/\pi}(Z + 0.044715 Z^3)`
``elu``        :math:`Z` for :math:`Z \ge 0`, else :math:`e^Z - 1`  :math:`dA` for :math:`Z > 0`, else :math:`dA\,e^Z`
``selu``       :math:`\lambda Z` for :math:`Z \ge 0`, else          :math:`\lambda\,dA` for :math:`Z > 0`, else
               :math:`\lambda\alpha(e^Z - 1)`                       :math:`dA\,\lambda\alpha\,e^Z`
``softplus``   :math:`\log(1 + e^Z)`, :math:`Z` above 20            :math:`dA\,e^Z / (e^Z + 1)`, :math:`dA` above 20
``silu``       :math:`Z / (1 + e^{-Z})`                             :math:`dA\,\sigma (1 + Z (1 - \sigma))`
=============  ===========================================  ==============================================

``gelu``'s erf is SciPy's (``scipy.special.erf``, imported on first use), the one
function NumPy lacks. ``selu``'s :math:`\lambda` and :math:`\alpha` are PyTorch's
constants. Multiplying by 0.5 is exact, so ``(0.5 Z) X`` is computed as
``0.5 (Z X)`` where that saves a buffer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from engine.activation_base import Activation, Array

SQRT1_2 = 0.70710678118654752440
"""``M_SQRT1_2``."""
GELU_PDF = 1.12837916709551257390 * SQRT1_2 * 0.5
"""``M_2_SQRTPI * M_SQRT1_2 * 0.5``: the standard normal density's factor."""
GELU_BETA = 1.41421356237309504880 * 1.12837916709551257390 * 0.5
"""``M_SQRT2 * M_2_SQRTPI * 0.5`` = sqrt(2 / pi), ``kGeluBeta``."""
GELU_KAPPA = 0.044715
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
SELU_NEGATIVE = SELU_ALPHA * SELU_SCALE
"""``negcoef`` of the ELU kernel that computes selu."""
SOFTPLUS_THRESHOLD = 20.0

_erf: Callable[..., Any] | None = None


def erf(values: Array, out: Array) -> Array:
    """``scipy.special.erf`` of ``values`` into ``out`` (SciPy is imported on first use)."""
    global _erf
    if _erf is None:
        from scipy.special import erf as scipy_erf

        _erf = scipy_erf
    result: Array = _erf(values, out=out)
    return result


class GELU(Activation):
    """Exact GELU, :math:`Z \\Phi(Z)` (``torch.nn.GELU()``)."""

    name = "gelu"

    def forward(self, Z: Array, out: Array) -> Array:
        np.multiply(Z, SQRT1_2, out=out)
        erf(out, out)
        np.add(out, 1.0, out=out)
        np.multiply(Z, out, out=out)
        return np.multiply(out, 0.5, out=out)

    def backward(self, dA: Array, Z: Array, A: Array, work: Array) -> Array:
        (cdf,) = self.scratch(Z, 1)
        np.multiply(Z, Z, out=work)
        np.multiply(work, -0.5, out=work)
        np.exp(work, out=work)
        np.multiply(work, GELU_PDF, out=work)
        np.multiply(Z, work, out=work)
        np.multiply(Z, SQRT1_2, out=cdf)
        erf(cdf, cdf)
        np.add(cdf, 1.0, out=cdf)
        np.multiply(cdf, 0.5, out=cdf)
        np.add(cdf, work, out=cdf)
        return np.multiply(dA, cdf, out=dA)


class GELUTanh(Activation):
    """GELU with the tanh approximation (``torch.nn.GELU(approximate="tanh")``)."""

    name = "gelu_tanh"

    def forward(self, Z: Array, out: Array) -> Array:
        _inner(Z, out)
        np.tanh(out, out=out)
        np.add(out, 1.0, out=out)
        np.multiply(Z, out, out=out)
        return np.multiply(out, 0.5, out=out)

    def backward(self, dA: Array, Z: Array, A: Array, work: Array) -> Array:
        right, inner_derivative = self.scratch(Z, 2)
        _inner(Z, work)
        np.tanh(work, out=work)
        np.multiply(work, work, out=right)
        np.subtract(1.0, right, out=right)
        np.multiply(Z, right, out=right)
        np.multiply(right, 0.5, out=right)
        np.multiply(Z, Z, out=inner_derivative)
        np.multiply(inner_derivative, 3.0 * GELU_KAPPA, out=inner_derivative)
        np.add(inner_derivative, 1.0, out=inner_derivative)
        np.multiply(inner_derivative, GELU_BETA, out=inner_derivative)
        np.multiply(right, inner_derivative, out=right)
        np.add(work, 1.0, out=work)
        np.multiply(work, 0.5, out=work)
        np.add(work, right, out=work)
        return np.multiply(dA, work, out=dA)


def _inner(Z: Array, out: Array) -> Array:
    """``kGeluBeta * (Z + kGeluKappa * Z * Z * Z)`` into ``out``."""
    np.multiply(Z, Z, out=out)
    np.multiply(out, Z, out=out)
    np.multiply(out, GELU_KAPPA, out=out)
    np.add(Z, out, out=out)
    return np.multiply(out, GELU_BETA, out=out)


class ELU(Activation):
    """ELU with alpha 1 (``torch.nn.ELU()``)."""

    name = "elu"

    def forward(self, Z: Array, out: Array) -> Array:
        np.expm1(Z, out=out)
        np.copyto(out, Z, where=Z >= 0.0)
        return out

    def backward(self, dA: Array, Z: Array, A: Array, work: Array) -> Array:
        np.exp(Z, out=work)
        return np.multiply(dA, work, out=dA, where=Z <= 0.0)


class SELU(Activation):
    """SELU (``torch.nn.SELU()``): ELU with PyTorch's alpha, times its scale."""

    name = "selu"

    def forward(self, Z: Array, out: Array) -> Array:
        np.expm1(Z, out=out)
        np.multiply(out, SELU_NEGATIVE, out=out)
        return np.multiply(Z, SELU_SCALE, out=out, where=Z >= 0.0)

    def backward(self, dA: Array, Z: Array, A: Array, work: Array) -> Array:
        np.exp(Z, out=work)
        negative = Z <= 0.0
        np.multiply(dA, SELU_SCALE, out=dA, where=~negative)
        np.multiply(dA, SELU_NEGATIVE, out=dA, where=negative)
        return np.multiply(dA, work, out=dA, where=negative)


class Softplus(Activation):
    """Softplus with beta 1 and threshold 20 (``torch.nn.Softplus()``)."""

    name = "softplus"

    def forward(self, Z: Array, out: Array) -> Array:
        np.exp(Z, out=out)
        np.log1p(out, out=out)
        np.copyto(out, Z, where=Z > SOFTPLUS_THRESHOLD)
        return out

    def backward(self, dA: Array, Z: Array, A: Array, work: Array) -> Array:
        below = Z <= SOFTPLUS_THRESHOLD
        np.exp(Z, out=work)
        np.multiply(dA, work, out=dA, where=below)
        np.add(work, 1.0, out=work)
        return np.divide(dA, work, out=dA, where=below)


class SiLU(Activation):
    """SiLU (swish), :math:`Z \\sigma(Z)` (``torch.nn.SiLU()``)."""

    name = "silu"

    def forward(self, Z: Array, out: Array) -> Array:
        np.negative(Z, out=out)
        np.exp(out, out=out)
        np.add(out, 1.0, out=out)
        return np.divide(Z, out, out=out)

    def backward(self, dA: Array, Z: Array, A: Array, work: Array) -> Array:
        np.negative(Z, out=work)
        np.exp(work, out=work)
        np.add(work, 1.0, out=work)
        np.divide(1.0, work, out=work)
        np.multiply(dA, work, out=dA)
        np.subtract(1.0, work, out=work)
        np.multiply(Z, work, out=work)
        np.add(work, 1.0, out=work)
        return np.multiply(dA, work, out=dA)
