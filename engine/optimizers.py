r"""Optimizers with exactly PyTorch's update rules, over the flat parameter vector.

Each rule is the single-tensor (``foreach=False``) path of ``torch.optim`` that
PyTorch takes for CPU tensors, with its order of operations (``a.add(b, alpha=c)``
is ``a + c * b``, ``addcmul(b, c, value=v)`` is ``a + (v * b) * c``, ``addcdiv`` is
``a + (v * b) / c``). ``g`` is the gradient, ``p`` the parameters, ``lr`` the current
learning rate (a schedule may change it between steps), ``t`` the step count::

    sgd      g = g + weight_decay * p
             buf = g (first step);  buf = momentum * buf + (1 - dampening) * g (later)
             g = g + momentum * buf (nesterov);  g = buf (otherwise)
             p = p - lr * g
    adam     g = g + weight_decay * p
    adamw    p = p * (1 - lr * weight_decay)                 (decoupled; g unchanged)
             m = lerp(m, g, 1 - beta1)                       (torch.lerp's two branches)
             v = beta2 * v + ((1 - beta2) * g) * g
             v_max = max(v_max, v)                          (amsgrad; v_max replaces v below)
             denom = sqrt(v) / (1 - beta2**t) ** 0.5 + eps
             p = p + (-(lr / (1 - beta1**t)) * m) / denom
    rmsprop  g = g + weight_decay * p
             s = alpha * s + ((1 - alpha) * g) * g
             a = lerp(a, g, 1 - alpha);  avg = sqrt(s - a * a) + eps   (centered)
             avg = sqrt(s) + eps                                      (otherwise)
             buf = momentum * buf + g / avg;  p = p - lr * buf        (momentum > 0)
             p = p + (-lr * g) / avg                                  (otherwise)
    adagrad  g = g + weight_decay * p
             clr = lr / (1 + (t - 1) * lr_decay)
             s = s + g * g          (s starts at initial_accumulator_value)
             p = p + (-clr * g) / (sqrt(s) + eps)

Weight decay applies to weights and biases alike, as in PyTorch by default.
Every operation writes into preallocated arrays: one step allocates nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from engine.optimizer_config import (
    OPTIMIZER_NAMES,
    AdagradConfig,
    AdamConfig,
    OptimizerConfig,
    RMSpropConfig,
    SGDConfig,
    optimizer_to_dict,
    parse_optimizer,
)

__all__ = [
    "OPTIMIZERS",
    "Optimizer",
    "OptimizerConfig",
    "make_optimizer",
    "optimizer_to_dict",
    "parse_optimizer",
    "state_slots",
]

Array = NDArray[np.floating]


class Optimizer:
    """Base class: updates a flat parameter vector from its gradient, in place.

    Attributes
    ----------
    lr : float
        The learning rate of the next step: the config's ``learning_rate`` until
        a learning-rate schedule changes it.
    """

    def __init__(self, learning_rate: float, size: int, dtype: np.dtype[np.floating]) -> None:
        self.lr = learning_rate
        self.work = np.zeros(size, dtype)

    def step(self, params: Array, grads: Array) -> None:
        """Apply one update to ``params`` (n_parameters,); ``grads`` may be overwritten."""
        raise NotImplementedError

    def state(self) -> tuple[dict[str, Array], dict[str, Any]]:
        """Copies of the state arrays and JSON metadata that let :meth:`load_state` continue."""
        arrays, meta = self._state()
        return {k: v.copy() for k, v in arrays.items()}, {**meta, "lr": self.lr}

    def load_state(self, arrays: Mapping[str, Array], meta: Mapping[str, Any]) -> None:
        """Restore what :meth:`state` returned (checkpoints before schedules have no ``lr``)."""
        for name, array in self._state()[0].items():
            np.copyto(array, arrays[name])
        self._load_meta(meta)
        if "lr" in meta:
            self.lr = float(meta["lr"])

    def _state(self) -> tuple[dict[str, Array], dict[str, Any]]:
        """The live state arrays (not copies) and the counters."""
        raise NotImplementedError

    def _load_meta(self, meta: Mapping[str, Any]) -> None:
        raise NotImplementedError

    def _add_weight_decay(self, weight_decay: float, params: Array, grads: Array) -> None:
        """``grads = grads + weight_decay * params`` (``grad.add(param, alpha=weight_decay)``)."""
        if weight_decay:
            np.multiply(weight_decay, params, out=self.work)
            np.add(grads, self.work, out=grads)


class SGD(Optimizer):
    """``torch.optim.SGD`` with momentum, dampening, nesterov and weight decay."""

    def __init__(self, config: SGDConfig, size: int, dtype: np.dtype[np.floating]) -> None:
        super().__init__(config.learning_rate, size, dtype)
        self.config = config
        self.buffer: Array | None = np.zeros(size, dtype) if config.momentum else None
        self.has_buffer = False

    def step(self, params: Array, grads: Array) -> None:
        c, work = self.config, self.work
        self._add_weight_decay(c.weight_decay, params, grads)
        if self.buffer is not None:
            buffer = self.buffer
            if self.has_buffer:
                np.multiply(buffer, c.momentum, out=buffer)
                if c.dampening:
                    np.multiply(1.0 - c.dampening, grads, out=work)
                    np.add(buffer, work, out=buffer)
                else:
                    np.add(buffer, grads, out=buffer)
            else:
                np.copyto(buffer, grads)
                self.has_buffer = True
            if c.nesterov:
                np.multiply(c.momentum, buffer, out=work)
                np.add(grads, work, out=grads)
            else:
                grads = buffer
        np.multiply(self.lr, grads, work)
        np.subtract(params, work, params)

    def _state(self) -> tuple[dict[str, Array], dict[str, Any]]:
        arrays = {"momentum_buffer": self.buffer} if self.buffer is not None else {}
        return arrays, {"has_buffer": self.has_buffer}

    def _load_meta(self, meta: Mapping[str, Any]) -> None:
        self.has_buffer = bool(meta["has_buffer"])


class Adam(Optimizer):
    """``torch.optim.Adam`` (L2 weight decay added to the gradient) and, with
    ``config.name == "adamw"``, ``torch.optim.AdamW`` (decoupled weight decay)."""

    def __init__(self, config: AdamConfig, size: int, dtype: np.dtype[np.floating]) -> None:
        super().__init__(config.learning_rate, size, dtype)
        self.config = config
        self.decoupled = config.name == "adamw"
        self.exp_avg = np.zeros(size, dtype)
        self.exp_avg_sq = np.zeros(size, dtype)
        self.max_exp_avg_sq: Array | None = np.zeros(size, dtype) if config.amsgrad else None
        self.denom = np.zeros(size, dtype)
        self.t = 0

    def step(self, params: Array, grads: Array) -> None:
        c, work, m, v, denom = self.config, self.work, self.exp_avg, self.exp_avg_sq, self.denom
        self.t += 1
        lr = self.lr
        if self.decoupled:
            if c.weight_decay:
                np.multiply(params, 1.0 - lr * c.weight_decay, out=params)
        else:
            self._add_weight_decay(c.weight_decay, params, grads)
        lerp(m, grads, 1.0 - c.beta1, work)
        np.multiply(1.0 - c.beta2, grads, out=work)
        np.multiply(work, grads, out=work)
        np.multiply(v, c.beta2, out=v)
        np.add(v, work, out=v)
        if self.max_exp_avg_sq is not None:
            v = np.maximum(self.max_exp_avg_sq, v, out=self.max_exp_avg_sq)
        bias_correction1 = 1.0 - c.beta1**self.t
        bias_correction2 = 1.0 - c.beta2**self.t
        step_size = lr / bias_correction1
        np.sqrt(v, out=denom)
        np.divide(denom, bias_correction2**0.5, out=denom)
        np.add(denom, c.eps, out=denom)
        np.multiply(-step_size, m, out=work)
        np.divide(work, denom, out=work)
        np.add(params, work, out=params)

    def _state(self) -> tuple[dict[str, Array], dict[str, Any]]:
        arrays = {"exp_avg": self.exp_avg, "exp_avg_sq": self.exp_avg_sq}
        if self.max_exp_avg_sq is not None:
            arrays["max_exp_avg_sq"] = self.max_exp_avg_sq
        return arrays, {"step": self.t}

    def _load_meta(self, meta: Mapping[str, Any]) -> None:
        self.t = int(meta["step"])


class RMSprop(Optimizer):
    """``torch.optim.RMSprop`` with momentum, ``centered`` and weight decay."""

    def __init__(self, config: RMSpropConfig, size: int, dtype: np.dtype[np.floating]) -> None:
        super().__init__(config.learning_rate, size, dtype)
        self.config = config
        self.square_avg = np.zeros(size, dtype)
        self.grad_avg: Array | None = np.zeros(size, dtype) if config.centered else None
        self.buffer: Array | None = np.zeros(size, dtype) if config.momentum else None
        self.avg = np.zeros(size, dtype)
        self.t = 0

    def step(self, params: Array, grads: Array) -> None:
        c, work, square_avg, avg = self.config, self.work, self.square_avg, self.avg
        self.t += 1
        self._add_weight_decay(c.weight_decay, params, grads)
        np.multiply(square_avg, c.alpha, out=square_avg)
        np.multiply(1.0 - c.alpha, grads, out=work)
        np.multiply(work, grads, out=work)
        np.add(square_avg, work, out=square_avg)
        if self.grad_avg is not None:
            lerp(self.grad_avg, grads, 1.0 - c.alpha, work)
            np.multiply(self.grad_avg, self.grad_avg, out=avg)
            np.subtract(square_avg, avg, out=avg)
            np.sqrt(avg, out=avg)
        else:
            np.sqrt(square_avg, out=avg)
        np.add(avg, c.eps, out=avg)
        if self.buffer is not None:
            np.multiply(self.buffer, c.momentum, out=self.buffer)
            np.divide(grads, avg, out=work)
            np.add(self.buffer, work, out=self.buffer)
            np.multiply(self.lr, self.buffer, out=work)
            np.subtract(params, work, out=params)
        else:
            np.multiply(-self.lr, grads, out=work)
            np.divide(work, avg, out=work)
            np.add(params, work, out=params)

    def _state(self) -> tuple[dict[str, Array], dict[str, Any]]:
        arrays = {"square_avg": self.square_avg}
        if self.grad_avg is not None:
            arrays["grad_avg"] = self.grad_avg
        if self.buffer is not None:
            arrays["momentum_buffer"] = self.buffer
        return arrays, {"step": self.t}

    def _load_meta(self, meta: Mapping[str, Any]) -> None:
        self.t = int(meta["step"])


class Adagrad(Optimizer):
    """``torch.optim.Adagrad`` with ``lr_decay``, ``initial_accumulator_value`` and weight decay."""

    def __init__(self, config: AdagradConfig, size: int, dtype: np.dtype[np.floating]) -> None:
        super().__init__(config.learning_rate, size, dtype)
        self.config = config
        self.sum = np.full(size, config.initial_accumulator_value, dtype)
        self.std = np.zeros(size, dtype)
        self.t = 0

    def step(self, params: Array, grads: Array) -> None:
        c, work, std = self.config, self.work, self.std
        self.t += 1
        self._add_weight_decay(c.weight_decay, params, grads)
        clr = self.lr / (1 + (self.t - 1) * c.lr_decay)
        np.multiply(grads, grads, out=work)
        np.add(self.sum, work, out=self.sum)
        np.sqrt(self.sum, out=std)
        np.add(std, c.eps, out=std)
        np.multiply(-clr, grads, out=work)
        np.divide(work, std, out=work)
        np.add(params, work, out=params)

    def _state(self) -> tuple[dict[str, Array], dict[str, Any]]:
        return {"sum": self.sum}, {"step": self.t}

    def _load_meta(self, meta: Mapping[str, Any]) -> None:
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


def state_slots(config: OptimizerConfig) -> int:
    """How many parameter-sized arrays the optimizer keeps in a checkpoint (its state's size
    is this times ``n_parameters`` times the dtype's item size)."""
    if isinstance(config, SGDConfig):
        return 1 if config.momentum else 0
    if isinstance(config, AdamConfig):
        return 3 if config.amsgrad else 2
    if isinstance(config, RMSpropConfig):
        return 1 + int(config.centered) + int(config.momentum > 0)
    return 1


def make_optimizer(config: OptimizerConfig, size: int, dtype: np.dtype[np.floating]) -> Optimizer:
    """Instantiate the optimizer for ``config`` over ``size`` parameters."""
    if isinstance(config, SGDConfig):
        return SGD(config, size, dtype)
    if isinstance(config, AdamConfig):
        return Adam(config, size, dtype)
    if isinstance(config, RMSpropConfig):
        return RMSprop(config, size, dtype)
    return Adagrad(config, size, dtype)


OPTIMIZERS: dict[str, type[Optimizer]] = dict(
    zip(OPTIMIZER_NAMES, (SGD, Adam, Adam, RMSprop, Adagrad), strict=True)
)
"""The optimizers by the key users write in ``optimizer.name`` (``adamw`` is :class:`Adam`
with decoupled weight decay)."""
