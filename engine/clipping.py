"""Gradient clipping (``grad_clip`` in a run config), applied to the raw gradients of every batch.

``{"max_norm": x, "norm_type": 2.0}`` is ``torch.nn.utils.clip_grad_norm_`` over all
parameters: the norm of the whole gradient vector (``norm_type`` a positive number
or ``"inf"``, the largest absolute value), and when it exceeds ``max_norm`` every
gradient is multiplied by ``max_norm / (norm + 1e-6)`` (PyTorch multiplies by
``min(that, 1)`` always; a factor of 1 changes nothing). ``{"value": v}`` is
``clip_grad_value_``: every gradient is clamped to ``[-v, v]``. Both run after
backpropagation and before the optimizer adds weight decay, as when the clip is
called before ``optimizer.step()``.

PyTorch computes the norm of each parameter tensor and then the norm of those
norms; mathematically that is the norm of the whole vector, which is computed
here in one pass, so the two differ only in the rounding of the sum.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from engine.errors import ConfigError, Loc
from engine.fields import as_mapping, get_float, reject_unknown

Array = NDArray[np.floating]
LOC: Loc = ("grad_clip",)
NORM_EPS = 1e-6
"""Added to the norm before dividing, as ``clip_grad_norm_`` does."""


@dataclass(frozen=True)
class ClipConfig:
    """Either ``max_norm`` (with ``norm_type``, ``inf`` for the maximum norm) or ``value``."""

    max_norm: float | None = None
    norm_type: float = 2.0
    value: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The normalized JSON form (``norm_type`` ``"inf"`` stays a string)."""
        if self.value is not None:
            return {"value": self.value}
        norm_type: float | str = "inf" if math.isinf(self.norm_type) else self.norm_type
        return {"max_norm": self.max_norm, "norm_type": norm_type}


def parse_clip(raw: Any) -> ClipConfig | None:
    """Validate ``grad_clip`` (null: no clipping)."""
    if raw is None:
        return None
    obj = as_mapping(raw, LOC)
    reject_unknown(obj, ("max_norm", "norm_type", "value"), LOC)
    has_norm, has_value = obj.get("max_norm") is not None, obj.get("value") is not None
    if has_norm == has_value:
        raise ConfigError(
            LOC,
            'give exactly one of "max_norm" (clip the gradient norm, e.g. 1.0) or "value" '
            "(clamp each gradient, e.g. 0.5)",
        )
    if has_value:
        if obj.get("norm_type") is not None:
            raise ConfigError((*LOC, "norm_type"), 'only applies with "max_norm"')
        value = get_float(obj, "value", LOC, default=1.0, minimum=0.0, exclusive_minimum=True)
        return ClipConfig(value=value)
    max_norm = get_float(obj, "max_norm", LOC, default=1.0, minimum=0.0, exclusive_minimum=True)
    return ClipConfig(max_norm=max_norm, norm_type=_norm_type(obj.get("norm_type")))


def _norm_type(raw: Any) -> float:
    if raw is None:
        return 2.0
    if raw == "inf":
        return math.inf
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
        raise ConfigError((*LOC, "norm_type"), f'must be a positive number or "inf", got {raw!r}')
    if raw <= 0:
        raise ConfigError((*LOC, "norm_type"), f'must be greater than 0 (or "inf"), got {raw!r}')
    return float(raw)


def gradient_norm(grads: Array, norm_type: float, work: Array) -> float:
    """The ``norm_type`` norm of the flat gradient vector (``work``: scratch of its size)."""
    if norm_type == 2.0:
        return math.sqrt(float(np.dot(grads, grads)))
    if math.isinf(norm_type):
        return max(float(grads.max()), -float(grads.min()))
    np.abs(grads, out=work)
    if norm_type == 1.0:
        return float(work.sum())
    np.power(work, norm_type, out=work)
    total: float = float(work.sum()) ** (1.0 / norm_type)
    return total


def make_clip(
    config: ClipConfig | None, size: int, dtype: np.dtype[np.floating]
) -> Callable[[Array], None] | None:
    """The clipping function for ``config`` over ``size`` gradients (None: no clipping)."""
    if config is None:
        return None
    if config.value is not None:
        low, high = -config.value, config.value

        def clip_value(grads: Array) -> None:
            np.clip(grads, low, high, out=grads)

        return clip_value
    max_norm, norm_type = config.max_norm, config.norm_type
    assert max_norm is not None
    work = np.empty(size if norm_type not in (2.0, math.inf) else 0, dtype)
    scalar = dtype.type

    def clip_norm(grads: Array) -> None:
        norm = scalar(gradient_norm(grads, norm_type, work))
        coefficient = scalar(max_norm) / (norm + scalar(NORM_EPS))
        if coefficient < 1.0:
            np.multiply(grads, coefficient, out=grads)

    return clip_norm
