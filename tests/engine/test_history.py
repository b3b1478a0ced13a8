"""History thinning (``history_max_points``): the stateless doubling rule, its bound, fit and resume."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

import engine
from engine.history import MIN_HISTORY_POINTS, history_interval, is_recorded
from engine.serialization import decode_state, encode_state


def rule_by_definition(epoch: int, every: int, cap: int | None) -> bool:
    """The documented rule, written out: interval h up to h*cap, then h*2^k on (h*cap*2^(k-1), h*cap*2^k]."""
    if cap is None or epoch <= every * cap:
        return epoch % every == 0
    k = 1
    while epoch > every * cap * 2**k:
        k += 1
    return epoch % (every * 2**k) == 0


def documented_bound(epochs: int, every: int, cap: int) -> int:
    doublings = max(0, math.ceil(math.log2(epochs / (every * cap))))
    return cap + math.ceil(cap / 2) * doublings + 1


CASES = [
    (epochs, every, cap)
    for epochs in (1, 9, 10, 11, 39, 40, 41, 100, 1000, 4097)
    for every in (1, 2, 3)
    for cap in (None, 10, 11, 25)
]


@pytest.mark.parametrize(("epochs", "every", "cap"), CASES)
def test_history_epochs_follow_the_documented_rule(
    epochs: int, every: int, cap: int | None
) -> None:
    expected = [e for e in range(1, epochs + 1) if rule_by_definition(e, every, cap)]
    if not expected or expected[-1] != epochs:
        expected.append(epochs)  # the last epoch run is always recorded
    assert engine.history_epochs(epochs, every, cap) == expected
    assert engine.history_points(epochs, every, cap) == len(expected)
    for epoch in range(1, epochs + 1):
        assert is_recorded(epoch, every, cap) == rule_by_definition(epoch, every, cap)


@pytest.mark.parametrize("every", [1, 2, 7])
@pytest.mark.parametrize("cap", [10, 11, 100, 1001])
def test_the_number_of_points_stays_within_the_documented_bound(every: int, cap: int) -> None:
    previous = 0
    for epochs in [*range(1, 3000, 7), 10**6, 10**8 - 1, 10**8]:
        points = engine.history_points(epochs, every, cap)
        assert points <= documented_bound(epochs, every, cap)
        assert points >= previous, "the count must never decrease with epochs"
        previous = points
    # A hundred million epochs stay within a few thousand points (h=1, cap=1001: 1001 + 501*17 + 1).
    assert engine.history_points(10**8, every, cap) <= cap + math.ceil(cap / 2) * 24 + 1


def test_without_a_cap_the_count_grows_with_the_epochs() -> None:
    assert engine.history_points(10**6, 1, None) == 10**6
    assert engine.history_points(10**6 + 1, 3, None) == 333_333 + 1


def test_the_interval_doubles_at_each_boundary() -> None:
    assert history_interval(1, 1, 10) == (1, 10)
    assert history_interval(10, 1, 10) == (1, 10)
    assert history_interval(11, 1, 10) == (2, 20)
    assert history_interval(21, 1, 10) == (4, 40)
    assert history_interval(41, 2, 10) == (8, 80)
    assert history_interval(12345, 3, None) == (3, 0)


# -- in fit -------------------------------------------------------------------------------------

X = np.random.default_rng(0).normal(size=(12, 3))
Y = X @ np.array([[0.5], [-1.0], [0.25]])
SPEC: dict[str, Any] = {
    "input_size": 3,
    "layers": [{"units": 4, "activation": "tanh"}, {"units": 1, "activation": "identity"}],
    "init": {"seed": 5},
}


def config(**changes: Any) -> dict[str, Any]:
    return {
        "loss": "mse",
        "optimizer": {"name": "sgd", "learning_rate": 0.01, "momentum": 0.5},
        "epochs": 200,
        "batch_size": 5,
        "seed": 1,
        "history_every": 2,
        "history_max_points": 10,
        **changes,
    }


class Recorder(engine.Callback):
    def __init__(self, stop_at: int | None = None) -> None:
        self.recorded: list[int] = []
        self.stop_at = stop_at
        self.blob: bytes | None = None

    def on_epoch_end(
        self, trainer: engine.Trainer, epoch: int, logs: dict[str, float | None], recorded: bool
    ) -> None:
        if recorded:
            self.recorded.append(epoch)
        if epoch == self.stop_at:
            self.blob = encode_state(trainer.state(include_history=True))
            trainer.stop("paused")


@pytest.mark.parametrize(
    "changes",
    [{}, {"validation": {"fraction": 0.25}}, {"batch_size": None}, {"history_every": 1}],
    ids=["loss-only", "validation", "full-batch", "every-epoch"],
)
def test_fit_records_exactly_the_rules_epochs(changes: dict[str, Any]) -> None:
    cfg = config(**changes)
    recorder = Recorder()
    result = engine.fit(engine.Network.from_spec(SPEC), X, Y, cfg, callbacks=[recorder])
    expected = engine.history_epochs(200, cfg["history_every"], 10)
    assert result.history["epoch"] == expected
    assert (
        len(result.history["loss"])
        == len(expected)
        <= documented_bound(200, cfg["history_every"], 10)
    )
    assert recorder.recorded == [e for e in expected if is_recorded(e, cfg["history_every"], 10)]
    # The losses are those of the same epochs of an unthinned run.
    full = engine.fit(engine.Network.from_spec(SPEC), X, Y, {**cfg, "history_max_points": None})
    by_epoch = dict(zip(full.history["epoch"], full.history["loss"], strict=True))
    assert result.history["loss"] == [by_epoch[e] for e in expected]


def test_the_cap_does_not_change_the_training() -> None:
    capped, free = engine.Network.from_spec(SPEC), engine.Network.from_spec(SPEC)
    engine.fit(capped, X, Y, config())
    engine.fit(free, X, Y, config(history_max_points=None))
    np.testing.assert_array_equal(capped.params, free.params)


@pytest.mark.parametrize("stop_epoch", [19, 20, 21, 40, 77])
def test_resume_across_a_doubling_boundary_is_bit_identical(stop_epoch: int) -> None:
    cfg = config(history_every=1, epochs=100)  # boundaries after epochs 10, 20, 40, 80
    whole = engine.Network.from_spec(SPEC)
    expected = engine.fit(whole, X, Y, cfg)
    stopper = Recorder(stop_at=stop_epoch)
    engine.fit(engine.Network.from_spec(SPEC), X, Y, cfg, callbacks=[stopper])
    assert stopper.blob is not None
    second = engine.Network.from_spec(SPEC)
    resumed = engine.fit(second, X, Y, cfg, initial_state=decode_state(stopper.blob))
    np.testing.assert_array_equal(second.params, whole.params)
    assert resumed.history == expected.history
    assert expected.history["epoch"] == engine.history_epochs(100, 1, 10)


def test_resuming_with_another_cap_is_refused() -> None:
    cfg = config(epochs=50)
    stopper = Recorder(stop_at=30)
    engine.fit(engine.Network.from_spec(SPEC), X, Y, cfg, callbacks=[stopper])
    assert stopper.blob is not None
    with pytest.raises(engine.ConfigError) as error:
        engine.fit(
            engine.Network.from_spec(SPEC),
            X,
            Y,
            {**cfg, "history_max_points": 20},
            initial_state=decode_state(stopper.blob),
        )
    assert error.value.loc == ("history_max_points",)


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (MIN_HISTORY_POINTS - 1, f"at least {MIN_HISTORY_POINTS}"),
        (0, "at least"),
        (12.5, "integer"),
        ("100", "integer"),
        (True, "integer"),
    ],
)
def test_invalid_history_max_points_names_the_field(value: Any, words: str) -> None:
    with pytest.raises(engine.ConfigError) as error:
        engine.FitConfig.from_dict({"history_max_points": value})
    assert error.value.loc == ("history_max_points",)
    assert words in error.value.reason


def test_the_normalized_config_keeps_the_cap() -> None:
    assert engine.FitConfig.from_dict({}).to_dict()["history_max_points"] is None
    assert (
        engine.FitConfig.from_dict({"history_max_points": 500}).to_dict()["history_max_points"]
        == 500
    )
