r"""Optimizers with exactly PyTorch's update rules, over the flat parameter vector.

``sgd`` is ``torch.optim.SGD`` (dampening 0)::

    g = grad + weight_decay * p
    buf = g                        (first step)      buf = momentum * buf + g   (later)
    g = g + momentum * buf         (nesterov)        g = buf                    (otherwise)
    p = p - lr * g

``adam`` is ``torch.optim.Adam`` (``amsgrad=False``, bias-corrected)::

    g = grad + weight_decay * p
    m = lerp(m, g, 1 - beta1)                        (torch.lerp's two-branch formula)
    v = beta2 * v + ((1 - beta2) * g) * g
    denom = sqrt(v) / sqrt(1 - beta2**t) + eps
    p = p + (-(lr / (1 - beta1**t)) * m) / denom

Weight decay applies to weights and biases alike, as in PyTorch by default.
Every operation writes into preallocated arrays: one step allocates nothing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from engine.errors import ConfigError, Loc
from engine.fields import as_mapping, get_bool, get_choice, get_float, reject_unknown

Array = NDArray[np.floating]


@dataclass(frozen=True)
class SGDConfig:
    """Hyper-parameters of ``sgd`` (defaults as ``torch.optim.SGD``)."""

    learning_rate: float = 0.001
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    name: str = "sgd"


@dataclass(frozen=True)
class AdamConfig:
    """Hyper-parameters of ``adam`` (defaults as ``torch.optim.Adam``)."""

    learning_rate: float = 0.001
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0
    name: str = "adam"


OptimizerConfig = SGDConfig | AdamConfig


def parse_optimizer(raw: Any, loc: Loc = ("optimizer",)) -> OptimizerConfig:
    """Validate the ``optimizer`` object of a run config."""
    obj = as_mapping({"name": "sgd"} if raw is None else raw, loc)
    name = get_choice(obj, "name", tuple(OPTIMIZERS), loc, default="sgd")
    if name == "sgd":
        reject_unknown(obj, ("name", "learning_rate", "momentum", "nesterov", "weight_decay"), loc)
        sgd = SGDConfig(
            learning_rate=get_float(
                obj, "learning_rate", loc, default=0.001, minimum=0.0, exclusive_minimum=True
            ),
            momentum=get_float(
                obj, "momentum", loc, default=0.0, minimum=0.0, maximum=1.0, exclusive_maximum=True
            ),
            nesterov=get_bool(obj, "nesterov", loc, False),
            weight_decay=get_float(obj, "weight_decay", loc, default=0.0, minimum=0.0),
        )
        if sgd.nesterov and sgd.momentum == 0.0:
            raise ConfigError(
                (*loc, "nesterov"), "nesterov needs a momentum greater than 0 (e.g. momentum 0.9)"
            )
        return sgd
    reject_unknown(obj, ("name", "learning_rate", "beta1", "beta2", "eps", "weight_decay"), loc)
    return AdamConfig(
        learning_rate=get_float(
            obj, "learning_rate", loc, default=0.001, minimum=0.0, exclusive_minimum=True
        ),
        beta1=get_float(
            obj, "beta1", loc, default=0.9, minimum=0.0, maximum=1.0, exclusive_maximum=True
        ),
        beta2=get_float(
            obj, "beta2", loc, default=0.999, minimum=0.0, maximum=1.0, exclusive_maximum=True
        ),
        eps=get_float(obj, "eps", loc, default=1e-8, minimum=0.0, exclusive_minimum=True),
        weight_decay=get_float(obj, "weight_decay", loc, default=0.0, minimum=0.0),
    )


def optimizer_to_dict(config: OptimizerConfig) -> dict[str, Any]:
    """The normalized JSON form of an optimizer config, ``name`` first."""
    values = asdict(config)
    return {"name": values.pop("name"), **values}


class Optimizer:
    """Base class: updates a flat parameter vector from its gradient, in place."""

    def __init__(self, size: int, dtype: np.dtype[np.floating]) -> None:
        self.work = np.zeros(size, dtype)

    def step(self, params: Array, grads: Array) -> None:
        """Apply one update; ``grads`` may be overwritten."""
        raise NotImplementedError

    def state(self) -> tuple[dict[str, Array], dict[str, Any]]:
        """Arrays and JSON metadata that let :meth:`load_state` continue exactly."""
        raise NotImplementedError

    def load_state(self, arrays: Mapping[str, Array], meta: Mapping[str, Any]) -> None:
        """Restore what :meth:`state` returned."""
        raise NotImplementedError


class SGD(Optimizer):
    """``torch.optim.SGD`` with momentum, nesterov and weight decay (dampening 0)."""

    def __init__(self, config: SGDConfig, size: int, dtype: np.dtype[np.floating]) -> None:
        super().__init__(size, dtype)
        self.config = config
        self.buffer: Array | None = np.zeros(size, dtype) if config.momentum else None
        self.has_buffer = False

    def step(self, params: Array, grads: Array) -> None:
        c, work = self.config, self.work
        if c.weight_decay:
            np.multiply(c.weight_decay, params, out=work)
            np.add(grads, work, out=grads)
        if self.buffer is not None:
            buffer = self.buffer
            if self.has_buffer:
                np.multiply(buffer, c.momentum, out=buffer)
                np.add(buffer, grads, out=buffer)
            else:
                np.copyto(buffer, grads)
                self.has_buffer = True
            if c.nesterov:
                np.multiply(c.momentum, buffer, out=work)
                np.add(grads, work, out=grads)
            else:
                grads = buffer
        np.multiply(c.learning_rate, grads, work)
        np.subtract(params, work, params)

    def state(self) -> tuple[dict[str, Array], dict[str, Any]]:
        arrays = {"momentum_buffer": self.buffer} if self.buffer is not None else {}
        return {k: v.copy() for k, v in arrays.items()}, {"has_buffer": self.has_buffer}

    def load_state(self, arrays: Mapping[str, Array], meta: Mapping[str, Any]) -> None:
        if self.buffer is not None:
            np.copyto(self.buffer, arrays["momentum_buffer"])
        self.has_buffer = bool(meta["has_buffer"])


class Adam(Optimizer):
    """``torch.optim.Adam`` (bias-corrected, L2 weight decay added to the gradient)."""

    def __init__(self, config: AdamConfig, size: int, dtype: np.dtype[np.floating]) -> None:
        super().__init__(size, dtype)
        self.config = config
        self.exp_avg = np.zeros(size, dtype)
        self.exp_avg_sq = np.zeros(size, dtype)
        self.denom = np.zeros(size, dtype)
        self.t = 0

    def step(self, params: Array, grads: Array) -> None:
        c, work, m, v, denom = self.config, self.work, self.exp_avg, self.exp_avg_sq, self.denom
        self.t += 1
        if c.weight_decay:
            np.multiply(c.weight_decay, params, out=work)
            np.add(grads, work, out=grads)
        lerp(m, grads, 1.0 - c.beta1, work)
        np.multiply(1.0 - c.beta2, grads, out=work)
        np.multiply(work, grads, out=work)
        np.multiply(v, c.beta2, out=v)
        np.add(v, work, out=v)
        bias_correction1 = 1.0 - c.beta1**self.t
        bias_correction2 = 1.0 - c.beta2**self.t
        step_size = c.learning_rate / bias_correction1
        np.sqrt(v, out=denom)
        np.divide(denom, math.sqrt(bias_correction2), out=denom)
        np.add(denom, c.eps, out=denom)
        np.multiply(-step_size, m, out=work)
        np.divide(work, denom, out=work)
        np.add(params, work, out=params)

    def state(self) -> tuple[dict[str, Array], dict[str, Any]]:
        return {"exp_avg": self.exp_avg.copy(), "exp_avg_sq": self.exp_avg_sq.copy()}, {
            "step": self.t
        }

    def load_state(self, arrays: Mapping[str, Array], meta: Mapping[str, Any]) -> None:
        np.copyto(self.exp_avg, arrays["exp_avg"])
        np.copyto(self.exp_avg_sq, arrays["exp_avg_sq"])
        self.t = int(meta["step"])


def lerp(start: Array, end: Array, weight: float, work: Array) -> None:
    """``start = torch.lerp(start, end, weight)`` in place, with torch's two branches.

    PyTorch computes ``start + weight * (end - start)`` for ``|weight| < 0.5`` and
    ``end - (end - start) * (1 - weight)`` otherwise, for accuracy near 1.
    """
    np.subtract(end, start, out=work)
    if abs(weight) < 0.5:
        np.multiply(weight, work, out=work)
        np.add(start, work, out=start)
    else:
        np.multiply(work, 1.0 - weight, out=work)
        np.subtract(end, work, out=start)


def make_optimizer(config: OptimizerConfig, size: int, dtype: np.dtype[np.floating]) -> Optimizer:
    """Instantiate the optimizer for ``config`` over ``size`` parameters."""
    if isinstance(config, SGDConfig):
        return SGD(config, size, dtype)
    return Adam(config, size, dtype)


OPTIMIZERS: dict[str, type[Optimizer]] = {"sgd": SGD, "adam": Adam}
"""The optimizers by the key users write in ``optimizer.name``."""
