"""The training config: the training fields of ``POST /v1/runs``, validated."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.clipping import ClipConfig, parse_clip
from engine.errors import ConfigError, Loc
from engine.fields import (
    MAX_SEED,
    as_mapping,
    get_bool,
    get_choice,
    get_float,
    get_int,
    reject_unknown,
    require_int,
)
from engine.history import MIN_HISTORY_POINTS
from engine.loss_options import LossOptions, parse_loss_options
from engine.losses import LOSSES, REDUCTIONS
from engine.metrics import parse_metrics
from engine.optimizer_config import OptimizerConfig, optimizer_to_dict, parse_optimizer
from engine.schedule_config import ScheduleConfig, parse_schedule, schedule_to_dict

MAX_EPOCHS = 100_000_000
DTYPES = ("float64", "float32")
MONITORS = ("loss", "val_loss")

#: Keys of a run body that belong to the service, not the engine; the engine ignores them.
SERVICE_KEYS = ("network_id", "dataset_id", "checkpoint_every", "init_from", "name")
ENGINE_KEYS = (
    "loss",
    "reduction",
    "optimizer",
    "epochs",
    "batch_size",
    "shuffle",
    "seed",
    "validation",
    "early_stopping",
    "history_every",
    "dtype",
    "history_max_points",
    "lr_schedule",
    "grad_clip",
    "metrics",
    "loss_options",
)


@dataclass(frozen=True)
class ValidationConfig:
    """Either a seeded fraction of the data, or a separate dataset the caller supplies."""

    fraction: float | None = None
    dataset_id: str | None = None


@dataclass(frozen=True)
class EarlyStoppingConfig:
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs."""

    monitor: str
    patience: int = 10
    min_delta: float = 0.0
    restore_best: bool = True


@dataclass(frozen=True)
class FitConfig:
    """A validated training config. Build it with :meth:`from_dict`.

    Besides the basics (``loss``, ``reduction``, ``optimizer``, ``epochs``,
    ``batch_size``, ``shuffle``, ``seed``, ``validation``, ``early_stopping``,
    ``history_every``, ``dtype``): ``history_max_points`` (:mod:`engine.history`),
    ``lr_schedule`` (:mod:`engine.schedule_config`), ``grad_clip``
    (:mod:`engine.clipping`), ``metrics`` (:mod:`engine.metrics`) and
    ``loss_options`` (:mod:`engine.loss_options`). Unset, each of these costs
    nothing: training runs the same code as without them.
    """

    loss: str
    reduction: str
    optimizer: OptimizerConfig
    epochs: int
    batch_size: int | None
    shuffle: bool
    seed: int | None
    validation: ValidationConfig | None
    early_stopping: EarlyStoppingConfig | None
    history_every: int
    dtype: str
    history_max_points: int | None = None
    lr_schedule: ScheduleConfig | None = None
    grad_clip: ClipConfig | None = None
    metrics: tuple[str, ...] = ()
    loss_options: LossOptions = field(default_factory=LossOptions)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | FitConfig) -> FitConfig:
        """Validate a JSON-shaped config; raise :class:`ConfigError` naming the field.

        Keys the service owns (``network_id``, ``dataset_id``, ``checkpoint_every``,
        ``init_from``) are ignored; any other unknown key is an error.
        """
        if isinstance(raw, FitConfig):
            return raw
        obj = as_mapping(raw, ())
        reject_unknown(obj, (*ENGINE_KEYS, *SERVICE_KEYS), ())
        validation = parse_validation(obj.get("validation"))
        loss = get_choice(obj, "loss", tuple(LOSSES), (), default="mse")
        epochs = require_int(obj, "epochs", (), default=100, minimum=1, maximum=MAX_EPOCHS)
        return cls(
            loss=loss,
            reduction=get_choice(obj, "reduction", REDUCTIONS, (), default="mean"),
            optimizer=parse_optimizer(obj.get("optimizer")),
            epochs=epochs,
            batch_size=get_int(obj, "batch_size", (), minimum=1),
            shuffle=get_bool(obj, "shuffle", (), True),
            seed=get_int(obj, "seed", (), minimum=0, maximum=MAX_SEED),
            validation=validation,
            early_stopping=parse_early_stopping(obj.get("early_stopping"), validation),
            history_every=require_int(obj, "history_every", (), default=1, minimum=1),
            dtype=get_choice(obj, "dtype", DTYPES, (), default="float64"),
            history_max_points=get_int(
                obj, "history_max_points", (), minimum=MIN_HISTORY_POINTS, maximum=MAX_EPOCHS
            ),
            lr_schedule=parse_schedule(obj.get("lr_schedule"), epochs, validation is not None),
            grad_clip=parse_clip(obj.get("grad_clip")),
            metrics=parse_metrics(obj.get("metrics"), LOSSES[loss].is_classification, loss),
            loss_options=parse_loss_options(obj.get("loss_options"), loss),
        )

    def with_seed(self, seed: int) -> FitConfig:
        """A copy with ``seed`` filled in."""
        return FitConfig(**{**self.__dict__, "seed": seed})

    def to_dict(self) -> dict[str, Any]:
        """The normalized JSON form, defaults filled in."""
        validation: dict[str, Any] | None = None
        if self.validation is not None:
            validation = (
                {"fraction": self.validation.fraction}
                if self.validation.fraction is not None
                else {"dataset_id": self.validation.dataset_id}
            )
        early = None if self.early_stopping is None else dict(self.early_stopping.__dict__)
        return {
            "loss": self.loss,
            "reduction": self.reduction,
            "optimizer": optimizer_to_dict(self.optimizer),
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "shuffle": self.shuffle,
            "seed": self.seed,
            "validation": validation,
            "early_stopping": early,
            "history_every": self.history_every,
            "dtype": self.dtype,
            "history_max_points": self.history_max_points,
            "lr_schedule": schedule_to_dict(self.lr_schedule),
            "grad_clip": None if self.grad_clip is None else self.grad_clip.to_dict(),
            "metrics": list(self.metrics),
            "loss_options": self.loss_options.to_dict(self.loss),
        }


