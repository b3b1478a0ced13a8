"""Resume from a checkpoint taken mid-schedule, with dropout on: bit-identical for every new
optimizer; checkpoints written before issue 11 still resume exactly; mismatches are refused."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import engine
from engine.serialization import decode_state, encode_state

SPEC: dict[str, Any] = {
    "input_size": 4,
    "layers": [
        {"units": 8, "activation": "gelu", "dropout": 0.3},
        {"units": 6, "activation": "leaky_relu", "negative_slope": 0.05, "dropout": 0.2},
        {"units": 3, "activation": "softmax"},
    ],
    "init": {"scheme": "orthogonal", "seed": 11},
}

OPTIMIZERS: dict[str, dict[str, Any]] = {
    "adamw": {"name": "adamw", "learning_rate": 0.01, "amsgrad": True},
    "rmsprop": {"name": "rmsprop", "learning_rate": 0.005, "momentum": 0.5, "centered": True},
    "adagrad": {"name": "adagrad", "learning_rate": 0.05, "lr_decay": 0.01},
    "sgd_dampening": {"name": "sgd", "learning_rate": 0.05, "momentum": 0.9, "dampening": 0.2},
    "adam_amsgrad": {"name": "adam", "learning_rate": 0.01, "amsgrad": True, "weight_decay": 0.01},
}

SCHEDULES: dict[str, dict[str, Any]] = {
    "plateau": {
        "name": "plateau",
        "monitor": "val_loss",
        "patience": 1,
        "cooldown": 2,
        "threshold": 0.01,
    },
    "onecycle": {"name": "onecycle", "max_learning_rate": 0.05},
    "cosine": {"name": "cosine", "t_max": 12},
}


def config(optimizer: dict[str, Any], schedule: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {
        "loss": "cross_entropy",
        "optimizer": optimizer,
        "epochs": 30,
        "batch_size": 8,
        "seed": 3,
        "validation": {"fraction": 0.2},
        "lr_schedule": schedule,
        "grad_clip": {"max_norm": 1.0},
        "metrics": ["accuracy", "f1"],
        "loss_options": {"label_smoothing": 0.05},
        **changes,
    }


class StopAt(engine.Callback):
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch
        self.blob: bytes | None = None

    def on_epoch_end(
        self, trainer: engine.Trainer, epoch: int, logs: dict[str, float | None], recorded: bool
    ) -> None:
        if epoch == self.epoch:
            self.blob = encode_state(trainer.state(include_history=True))
            trainer.stop("paused")


class ScheduleStates(engine.Callback):
    """The schedule's state after every epoch."""

    def __init__(self) -> None:
        self.states: dict[int, dict[str, Any]] = {}

    def on_epoch_end(
        self, trainer: engine.Trainer, epoch: int, logs: dict[str, float | None], recorded: bool
    ) -> None:
        assert trainer.schedule is not None
        self.states[epoch] = trainer.schedule.state()


def paused(
    spec: dict[str, Any], blobs: tuple[Any, Any], cfg: dict[str, Any], epoch: int
) -> engine.TrainingState:
    stopper = StopAt(epoch)
    result = engine.fit(engine.Network.from_spec(spec), *blobs, cfg, callbacks=[stopper])
    assert result.stop_reason == "paused" and stopper.blob is not None
    return decode_state(stopper.blob)


@pytest.mark.parametrize("schedule", sorted(SCHEDULES))
@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_resume_mid_schedule_with_dropout_is_bit_identical(
    optimizer: str, schedule: str, dtype: str, blobs: tuple[np.ndarray, np.ndarray]
) -> None:
    cfg = config(OPTIMIZERS[optimizer], SCHEDULES[schedule], dtype=dtype)
    whole = engine.Network.from_spec(SPEC)
    counters = ScheduleStates()
    expected = engine.fit(whole, *blobs, cfg, callbacks=[counters])
    stop = 11
    if schedule == "plateau":  # stop with its counters in flight
        stop = next(
            epoch
            for epoch, state in counters.states.items()
            if epoch >= 5 and state["num_bad_epochs"] + state["cooldown_counter"] > 0
        )
    state = paused(SPEC, blobs, cfg, stop)
    assert state.meta["schedule"] == counters.states[stop]
    if schedule == "onecycle":
        assert state.meta["schedule"]["last_epoch"] == stop * 6  # 48 samples / 8 per batch
    second = engine.Network.from_spec(SPEC)
    resumed = engine.fit(second, *blobs, cfg, initial_state=state)
    np.testing.assert_array_equal(second.params, whole.params)
    assert resumed.history == expected.history
    assert len(set(expected.history["lr"])) > 2


