"""Same spec, data, config and seed give bit-identical weights and history."""

from __future__ import annotations

from typing import Any

import numpy as np

import engine

CONFIG: dict[str, Any] = {
    "loss": "cross_entropy",
    "optimizer": {"name": "adam", "learning_rate": 0.01},
    "epochs": 25,
    "batch_size": 7,
    "shuffle": True,
    "seed": 5,
    "validation": {"fraction": 0.25},
}


def train(spec: dict[str, Any], X: np.ndarray, y: np.ndarray, **changes: Any) -> tuple[Any, ...]:
    net = engine.Network.from_spec(spec)
    result = engine.fit(net, X, y, {**CONFIG, **changes})
    return net.params.copy(), result.history


def test_same_seed_gives_bit_identical_weights_and_history(
    classifier_spec: dict[str, Any], blobs: tuple[np.ndarray, np.ndarray]
) -> None:
    params_a, history_a = train(classifier_spec, *blobs)
    params_b, history_b = train(classifier_spec, *blobs)
    np.testing.assert_array_equal(params_a, params_b)
    assert history_a == history_b
    assert history_a["epoch"] == list(range(1, 26))


def test_a_different_seed_gives_different_weights_and_history(
    classifier_spec: dict[str, Any], blobs: tuple[np.ndarray, np.ndarray]
) -> None:
    params_a, history_a = train(classifier_spec, *blobs)
    params_b, history_b = train(classifier_spec, *blobs, seed=6)
    assert not np.array_equal(params_a, params_b)
    assert history_a["loss"] != history_b["loss"]


def test_a_different_init_seed_gives_different_initial_weights(
    classifier_spec: dict[str, Any],
) -> None:
    a = engine.Network.from_spec(classifier_spec)
    b = engine.Network.from_spec({**classifier_spec, "init": {"scheme": "he_uniform", "seed": 12}})
    rebuilt = engine.Network.from_spec(classifier_spec)
    assert not np.array_equal(a.params, b.params)
    np.testing.assert_array_equal(a.params, rebuilt.params)


def test_a_missing_seed_is_drawn_and_reported_so_the_run_can_be_repeated(
    classifier_spec: dict[str, Any], blobs: tuple[np.ndarray, np.ndarray]
) -> None:
    net = engine.Network.from_spec(classifier_spec)
    result = engine.fit(net, *blobs, {**CONFIG, "seed": None})
    params_again, history_again = train(classifier_spec, *blobs, seed=result.seed)
    np.testing.assert_array_equal(net.params, params_again)
    assert result.history == history_again
