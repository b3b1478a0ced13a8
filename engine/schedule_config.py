"""``lr_schedule`` of a run config: which ``torch.optim.lr_scheduler`` class, with its settings.

=============  ============================================  ==========================================
name           settings (defaults as PyTorch's)              PyTorch class
=============  ============================================  ==========================================
``step``       ``step_size`` (required), ``gamma`` 0.1       ``StepLR``
``multistep``  ``milestones`` (required), ``gamma`` 0.1      ``MultiStepLR``
``exponential````gamma`` (required)                          ``ExponentialLR``
``cosine``     ``t_max`` (required), ``eta_min`` 0           ``CosineAnnealingLR``
``linear``     ``start_factor`` 1/3, ``end_factor`` 1,       ``LinearLR``
               ``total_iters`` 5
``onecycle``   ``max_learning_rate`` (required),             ``OneCycleLR`` (``cycle_momentum`` off,
               ``pct_start`` 0.3, ``anneal_strategy`` cos,   stepped per batch)
               ``div_factor`` 25, ``final_div_factor`` 1e4
``plateau``    ``monitor`` (val_loss when validating, else   ``ReduceLROnPlateau``, stepped with the
               loss), ``mode`` min, ``factor`` 0.1,          monitored value
               ``patience`` 10, ``threshold`` 1e-4,
               ``threshold_mode`` rel, ``cooldown`` 0,
               ``min_lr`` 0
=============  ============================================  ==========================================

Epoch counts (``step_size``, ``milestones``, ``t_max``, ``total_iters``,
``patience``, ``cooldown``) are in epochs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from engine.errors import ConfigError, Loc
from engine.fields import (
    as_mapping,
    get_choice,
    get_float,
    reject_unknown,
    require_int,
)

LOC: Loc = ("lr_schedule",)
SCHEDULES = ("step", "multistep", "exponential", "cosine", "linear", "onecycle", "plateau")


@dataclass(frozen=True)
class StepSchedule:
    """``StepLR``: multiply the rate by ``gamma`` every ``step_size`` epochs."""

    step_size: int
    gamma: float = 0.1
    name: str = "step"


@dataclass(frozen=True)
class MultiStepSchedule:
    """``MultiStepLR``: multiply by ``gamma`` after each milestone epoch (repeats count twice)."""

    milestones: tuple[int, ...]
    gamma: float = 0.1
    name: str = "multistep"


@dataclass(frozen=True)
class ExponentialSchedule:
    """``ExponentialLR``: multiply by ``gamma`` after every epoch."""

    gamma: float
    name: str = "exponential"


@dataclass(frozen=True)
class CosineSchedule:
    """``CosineAnnealingLR``: cosine from the base rate down to ``eta_min`` over ``t_max`` epochs."""

    t_max: int
    eta_min: float = 0.0
    name: str = "cosine"


@dataclass(frozen=True)
class LinearSchedule:
    """``LinearLR``: the factor goes linearly from ``start_factor`` to ``end_factor``."""

    start_factor: float = 1.0 / 3
    end_factor: float = 1.0
    total_iters: int = 5
    name: str = "linear"


@dataclass(frozen=True)
class OneCycleSchedule:
    """``OneCycleLR`` over ``epochs x batches per epoch`` steps, stepped after every batch."""

    max_learning_rate: float
    pct_start: float = 0.3
    anneal_strategy: str = "cos"
    div_factor: float = 25.0
    final_div_factor: float = 1e4
    name: str = "onecycle"


@dataclass(frozen=True)
class PlateauSchedule:
    """``ReduceLROnPlateau`` on ``monitor`` (``loss`` or ``val_loss``)."""

    monitor: str
    mode: str = "min"
    factor: float = 0.1
    patience: int = 10
    threshold: float = 1e-4
    threshold_mode: str = "rel"
    cooldown: int = 0
    min_lr: float = 0.0
    name: str = "plateau"


ScheduleConfig = (
    StepSchedule
    | MultiStepSchedule
    | ExponentialSchedule
    | CosineSchedule
    | LinearSchedule
    | OneCycleSchedule
    | PlateauSchedule
)

FIELDS: dict[str, tuple[str, ...]] = {
    "step": ("step_size", "gamma"),
    "multistep": ("milestones", "gamma"),
    "exponential": ("gamma",),
    "cosine": ("t_max", "eta_min"),
    "linear": ("start_factor", "end_factor", "total_iters"),
    "onecycle": (
        "max_learning_rate",
        "pct_start",
        "anneal_strategy",
        "div_factor",
        "final_div_factor",
    ),
    "plateau": (
        "monitor",
        "mode",
        "factor",
        "patience",
        "threshold",
        "threshold_mode",
        "cooldown",
        "min_lr",
    ),
}


def _gamma(obj: Mapping[str, Any], required: bool = False) -> float:
    if required and obj.get("gamma") is None:
        raise ConfigError((*LOC, "gamma"), "is required: the factor per epoch, e.g. 0.95")
    return get_float(obj, "gamma", LOC, default=0.1, minimum=0.0, exclusive_minimum=True)


def _required_float(obj: Mapping[str, Any], key: str, example: str) -> float:
    if obj.get(key) is None:
        raise ConfigError((*LOC, key), f"is required, e.g. {example}")
    return get_float(obj, key, LOC, default=0.0, minimum=0.0, exclusive_minimum=True)


def _milestones(raw: Any, epochs: int) -> tuple[int, ...]:
    loc = (*LOC, "milestones")
    if not isinstance(raw, Sequence) or isinstance(raw, str | bytes) or not raw:
        raise ConfigError(loc, "is required: a non-empty list of epoch numbers, e.g. [30, 60]")
    values = []
    for index, value in enumerate(raw):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError((*loc, index), f"must be an integer epoch number, got {value!r}")
        milestone = value
        if milestone < 1:
            raise ConfigError((*loc, index), f"must be an epoch number of at least 1, got {value}")
        if milestone > epochs:
            raise ConfigError(
                (*loc, index),
                f"is epoch {milestone}, past the run's {epochs} epochs: it would never apply; "
                "use a milestone up to epochs (or more epochs)",
            )
        values.append(milestone)
    return tuple(sorted(values))


def _step(obj: Mapping[str, Any], epochs: int) -> ScheduleConfig:
    return StepSchedule(step_size=require_int(obj, "step_size", LOC, minimum=1), gamma=_gamma(obj))


def _multistep(obj: Mapping[str, Any], epochs: int) -> ScheduleConfig:
    return MultiStepSchedule(
        milestones=_milestones(obj.get("milestones"), epochs), gamma=_gamma(obj)
    )


def _exponential(obj: Mapping[str, Any], epochs: int) -> ScheduleConfig:
    return ExponentialSchedule(gamma=_gamma(obj, required=True))


def _cosine(obj: Mapping[str, Any], epochs: int) -> ScheduleConfig:
    return CosineSchedule(
        t_max=require_int(obj, "t_max", LOC, minimum=1),
        eta_min=get_float(obj, "eta_min", LOC, default=0.0, minimum=0.0),
    )


def _linear(obj: Mapping[str, Any], epochs: int) -> ScheduleConfig:
    return LinearSchedule(
        start_factor=get_float(
            obj,
            "start_factor",
            LOC,
            default=1.0 / 3,
            minimum=0.0,
            maximum=1.0,
            exclusive_minimum=True,
        ),
        end_factor=get_float(obj, "end_factor", LOC, default=1.0, minimum=0.0, maximum=1.0),
        total_iters=require_int(obj, "total_iters", LOC, default=5, minimum=1),
    )


def _onecycle(obj: Mapping[str, Any], epochs: int) -> ScheduleConfig:
    return OneCycleSchedule(
        max_learning_rate=_required_float(obj, "max_learning_rate", "0.1"),
        pct_start=get_float(
            obj, "pct_start", LOC, default=0.3, minimum=0.0, maximum=1.0, exclusive_maximum=True
        ),
        anneal_strategy=get_choice(obj, "anneal_strategy", ("cos", "linear"), LOC, default="cos"),
        div_factor=get_float(
            obj, "div_factor", LOC, default=25.0, minimum=0.0, exclusive_minimum=True
        ),
        final_div_factor=get_float(
            obj, "final_div_factor", LOC, default=1e4, minimum=0.0, exclusive_minimum=True
        ),
    )


def _plateau(obj: Mapping[str, Any], validating: bool) -> ScheduleConfig:
    monitor = get_choice(
        obj, "monitor", ("loss", "val_loss"), LOC, default="val_loss" if validating else "loss"
    )
    if monitor == "val_loss" and not validating:
        raise ConfigError(
            (*LOC, "monitor"),
            'val_loss needs a "validation" setting, e.g. {"fraction": 0.2}; or monitor "loss"',
        )
    return PlateauSchedule(
        monitor=monitor,
        mode=get_choice(obj, "mode", ("min", "max"), LOC, default="min"),
        factor=get_float(
            obj,
            "factor",
            LOC,
            default=0.1,
            minimum=0.0,
            maximum=1.0,
            exclusive_minimum=True,
            exclusive_maximum=True,
        ),
        patience=require_int(obj, "patience", LOC, default=10, minimum=0),
        threshold=get_float(obj, "threshold", LOC, default=1e-4, minimum=0.0),
        threshold_mode=get_choice(obj, "threshold_mode", ("rel", "abs"), LOC, default="rel"),
        cooldown=require_int(obj, "cooldown", LOC, default=0, minimum=0),
        min_lr=get_float(obj, "min_lr", LOC, default=0.0, minimum=0.0),
    )


def parse_schedule(raw: Any, epochs: int, validating: bool) -> ScheduleConfig | None:
    """Validate ``lr_schedule`` (null: a constant learning rate).

    Parameters
    ----------
    raw : object or None
        The JSON value.
    epochs : int
        The run's epochs (milestones must not lie past them).
    validating : bool
        Whether the run has validation data (``plateau`` may monitor ``val_loss``).
    """
    if raw is None:
        return None
    obj = as_mapping(raw, LOC)
    name = get_choice(obj, "name", SCHEDULES, LOC)
    reject_unknown(obj, ("name", *FIELDS[name]), LOC)
    if name == "plateau":
        return _plateau(obj, validating)
    parsers = {
        "step": _step,
        "multistep": _multistep,
        "exponential": _exponential,
        "cosine": _cosine,
        "linear": _linear,
        "onecycle": _onecycle,
    }
    return parsers[name](obj, epochs)


def schedule_to_dict(config: ScheduleConfig | None) -> dict[str, Any] | None:
    """The normalized JSON form, ``name`` first (milestones as a sorted list)."""
    if config is None:
        return None
    values = asdict(config)
    name = values.pop("name")
    if "milestones" in values:
        values["milestones"] = list(values["milestones"])
    return {"name": name, **values}
