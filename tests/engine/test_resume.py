"""Stop at epoch k, save the checkpoint state, resume: bit-identical to an uninterrupted run."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import engine
from engine.serialization import decode_state, encode_state

OPTIMIZERS = {
    "sgd_nesterov": {
        "name": "sgd",
        "learning_rate": 0.05,
        "momentum": 0.9,
        "nesterov": True,
        "weight_decay": 1e-4,
    },
    "adam": {"name": "adam", "learning_rate": 0.01, "weight_decay": 1e-4},
}


def config(optimizer: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {
        "loss": "cross_entropy",
        "optimizer": optimizer,
        "epochs": 30,
        "batch_size": 8,
        "shuffle": True,
        "seed": 3,
        "validation": {"fraction": 0.2},
        "early_stopping": {"monitor": "val_loss", "patience": 1000, "restore_best": True},
        "history_every": 2,
        **changes,
    }


class StopAt(engine.Callback):
    """Take the checkpoint state at ``epoch`` and stop, as a crash-safe service would."""

    def __init__(self, epoch: int, include_history: bool) -> None:
        self.epoch = epoch
        self.include_history = include_history
        self.blob: bytes | None = None

    def on_epoch_end(
        self, trainer: engine.Trainer, epoch: int, logs: dict[str, float | None], recorded: bool
    ) -> None:
        if epoch == self.epoch:
            self.blob = encode_state(trainer.state(include_history=self.include_history))
            trainer.stop("paused")


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("stop_epoch", [1, 11, 29])
def test_resume_is_bit_identical_to_an_uninterrupted_run(
    optimizer: str,
    stop_epoch: int,
    classifier_spec: dict[str, Any],
    blobs: tuple[np.ndarray, np.ndarray],
) -> None:
    cfg = config(OPTIMIZERS[optimizer])
    whole = engine.Network.from_spec(classifier_spec)
    expected = engine.fit(whole, *blobs, cfg)

    first = engine.Network.from_spec(classifier_spec)
    stopper = StopAt(stop_epoch, include_history=True)
    paused = engine.fit(first, *blobs, cfg, callbacks=[stopper])
    assert paused.stop_reason == "paused" and paused.epochs_run == stop_epoch
    assert stopper.blob is not None

    second = engine.Network.from_spec(classifier_spec)
    resumed = engine.fit(second, *blobs, cfg, initial_state=decode_state(stopper.blob))
    np.testing.assert_array_equal(second.params, whole.params)
    assert resumed.history == expected.history
    assert resumed.epochs_run == expected.epochs_run == 30
    assert (resumed.best_value, resumed.best_epoch) == (expected.best_value, expected.best_epoch)


def test_resume_without_history_returns_the_epochs_after_the_checkpoint(
    classifier_spec: dict[str, Any], blobs: tuple[np.ndarray, np.ndarray]
) -> None:
    cfg = config(OPTIMIZERS["adam"], history_every=1)
    expected = engine.fit(engine.Network.from_spec(classifier_spec), *blobs, cfg)
    stopper = StopAt(12, include_history=False)
    engine.fit(engine.Network.from_spec(classifier_spec), *blobs, cfg, callbacks=[stopper])
    assert stopper.blob is not None
    resumed = engine.fit(
        engine.Network.from_spec(classifier_spec),
        *blobs,
        cfg,
        initial_state=decode_state(stopper.blob),
    )
    tail = {key: column[12:] for key, column in expected.history.items()}
    assert resumed.history == tail


def test_resume_in_float32_with_full_batches_is_bit_identical(
    classifier_spec: dict[str, Any], blobs: tuple[np.ndarray, np.ndarray]
) -> None:
    cfg = config(OPTIMIZERS["sgd_nesterov"], dtype="float32", batch_size=None)
    whole = engine.Network.from_spec(classifier_spec)
    engine.fit(whole, *blobs, cfg)
    stopper = StopAt(7, include_history=True)
    engine.fit(engine.Network.from_spec(classifier_spec), *blobs, cfg, callbacks=[stopper])
    assert stopper.blob is not None
    second = engine.Network.from_spec(classifier_spec)
    engine.fit(second, *blobs, cfg, initial_state=decode_state(stopper.blob))
    assert second.params.dtype == np.float32
    np.testing.assert_array_equal(second.params, whole.params)


def test_a_resumed_run_without_early_stopping_state_also_matches(
    classifier_spec: dict[str, Any], blobs: tuple[np.ndarray, np.ndarray]
) -> None:
    cfg = config(OPTIMIZERS["sgd_nesterov"], early_stopping=None, validation=None)
    whole = engine.Network.from_spec(classifier_spec)
    expected = engine.fit(whole, *blobs, cfg)
    stopper = StopAt(16, include_history=True)
    engine.fit(engine.Network.from_spec(classifier_spec), *blobs, cfg, callbacks=[stopper])
    assert stopper.blob is not None
    second = engine.Network.from_spec(classifier_spec)
    resumed = engine.fit(second, *blobs, cfg, initial_state=decode_state(stopper.blob))
    np.testing.assert_array_equal(second.params, whole.params)
    assert resumed.history == expected.history


def paused_state(
    spec: dict[str, Any], blobs: tuple[np.ndarray, np.ndarray], cfg: dict[str, Any]
) -> engine.TrainingState:
    stopper = StopAt(5, include_history=False)
    engine.fit(engine.Network.from_spec(spec), *blobs, cfg, callbacks=[stopper])
    assert stopper.blob is not None
    return decode_state(stopper.blob)


def test_resuming_a_network_of_another_layout_with_the_same_parameter_count_is_refused(
    classifier_spec: dict[str, Any], blobs: tuple[np.ndarray, np.ndarray]
) -> None:
    cfg = config(OPTIMIZERS["adam"])
    state = paused_state(classifier_spec, blobs, cfg)
    relabelled = {**classifier_spec, "layers": [dict(layer) for layer in classifier_spec["layers"]]}
    relabelled["layers"][0]["activation"] = "sigmoid"  # same shapes, another network
    net = engine.Network.from_spec(relabelled)
    assert net.n_parameters == engine.Network.from_spec(classifier_spec).n_parameters
    with pytest.raises(engine.ConfigError) as error:
        engine.fit(net, *blobs, cfg, initial_state=state)
    assert error.value.loc == ("initial_state",) and "layout" in error.value.reason


@pytest.mark.parametrize(
    ("change", "loc"),
    [
        ({"optimizer": {**OPTIMIZERS["adam"], "learning_rate": 0.02}}, ("optimizer",)),
        ({"batch_size": 9}, ("batch_size",)),
        ({"validation": {"fraction": 0.3}}, ("validation",)),
        ({"history_every": 3}, ("history_every",)),
    ],
)
def test_resuming_with_other_training_settings_is_refused(
    change: dict[str, Any],
    loc: tuple[str, ...],
    classifier_spec: dict[str, Any],
    blobs: tuple[np.ndarray, np.ndarray],
) -> None:
    cfg = config(OPTIMIZERS["adam"])
    state = paused_state(classifier_spec, blobs, cfg)
    with pytest.raises(engine.ConfigError) as error:
        engine.fit(
            engine.Network.from_spec(classifier_spec),
            *blobs,
            {**cfg, **change},
            initial_state=state,
        )
    assert error.value.loc == loc
    assert "only epochs may change" in error.value.reason


def test_resuming_with_more_epochs_extends_the_run(
    classifier_spec: dict[str, Any], blobs: tuple[np.ndarray, np.ndarray]
) -> None:
    cfg = config(OPTIMIZERS["adam"])
    state = paused_state(classifier_spec, blobs, cfg)
    result = engine.fit(
        engine.Network.from_spec(classifier_spec),
        *blobs,
        {**cfg, "epochs": 40},
        initial_state=state,
    )
    assert result.epochs_run == 40
