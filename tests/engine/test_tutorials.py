"""The classic tutorials, reproduced exactly by the engine.

Each test writes the tutorial's own hand-written NumPy loop and compares the
engine's weights with it. The delta rule ``W += X.T @ ((y - out) * out * (1 - out))``
is ``loss mse, reduction sum, sgd, learning_rate 0.5`` (the sum of squares has
gradient ``2 (out - y)``), and the cross-entropy delta ``W += X.T @ (y - out)`` is
``binary_cross_entropy, sum, learning_rate 1``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import engine

TRUTH_TABLE_X = np.array([[0, 0, 1], [0, 1, 1], [1, 0, 1], [1, 1, 1]])
DELTA_RULE = {
    "loss": "mse",
    "reduction": "sum",
    "optimizer": {"name": "sgd", "learning_rate": 0.5},
}


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


def no_bias_network(sizes: list[int], weights: list[np.ndarray]) -> engine.Network:
    spec: dict[str, Any] = {
        "input_size": sizes[0],
        "layers": [{"units": units, "activation": "sigmoid", "bias": False} for units in sizes[1:]],
        "weights": [{"weights": w.tolist(), "bias": None} for w in weights],
    }
    return engine.Network.from_spec(spec)


def trask_single_layer(iterations: int) -> tuple[np.ndarray, np.ndarray]:
    """ "A neural network in 11 lines of Python", part 1, verbatim (returns syn0 and the last l1)."""

    def nonlin(x: np.ndarray, deriv: bool = False) -> np.ndarray:
        if deriv:
            return x * (1 - x)
        return 1 / (1 + np.exp(-x))

    X = TRUTH_TABLE_X
    y = np.array([[0, 0, 1, 1]]).T
    np.random.seed(1)
    syn0 = 2 * np.random.random((3, 1)) - 1
    l1 = np.empty((4, 1))
    for _ in range(iterations):
        l0 = X
        l1 = nonlin(np.dot(l0, syn0))
        l1_error = y - l1
        l1_delta = l1_error * nonlin(l1, True)
        syn0 += np.dot(l0.T, l1_delta)
    return syn0, l1


def initial_single_layer() -> np.ndarray:
    np.random.seed(1)
    return 2 * np.random.random((3, 1)) - 1


def test_single_layer_truth_table_matches_the_tutorial_loop() -> None:
    syn0, _ = trask_single_layer(10_000)
    net = no_bias_network([3, 1], [initial_single_layer()])
    result = engine.fit(net, TRUTH_TABLE_X, [0, 0, 1, 1], {**DELTA_RULE, "epochs": 10_000})
    assert result.stop_reason == "completed"
    np.testing.assert_allclose(net.get_weights()[0]["weights"], syn0, rtol=0, atol=1e-9)


def test_single_layer_reproduces_the_tutorials_printed_output() -> None:
    # The tutorial prints l1 of its last iteration, i.e. the output of the weights
    # after 9,999 updates: [[0.00966449] [0.00786506] [0.99358898] [0.99211957]].
    net = no_bias_network([3, 1], [initial_single_layer()])
    engine.fit(net, TRUTH_TABLE_X, [0, 0, 1, 1], {**DELTA_RULE, "epochs": 9_999})
    printed = np.array([0.00966449, 0.00786506, 0.99358898, 0.99211957])
    np.testing.assert_array_equal(np.round(net.predict(TRUTH_TABLE_X)[:, 0], 8), printed)


def xor_initial_weights() -> tuple[np.ndarray, np.ndarray]:
    np.random.seed(1)
    Wh = np.random.random((3, 4)) * np.sqrt(2 / 3)
    Wo = np.random.random((4, 1)) * np.sqrt(2 / 4)
    return Wh, Wo


def xor_tutorial_loop(iterations: int) -> tuple[np.ndarray, np.ndarray]:
    """The XOR network 3 -> 4 -> 1 with the delta rule, as the tutorials write it."""
    X = TRUTH_TABLE_X.astype(float)
    y = np.array([[0], [1], [1], [0]], dtype=float)
    Wh, Wo = xor_initial_weights()
    for _ in range(iterations):
        H = sigmoid(X @ Wh)
        out = sigmoid(H @ Wo)
        d_out = (y - out) * out * (1 - out)
        d_h = d_out @ Wo.T * H * (1 - H)
        Wo += H.T @ d_out
        Wh += X.T @ d_h
    return Wh, Wo


def test_xor_network_matches_the_tutorial_loop_bit_for_bit() -> None:
    Wh, Wo = xor_tutorial_loop(100_000)
    net = no_bias_network([3, 4, 1], list(xor_initial_weights()))
    result = engine.fit(net, TRUTH_TABLE_X, [0, 1, 1, 0], {**DELTA_RULE, "epochs": 100_000})
    weights = net.get_weights()
    np.testing.assert_allclose(weights[0]["weights"], Wh, rtol=0, atol=1e-9)
    np.testing.assert_allclose(weights[1]["weights"], Wo, rtol=0, atol=1e-9)
    # Stronger than the 1e-9 asked for: the same floating-point operations in the same order.
    np.testing.assert_array_equal(weights[0]["weights"], Wh)
    np.testing.assert_array_equal(weights[1]["weights"], Wo)
    out = net.predict(TRUTH_TABLE_X)[:, 0]
    assert out[0] < 0.01 and out[3] < 0.01
    assert out[1] > 0.99 and out[2] > 0.99
    assert result.epochs_run == 100_000
    assert len(result.history["loss"]) == 100_000
    assert result.history["loss"][-1] < result.history["loss"][0]


def test_cross_entropy_delta_rule_is_binary_cross_entropy_sum_with_rate_one() -> None:
    X = TRUTH_TABLE_X.astype(float)
    y = np.array([[0], [1], [1], [0]], dtype=float)
    Wh, Wo = xor_initial_weights()
    Wh_engine, Wo_engine = Wh.copy(), Wo.copy()
    for _ in range(2_000):
        H = sigmoid(X @ Wh)
        out = sigmoid(H @ Wo)
        d_out = y - out
        d_h = d_out @ Wo.T * H * (1 - H)
        Wo += H.T @ d_out
        Wh += X.T @ d_h
    net = no_bias_network([3, 4, 1], [Wh_engine, Wo_engine])
    config = {
        "loss": "binary_cross_entropy",
        "reduction": "sum",
        "optimizer": {"name": "sgd", "learning_rate": 1.0},
        "epochs": 2_000,
    }
    engine.fit(net, X, y, config)
    np.testing.assert_allclose(net.get_weights()[0]["weights"], Wh, rtol=0, atol=1e-9)
    np.testing.assert_allclose(net.get_weights()[1]["weights"], Wo, rtol=0, atol=1e-9)


def test_per_example_updates_match_the_stochastic_tutorial_loop() -> None:
    """batch_size 1 without shuffling = the tutorials' loop over examples in order."""
    X = TRUTH_TABLE_X.astype(float)
    y = np.array([[0], [1], [1], [0]], dtype=float)
    Wh, Wo = xor_initial_weights()
    Wh_engine, Wo_engine = Wh.copy(), Wo.copy()
    for _ in range(500):
        for i in range(4):
            x_i, y_i = X[i : i + 1], y[i : i + 1]
            H = sigmoid(x_i @ Wh)
            out = sigmoid(H @ Wo)
            d_out = (y_i - out) * out * (1 - out)
            d_h = d_out @ Wo.T * H * (1 - H)
            Wo += H.T @ d_out
            Wh += x_i.T @ d_h
    net = no_bias_network([3, 4, 1], [Wh_engine, Wo_engine])
    engine.fit(net, X, y, {**DELTA_RULE, "epochs": 500, "batch_size": 1, "shuffle": False})
    np.testing.assert_allclose(net.get_weights()[0]["weights"], Wh, rtol=0, atol=1e-9)
    np.testing.assert_allclose(net.get_weights()[1]["weights"], Wo, rtol=0, atol=1e-9)
