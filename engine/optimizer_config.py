"""The ``optimizer`` object of a run config: one frozen dataclass per optimizer, validated.

Defaults are ``torch.optim``'s (``adamw``'s weight decay is 0.01, ``rmsprop``'s and
``adagrad``'s learning rate 0.01). Every field is checked where it is read, and a
field that does not belong to the chosen optimizer is an error naming it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from engine.errors import ConfigError, Loc
from engine.fields import as_mapping, get_bool, get_choice, get_float, reject_unknown

OPTIMIZER_NAMES = ("sgd", "adam", "adamw", "rmsprop", "adagrad")


@dataclass(frozen=True)
class SGDConfig:
    """Hyper-parameters of ``sgd`` (``torch.optim.SGD``)."""

    learning_rate: float = 0.001
    momentum: float = 0.0
    dampening: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    name: str = "sgd"


@dataclass(frozen=True)
class AdamConfig:
    """Hyper-parameters of ``adam`` (``torch.optim.Adam``) and ``adamw`` (``torch.optim.AdamW``)."""

    learning_rate: float = 0.001
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0
    amsgrad: bool = False
    name: str = "adam"


@dataclass(frozen=True)
class RMSpropConfig:
    """Hyper-parameters of ``rmsprop`` (``torch.optim.RMSprop``)."""

    learning_rate: float = 0.01
    alpha: float = 0.99
    eps: float = 1e-8
    momentum: float = 0.0
    centered: bool = False
    weight_decay: float = 0.0
    name: str = "rmsprop"


@dataclass(frozen=True)
class AdagradConfig:
    """Hyper-parameters of ``adagrad`` (``torch.optim.Adagrad``)."""

    learning_rate: float = 0.01
    lr_decay: float = 0.0
    initial_accumulator_value: float = 0.0
    eps: float = 1e-10
    weight_decay: float = 0.0
    name: str = "adagrad"


OptimizerConfig = SGDConfig | AdamConfig | RMSpropConfig | AdagradConfig


def _rate(obj: Mapping[str, Any], loc: Loc, default: float) -> float:
    return get_float(
        obj, "learning_rate", loc, default=default, minimum=0.0, exclusive_minimum=True
    )


def _fraction(obj: Mapping[str, Any], key: str, loc: Loc, default: float) -> float:
    """A number in [0, 1): a momentum, a beta, a decay rate."""
    return get_float(
        obj, key, loc, default=default, minimum=0.0, maximum=1.0, exclusive_maximum=True
    )


def _positive(obj: Mapping[str, Any], key: str, loc: Loc, default: float) -> float:
    return get_float(obj, key, loc, default=default, minimum=0.0, exclusive_minimum=True)


def _non_negative(obj: Mapping[str, Any], key: str, loc: Loc, default: float) -> float:
    return get_float(obj, key, loc, default=default, minimum=0.0)


def _sgd(obj: Mapping[str, Any], loc: Loc) -> SGDConfig:
    config = SGDConfig(
        learning_rate=_rate(obj, loc, 0.001),
        momentum=_fraction(obj, "momentum", loc, 0.0),
        dampening=_fraction(obj, "dampening", loc, 0.0),
        nesterov=get_bool(obj, "nesterov", loc, False),
        weight_decay=_non_negative(obj, "weight_decay", loc, 0.0),
    )
    if config.nesterov and config.momentum == 0.0:
        raise ConfigError(
            (*loc, "nesterov"), "nesterov needs a momentum greater than 0 (e.g. momentum 0.9)"
        )
    if config.dampening and config.momentum == 0.0:
        raise ConfigError(
            (*loc, "dampening"), "dampening applies to the momentum; set a momentum above 0 first"
        )
    if config.dampening and config.nesterov:
        raise ConfigError(
            (*loc, "dampening"), "nesterov momentum needs dampening 0 (as torch.optim.SGD)"
        )
    return config


def _adam(obj: Mapping[str, Any], loc: Loc, name: str) -> AdamConfig:
    return AdamConfig(
        learning_rate=_rate(obj, loc, 0.001),
        beta1=_fraction(obj, "beta1", loc, 0.9),
        beta2=_fraction(obj, "beta2", loc, 0.999),
        eps=_positive(obj, "eps", loc, 1e-8),
        weight_decay=_non_negative(obj, "weight_decay", loc, 0.01 if name == "adamw" else 0.0),
        amsgrad=get_bool(obj, "amsgrad", loc, False),
        name=name,
    )


def _rmsprop(obj: Mapping[str, Any], loc: Loc) -> RMSpropConfig:
    return RMSpropConfig(
        learning_rate=_rate(obj, loc, 0.01),
        alpha=_fraction(obj, "alpha", loc, 0.99),
        eps=_positive(obj, "eps", loc, 1e-8),
        momentum=_fraction(obj, "momentum", loc, 0.0),
        centered=get_bool(obj, "centered", loc, False),
        weight_decay=_non_negative(obj, "weight_decay", loc, 0.0),
    )


def _adagrad(obj: Mapping[str, Any], loc: Loc) -> AdagradConfig:
    return AdagradConfig(
        learning_rate=_rate(obj, loc, 0.01),
        lr_decay=_non_negative(obj, "lr_decay", loc, 0.0),
        initial_accumulator_value=_non_negative(obj, "initial_accumulator_value", loc, 0.0),
        eps=_positive(obj, "eps", loc, 1e-10),
        weight_decay=_non_negative(obj, "weight_decay", loc, 0.0),
    )


FIELDS: dict[str, tuple[str, ...]] = {
    "sgd": ("learning_rate", "momentum", "dampening", "nesterov", "weight_decay"),
    "adam": ("learning_rate", "beta1", "beta2", "eps", "weight_decay", "amsgrad"),
    "adamw": ("learning_rate", "beta1", "beta2", "eps", "weight_decay", "amsgrad"),
    "rmsprop": ("learning_rate", "alpha", "eps", "momentum", "centered", "weight_decay"),
    "adagrad": ("learning_rate", "lr_decay", "initial_accumulator_value", "eps", "weight_decay"),
}
"""The settings each optimizer takes (besides ``name``)."""


def parse_optimizer(raw: Any, loc: Loc = ("optimizer",)) -> OptimizerConfig:
    """Validate the ``optimizer`` object of a run config (default ``{"name": "sgd"}``)."""
    obj = as_mapping({"name": "sgd"} if raw is None else raw, loc)
    name = get_choice(obj, "name", OPTIMIZER_NAMES, loc, default="sgd")
    reject_unknown(obj, ("name", *FIELDS[name]), loc)
    if name == "sgd":
        return _sgd(obj, loc)
    if name in ("adam", "adamw"):
        return _adam(obj, loc, name)
    if name == "rmsprop":
        return _rmsprop(obj, loc)
    return _adagrad(obj, loc)


def optimizer_to_dict(config: OptimizerConfig) -> dict[str, Any]:
    """The normalized JSON form of an optimizer config, ``name`` first."""
    values = asdict(config)
    return {"name": values.pop("name"), **values}
