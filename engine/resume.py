"""A trainer's checkpoint: taking it, checking that it fits a run, and continuing from it.

The state holds everything the next epoch depends on: the parameters, the
optimizer's buffers, counters and current learning rate, the shuffling (and, with
dropout, the dropout) generator, the schedule's counters, early stopping's best
and patience, and optionally the history so far. Resuming from it is
bit-identical to never having stopped.

Checkpoints written before schedules, dropout and the newer optimizers (the same
format 1, without those keys) still load: their absent settings are read as the
defaults they had, and a run that uses none of the new settings continues from
them exactly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from engine.checkpoint import STATE_FORMAT, TrainingState, rng_state_from_json, rng_state_to_json
from engine.config import FitConfig
from engine.errors import ConfigError
from engine.network import Network, normalize_layers

if TYPE_CHECKING:
    from engine.fit import Trainer


def network_layout(network: Network) -> dict[str, Any]:
    """The input size and layers of ``network`` (what a checkpoint's weights assume)."""
    spec = network.spec
    return {"input_size": spec["input_size"], "layers": spec["layers"]}


def resumable_config(config: FitConfig) -> dict[str, Any]:
    """The training settings a resumed run must share with its checkpoint (all but epochs)."""
    settings = config.to_dict()
    del settings["epochs"]
    return settings


def trainer_state(trainer: Trainer, include_history: bool) -> TrainingState:
    """:meth:`Trainer.state`."""
    network, config = trainer.network, trainer.config
    opt_arrays, opt_meta = trainer.optimizer.state()
    arrays: dict[str, NDArray[Any]] = {"params": network.params.copy()}
    arrays.update({f"optimizer.{k}": v for k, v in opt_arrays.items()})
    if trainer.best_params is not None:
        arrays["best_params"] = trainer.best_params.copy()
    if include_history:
        for key, column in trainer.history.items():
            values = [math.nan if v is None else v for v in column]
            arrays[f"history.{key}"] = np.asarray(
                values, dtype=np.int64 if key == "epoch" else np.float64
            )
    meta: dict[str, Any] = {
        "format": STATE_FORMAT,
        "epoch": trainer.epoch,
        "seed": config.seed,
        "rng": rng_state_to_json(dict(trainer.shuffle_rng.bit_generator.state)),
        "optimizer": {"name": config.optimizer.name, **opt_meta},
        "best": {"value": trainer.best_value, "epoch": trainer.best_epoch, "wait": trainer.wait},
        "dtype": config.dtype,
        "n_parameters": network.n_parameters,
        "has_history": include_history,
        "layout": network_layout(network),
        "config": resumable_config(config),
    }
    if trainer.schedule is not None:
        meta["schedule"] = trainer.schedule.state()
    if network.has_dropout:
        meta["dropout_rng"] = rng_state_to_json(dict(trainer.dropout_rng.bit_generator.state))
    return TrainingState(arrays=arrays, meta=meta)


def check_state(trainer: Trainer, state: TrainingState) -> None:
    """Raise :class:`ConfigError` unless ``state`` can continue ``trainer``'s run."""
    meta, network, config = state.meta, trainer.network, trainer.config
    if meta.get("format") != STATE_FORMAT:
        raise ConfigError(
            ("initial_state",), f"unsupported checkpoint format {meta.get('format')!r}"
        )
    if int(meta["n_parameters"]) != network.n_parameters:
        raise ConfigError(
            ("initial_state",),
            f"the checkpoint has {meta['n_parameters']} "
            f"parameters but the network has {network.n_parameters}",
        )
    if meta["optimizer"]["name"] != config.optimizer.name:
        raise ConfigError(
            ("optimizer", "name"),
            f"differs from the checkpoint's optimizer {meta['optimizer']['name']!r}",
        )
    if meta["dtype"] != config.dtype:
        raise ConfigError(("dtype",), f"differs from the checkpoint's dtype {meta['dtype']!r}")
    _check_same_run(trainer, meta)
    needed = set(trainer.optimizer.state()[0])
    stored = {k.removeprefix("optimizer.") for k in state.arrays if k.startswith("optimizer.")}
    if needed != stored:
        raise ConfigError(
            ("optimizer",),
            f"keeps state {sorted(needed)} but the checkpoint has {sorted(stored)}; "
            "resume with the optimizer settings it was trained with (e.g. the same momentum)",
        )
    if trainer.schedule is not None:
        schedule_state = meta.get("schedule")
        if schedule_state is None:
            raise ConfigError(
                ("lr_schedule",), "the checkpoint was taken without a learning-rate schedule"
            )
        trainer.schedule.check_state(schedule_state)
    if network.has_dropout and meta.get("dropout_rng") is None:
        raise ConfigError(("initial_state",), "the checkpoint was taken without dropout")


def _normalized_layout(layout: Mapping[str, Any]) -> Mapping[str, Any]:
    """A stored layout with today's defaults filled in (older checkpoints lack some keys)."""
    try:
        return {"input_size": layout["input_size"], "layers": normalize_layers(layout["layers"])}
    except (ConfigError, KeyError, TypeError):
        return layout


def _normalized_config(stored: Mapping[str, Any], epochs: int) -> Mapping[str, Any]:
    """A stored config parsed again, so settings added since it was written take their defaults."""
    try:
        return resumable_config(FitConfig.from_dict({**stored, "epochs": epochs}))
    except (ConfigError, TypeError):
        return stored


def _check_same_run(trainer: Trainer, meta: Mapping[str, Any]) -> None:
    """The network layout and every training setting but ``epochs`` must match."""
    layout, current_layout = meta.get("layout"), network_layout(trainer.network)
    if layout is not None and _normalized_layout(layout) != current_layout:
        raise ConfigError(
            ("initial_state",),
            f"the checkpoint was trained on a network with layout {layout}, not {current_layout}",
        )
    stored = meta.get("config")
    if stored is None:
        return
    stored = _normalized_config(stored, trainer.config.epochs)
    for key, value in resumable_config(trainer.config).items():
        if stored.get(key) != value:
            raise ConfigError(
                (key,),
                f"is {value!r} but the checkpoint was trained with {stored.get(key)!r}; "
                "resume with the same settings (only epochs may change)",
            )


def restore(trainer: Trainer, state: TrainingState) -> None:
    """Continue ``trainer`` from ``state`` (checked by :func:`check_state`)."""
    meta, network = state.meta, trainer.network
    network.params[...] = state.arrays["params"]
    trainer.optimizer.load_state(
        {
            k.removeprefix("optimizer."): v
            for k, v in state.arrays.items()
            if k.startswith("optimizer.")
        },
        meta["optimizer"],
    )
    trainer.shuffle_rng.bit_generator.state = rng_state_from_json(meta["rng"])
    if network.has_dropout:
        trainer.dropout_rng.bit_generator.state = rng_state_from_json(meta["dropout_rng"])
    if trainer.schedule is not None:
        trainer.schedule.load_state(meta["schedule"])
    trainer.epoch = int(meta["epoch"])
    best = meta["best"]
    trainer.best_value = best["value"]
    trainer.best_epoch = best["epoch"]
    trainer.wait = int(best["wait"])
    if "best_params" in state.arrays:
        trainer.best_params = np.array(state.arrays["best_params"], dtype=network.dtype)
    if meta.get("has_history"):
        for key in trainer.history:
            column = state.arrays[f"history.{key}"].tolist()
            trainer.history[key] = (
                [int(v) for v in column]
                if key == "epoch"
                else [None if math.isnan(v) else v for v in column]
            )