def test_resuming_onecycle_with_other_epochs_is_refused(blobs: tuple[Any, Any]) -> None:
    cfg = config(OPTIMIZERS["adamw"], SCHEDULES["onecycle"])
    state = paused(SPEC, blobs, cfg, 5)
    net = engine.Network.from_spec(SPEC)
    before = net.params.copy()
    with pytest.raises(engine.ConfigError) as error:
        engine.fit(net, *blobs, {**cfg, "epochs": 40}, initial_state=state)
    assert error.value.loc == ("epochs",) and "onecycle" in error.value.reason
    np.testing.assert_array_equal(net.params, before)


def test_epoch_schedules_may_resume_with_more_epochs(blobs: tuple[Any, Any]) -> None:
    cfg = config(OPTIMIZERS["adagrad"], SCHEDULES["plateau"])
    state = paused(SPEC, blobs, cfg, 5)
    result = engine.fit(
        engine.Network.from_spec(SPEC), *blobs, {**cfg, "epochs": 40}, initial_state=state
    )
    assert result.epochs_run == 40


@pytest.mark.parametrize(
    ("change", "loc"),
    [
        ({"lr_schedule": {"name": "cosine", "t_max": 13}}, ("lr_schedule",)),
        ({"grad_clip": {"value": 1.0}}, ("grad_clip",)),
        ({"metrics": ["accuracy"]}, ("metrics",)),
        ({"loss_options": {"label_smoothing": 0.1}}, ("loss_options",)),
        ({"optimizer": {**OPTIMIZERS["adamw"], "amsgrad": False}}, ("optimizer",)),
    ],
)
def test_resuming_with_other_new_settings_is_refused(
    change: dict[str, Any], loc: tuple[str, ...], blobs: tuple[Any, Any]
) -> None:
    cfg = config(OPTIMIZERS["adamw"], SCHEDULES["cosine"])
    state = paused(SPEC, blobs, cfg, 5)
    with pytest.raises(engine.ConfigError) as error:
        engine.fit(engine.Network.from_spec(SPEC), *blobs, {**cfg, **change}, initial_state=state)
    assert error.value.loc == loc


def test_resuming_with_another_dropout_is_refused(blobs: tuple[Any, Any]) -> None:
    cfg = config(OPTIMIZERS["adamw"], SCHEDULES["cosine"])
    state = paused(SPEC, blobs, cfg, 5)
    other = {**SPEC, "layers": [dict(layer) for layer in SPEC["layers"]]}
    other["layers"][0]["dropout"] = 0.5
    with pytest.raises(engine.ConfigError) as error:
        engine.fit(engine.Network.from_spec(other), *blobs, cfg, initial_state=state)
    assert error.value.loc == ("initial_state",) and "layout" in error.value.reason


FIXTURE = Path(__file__).parent / "data" / "format1_checkpoints.json"


@pytest.mark.parametrize("case", [0, 1], ids=["sgd-nesterov", "adam"])
def test_checkpoints_written_before_issue_11_resume_exactly(case: int) -> None:
    """Format-1 checkpoints of the previous engine (no lr, no schedule, no dampening or
    amsgrad, no negative_slope in the layout) resume exactly as the same state in
    today's format does, and continue to the previous engine's results.

    Those results were stored by another machine: NumPy's exp and log (SIMD code
    chosen by the CPU) and BLAS kernels may round the last bit differently elsewhere,
    so they are compared to 1e-12; the two resumes on this machine bit for bit.
    """
    document = json.loads(FIXTURE.read_text())
    entry = document["cases"][case]
    state = decode_state(base64.b64decode(entry["checkpoint_base64"]))
    assert "lr" not in state.meta["optimizer"] and "schedule" not in state.meta
    assert "negative_slope" not in state.meta["layout"]["layers"][1]
    net = engine.Network.from_spec(document["spec"])
    result = engine.fit(net, document["X"], document["y"], entry["config"], initial_state=state)

    again = engine.Network.from_spec(document["spec"])
    today = decode_state(encode_state(decode_state(base64.b64decode(entry["checkpoint_base64"]))))
    resumed = engine.fit(again, document["X"], document["y"], entry["config"], initial_state=today)
    assert net.params.tobytes() == again.params.tobytes()
    assert result.history == resumed.history

    np.testing.assert_allclose(net.params, entry["final_params"], rtol=1e-12, atol=1e-15)
    assert result.history.keys() == entry["history"].keys()
    for key, values in entry["history"].items():
        np.testing.assert_allclose(result.history[key], values, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize(
    "optimizer",
    [
        *OPTIMIZERS.values(),
        {"name": "sgd"},
        {"name": "adam"},
        {"name": "rmsprop", "momentum": 0.5},
        {"name": "rmsprop", "centered": True},
    ],
    ids=str,
)
def test_state_slots_counts_the_optimizers_checkpoint_arrays(optimizer: dict[str, Any]) -> None:
    from engine.optimizer_config import parse_optimizer
    from engine.optimizers import make_optimizer, state_slots

    config = parse_optimizer(optimizer)
    arrays, _ = make_optimizer(config, 7, np.dtype(np.float64)).state()
    assert state_slots(config) == len(arrays)
    assert all(array.shape == (7,) for array in arrays.values())