def parse_validation(raw: Any) -> ValidationConfig | None:
    """Validate ``validation``: ``{"fraction": f}`` or ``{"dataset_id": id}``."""
    if raw is None:
        return None
    loc: Loc = ("validation",)
    obj = as_mapping(raw, loc)
    reject_unknown(obj, ("fraction", "dataset_id"), loc)
    has_fraction = obj.get("fraction") is not None
    has_dataset = obj.get("dataset_id") is not None
    if has_fraction == has_dataset:
        raise ConfigError(loc, 'give exactly one of "fraction" (e.g. 0.2) or "dataset_id"')
    if has_dataset:
        dataset_id = obj["dataset_id"]
        if not isinstance(dataset_id, str) or not dataset_id:
            raise ConfigError((*loc, "dataset_id"), "must be a dataset id string")
        return ValidationConfig(dataset_id=dataset_id)
    fraction = get_float(
        obj,
        "fraction",
        loc,
        default=0.2,
        minimum=0.0,
        maximum=1.0,
        exclusive_minimum=True,
        exclusive_maximum=True,
    )
    return ValidationConfig(fraction=fraction)


def parse_early_stopping(
    raw: Any, validation: ValidationConfig | None
) -> EarlyStoppingConfig | None:
    """Validate ``early_stopping``; ``monitor`` defaults to ``val_loss`` when validating."""
    if raw is None:
        return None
    loc: Loc = ("early_stopping",)
    obj = as_mapping(raw, loc)
    reject_unknown(obj, ("monitor", "patience", "min_delta", "restore_best"), loc)
    default_monitor = "val_loss" if validation is not None else "loss"
    monitor = get_choice(obj, "monitor", MONITORS, loc, default=default_monitor)
    if monitor == "val_loss" and validation is None:
        raise ConfigError(
            (*loc, "monitor"),
            'val_loss needs a "validation" setting, e.g. {"fraction": 0.2}; or monitor "loss"',
        )
    return EarlyStoppingConfig(
        monitor=monitor,
        patience=require_int(obj, "patience", loc, default=10, minimum=1),
        min_delta=get_float(obj, "min_delta", loc, default=0.0, minimum=0.0),
        restore_best=get_bool(obj, "restore_best", loc, True),
    )
