r"""Weight initialization schemes (PyTorch's ``torch.nn.init`` conventions).

Weights have shape (fan_in, units). Biases always start at zero. Every scheme
draws from the one ``np.random.Generator`` it is given, layer after layer, so a
network is rebuilt bit for bit from its seed.

==================  =================================================================
key                 distribution
==================  =================================================================
``xavier_uniform``  :math:`U(-a, a)`, :math:`a = \sqrt{6 / (\text{fan\_in} + \text{fan\_out})}`
``xavier_normal``   :math:`N(0, \sigma)`, :math:`\sigma = \sqrt{2 / (\text{fan\_in} + \text{fan\_out})}`
``he_uniform``      :math:`U(-a, a)`, :math:`a = \sqrt{6 / \text{fan\_in}}` (Kaiming, ReLU gain)
``he_normal``       :math:`N(0, \sigma)`, :math:`\sigma = \sqrt{2 / \text{fan\_in}}`
``lecun_uniform``   :math:`U(-a, a)`, :math:`a = \sqrt{3 / \text{fan\_in}}` (Kaiming, linear gain)
``lecun_normal``    :math:`N(0, \sigma)`, :math:`\sigma = \sqrt{1 / \text{fan\_in}}` (for ``selu``)
``orthogonal``      ``torch.nn.init.orthogonal_``: the Q of a QR decomposition of a
                    standard normal matrix, signs fixed by R's diagonal (gain 1)
``uniform``         :math:`U(\text{low}, \text{high})`, defaults 0 and 1
``normal``          :math:`N(\text{mean}, \text{std})`, defaults 0 and 1
``zeros``           all zero
==================  =================================================================
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

Initializer = Callable[[np.random.Generator, int, int, Mapping[str, Any]], NDArray[np.float64]]


def xavier_uniform(
    rng: np.random.Generator, fan_in: int, fan_out: int, params: Mapping[str, Any]
) -> NDArray[np.float64]:
    """Glorot uniform: (fan_in, fan_out) from :math:`U(-a, a)`."""
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-bound, bound, size=(fan_in, fan_out))


def xavier_normal(
    rng: np.random.Generator, fan_in: int, fan_out: int, params: Mapping[str, Any]
) -> NDArray[np.float64]:
    """Glorot normal: (fan_in, fan_out) from :math:`N(0, \\sqrt{2/(fan_in+fan_out)})`."""
    return rng.normal(0.0, math.sqrt(2.0 / (fan_in + fan_out)), size=(fan_in, fan_out))


def he_uniform(
    rng: np.random.Generator, fan_in: int, fan_out: int, params: Mapping[str, Any]
) -> NDArray[np.float64]:
    """Kaiming uniform with the ReLU gain: (fan_in, fan_out) from :math:`U(-a, a)`."""
    bound = math.sqrt(6.0 / fan_in)
    return rng.uniform(-bound, bound, size=(fan_in, fan_out))


def he_normal(
    rng: np.random.Generator, fan_in: int, fan_out: int, params: Mapping[str, Any]
) -> NDArray[np.float64]:
    """Kaiming normal with the ReLU gain: (fan_in, fan_out) from :math:`N(0, \\sqrt{2/fan_in})`."""
    return rng.normal(0.0, math.sqrt(2.0 / fan_in), size=(fan_in, fan_out))


def lecun_uniform(
    rng: np.random.Generator, fan_in: int, fan_out: int, params: Mapping[str, Any]
) -> NDArray[np.float64]:
    """LeCun uniform (``kaiming_uniform_(w, nonlinearity="linear")``): :math:`U(-a, a)`."""
    bound = math.sqrt(3.0 / fan_in)
    return rng.uniform(-bound, bound, size=(fan_in, fan_out))


def lecun_normal(
    rng: np.random.Generator, fan_in: int, fan_out: int, params: Mapping[str, Any]
) -> NDArray[np.float64]:
    """LeCun normal (``kaiming_normal_(w, nonlinearity="linear")``): :math:`N(0, \\sqrt{1/fan_in})`."""
    return rng.normal(0.0, math.sqrt(1.0 / fan_in), size=(fan_in, fan_out))


def orthogonal(
    rng: np.random.Generator, fan_in: int, fan_out: int, params: Mapping[str, Any]
) -> NDArray[np.float64]:
    """``torch.nn.init.orthogonal_`` of the (fan_out, fan_in) weight, returned transposed.

    The rows of the returned (fan_in, fan_out) matrix's transpose are orthonormal
    when ``fan_out <= fan_in``, its columns' otherwise (the semi-orthogonal case).
    """
    flattened = rng.standard_normal((fan_out, fan_in))
    wide = fan_out < fan_in
    if wide:
        flattened = flattened.T
    q, r = np.linalg.qr(flattened)
    q *= np.sign(np.diag(r))
    weight = q.T if wide else q
    return np.ascontiguousarray(weight.T)


def uniform(
    rng: np.random.Generator, fan_in: int, fan_out: int, params: Mapping[str, Any]
) -> NDArray[np.float64]:
    """(fan_in, fan_out) from :math:`U(low, high)`."""
    return rng.uniform(params["low"], params["high"], size=(fan_in, fan_out))


def normal(
    rng: np.random.Generator, fan_in: int, fan_out: int, params: Mapping[str, Any]
) -> NDArray[np.float64]:
    """(fan_in, fan_out) from :math:`N(mean, std)`."""
    return rng.normal(params["mean"], params["std"], size=(fan_in, fan_out))


def zeros(
    rng: np.random.Generator, fan_in: int, fan_out: int, params: Mapping[str, Any]
) -> NDArray[np.float64]:
    """All-zero (fan_in, fan_out)."""
    return np.zeros((fan_in, fan_out))


INITIALIZERS: dict[str, Initializer] = {
    "xavier_uniform": xavier_uniform,
    "xavier_normal": xavier_normal,
    "he_uniform": he_uniform,
    "he_normal": he_normal,
    "lecun_uniform": lecun_uniform,
    "lecun_normal": lecun_normal,
    "orthogonal": orthogonal,
    "uniform": uniform,
    "normal": normal,
    "zeros": zeros,
}
"""The initializers by the key users write in ``init.scheme``."""
