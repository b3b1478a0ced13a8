"""``loss_options`` of a run config: the settings of the chosen loss, validated.

=========================  =============================================================
loss                       options (defaults)
=========================  =============================================================
``huber``                  ``delta`` > 0 (1.0)
``smooth_l1``              ``beta`` >= 0 (1.0; 0 is ``l1``)
``cross_entropy``          ``label_smoothing`` in [0, 1] (0), ``class_weights``: one
                           positive number per class (null: all 1)
``binary_cross_entropy``   ``pos_weight``: one non-negative number per output (null: none)
``mse``, ``l1``            none
=========================  =============================================================

An option given for another loss is an error that names the loss it belongs to.
The lengths of ``class_weights`` and ``pos_weight`` are checked against the network
by :func:`check_loss_options`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from engine.errors import ConfigError, Loc
from engine.fields import as_mapping, get_float

OPTIONS: dict[str, tuple[str, ...]] = {
    "mse": (),
    "l1": (),
    "huber": ("delta",),
    "smooth_l1": ("beta",),
    "cross_entropy": ("label_smoothing", "class_weights"),
    "binary_cross_entropy": ("pos_weight",),
}
"""The options each loss takes."""

OWNER = {option: loss for loss, options in OPTIONS.items() for option in options}

LOC: Loc = ("loss_options",)


@dataclass(frozen=True)
class LossOptions:
    """The options of one loss; fields of other losses stay at their defaults."""

    delta: float = 1.0
    beta: float = 1.0
    label_smoothing: float = 0.0
    class_weights: tuple[float, ...] | None = None
    pos_weight: tuple[float, ...] | None = None

    def to_dict(self, loss: str) -> dict[str, Any]:
        """The normalized JSON form for ``loss``: its options, defaults filled in."""
        values: dict[str, Any] = {
            "delta": self.delta,
            "beta": self.beta,
            "label_smoothing": self.label_smoothing,
            "class_weights": None if self.class_weights is None else list(self.class_weights),
            "pos_weight": None if self.pos_weight is None else list(self.pos_weight),
        }
        return {key: values[key] for key in OPTIONS[loss]}

    @property
    def is_default(self) -> bool:
        """Whether every option has its default (the loss is the plain one)."""
        return self == LossOptions()


def parse_loss_options(raw: Any, loss: str) -> LossOptions:
    """Validate ``loss_options`` for ``loss`` (null or ``{}``: the defaults)."""
    if raw is None:
        return LossOptions()
    obj = as_mapping(raw, LOC)
    allowed = OPTIONS[loss]
    for key, value in obj.items():
        if key in allowed or (value is None and key in OWNER):
            continue
        if key in OWNER:
            raise ConfigError((*LOC, key), _misplaced(key, loss))
        expected = ", ".join(allowed) if allowed else "none"
        raise ConfigError((*LOC, key), f"unknown option of {loss}; its options: {expected}")
    return LossOptions(
        delta=get_float(obj, "delta", LOC, default=1.0, minimum=0.0, exclusive_minimum=True),
        beta=get_float(obj, "beta", LOC, default=1.0, minimum=0.0),
        label_smoothing=get_float(
            obj, "label_smoothing", LOC, default=0.0, minimum=0.0, maximum=1.0
        ),
        class_weights=_weights(obj.get("class_weights"), "class_weights", positive=True),
        pos_weight=_weights(obj.get("pos_weight"), "pos_weight", positive=False),
    )


def _misplaced(key: str, loss: str) -> str:
    owner = OWNER[key]
    if key == "pos_weight" and loss == "cross_entropy":
        return (
            "pos_weight only applies to binary_cross_entropy (sigmoid outputs); with a "
            "softmax output and cross_entropy, weigh the classes with class_weights"
        )
    if key == "class_weights" and loss == "binary_cross_entropy":
        return (
            "class_weights only applies to cross_entropy (softmax outputs); with "
            "binary_cross_entropy, weigh the positive targets with pos_weight"
        )
    return f"only applies to loss {owner}, not {loss}"


def _weights(raw: Any, key: str, *, positive: bool) -> tuple[float, ...] | None:
    """A non-empty list of finite numbers, each > 0 (``positive``) or >= 0."""
    if raw is None:
        return None
    loc = (*LOC, key)
    if not isinstance(raw, Sequence) or isinstance(raw, str | bytes) or not raw:
        raise ConfigError(loc, "must be a non-empty list of numbers, one per output unit")
    values: list[float] = []
    for index, value in enumerate(raw):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError((*loc, index), f"must be a number, got {value!r}")
        number = float(value)
        if not math.isfinite(number) or number < 0.0 or (positive and number == 0.0):
            bound = "greater than 0" if positive else "at least 0"
            raise ConfigError((*loc, index), f"must be a finite number {bound}, got {value!r}")
        values.append(number)
    return tuple(values)


def check_loss_options(loss: str, options: LossOptions, n_outputs: int) -> None:
    """Raise :class:`ConfigError` unless the weight lists have one entry per output unit."""
    for key, weights, what in (
        ("class_weights", options.class_weights, "class"),
        ("pos_weight", options.pos_weight, "output"),
    ):
        if weights is not None and len(weights) != n_outputs:
            raise ConfigError(
                (*LOC, key),
                f"has {len(weights)} weights but the network has {n_outputs} output units; "
                f"give one weight per {what}",
            )
