"""Central-difference gradient checks of the issue 11 activations, losses, loss options and dropout."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import engine
from engine.loss_options import parse_loss_options
from engine.losses import Loss, make_loss

NEW_ACTIVATIONS = ["gelu", "gelu_tanh", "elu", "selu", "softplus", "silu", "leaky_relu"]


def problem(
    hidden: str, output: str, loss: str, seed: int, dropout: float = 0.0, n_out: int = 3
) -> tuple[engine.Network, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n, n_in = 7, 4
    hidden_layer: dict[str, Any] = {"units": 5, "activation": hidden}
    if hidden == "leaky_relu":
        hidden_layer["negative_slope"] = 0.3
    if dropout:
        hidden_layer["dropout"] = dropout
    spec = {
        "input_size": n_in,
        "layers": [hidden_layer, {"units": n_out, "activation": output}],
        "init": {"scheme": "normal", "std": 0.7, "seed": seed},
    }
    net = engine.Network.from_spec(spec)
    net.params[...] = rng.normal(scale=0.7, size=net.n_parameters)
    X = rng.normal(size=(n, n_in))
    if loss == "binary_cross_entropy":
        Y = (rng.random((n, n_out)) > 0.5).astype(float)
    elif loss == "cross_entropy":
        Y = np.eye(n_out)[rng.integers(0, n_out, n)]
    else:
        Y = rng.normal(scale=2.0, size=(n, n_out))
    return net, X, Y


def train_forward(net: engine.Network, X: np.ndarray, rng_state: Any) -> tuple[Any, np.ndarray]:
    """The training forward pass (dropout masks from a generator reset to ``rng_state``)."""
    if rng_state is not None:
        assert net.dropout_rng is not None
        net.dropout_rng.bit_generator.state = rng_state
    plan = net.plan(X.shape[0])
    return plan, plan.forward(X)


def loss_at(
    net: engine.Network, loss: Loss, X: np.ndarray, Y: np.ndarray, reduction: str, rng_state: Any
) -> float:
    plan, A = train_forward(net, X, rng_state)
    return loss.value(plan.spaces[-1].Z, A, Y, reduction)


def gradient_error(
    net: engine.Network, loss: Loss, X: np.ndarray, Y: np.ndarray, reduction: str
) -> float:
    rng_state = None
    if net.has_dropout:
        net.dropout_rng = np.random.default_rng(9)
        rng_state = net.dropout_rng.bit_generator.state
    plan, A = train_forward(net, X, rng_state)
    out = plan.spaces[-1]
    activation = net.layers[-1].activation
    _, dZ = loss.value_and_delta(out.Z, A, Y, reduction, activation, out.dA, out.work)
    plan.backward(dZ)
    analytic = net.grads.copy()
    numeric = np.zeros(net.n_parameters)
    h = 1e-6
    for i in range(net.n_parameters):
        saved = net.params[i]
        net.params[i] = saved + h
        plus = loss_at(net, loss, X, Y, reduction, rng_state)
        net.params[i] = saved - h
        minus = loss_at(net, loss, X, Y, reduction, rng_state)
        net.params[i] = saved
        numeric[i] = (plus - minus) / (2 * h)
    assert np.linalg.norm(numeric) > 1e-8, "degenerate problem: the gradient is zero"
    return float(
        np.linalg.norm(analytic - numeric) / (np.linalg.norm(analytic) + np.linalg.norm(numeric))
    )


@pytest.mark.parametrize("activation", NEW_ACTIVATIONS)
@pytest.mark.parametrize("position", ["hidden", "output"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_new_activations_backpropagate_their_exact_derivative(
    activation: str, position: str, reduction: str
) -> None:
    hidden, output = (activation, "identity") if position == "hidden" else ("tanh", activation)
    net, X, Y = problem(hidden, output, "mse", seed=1)
    if activation == "leaky_relu" and position == "output":
        net, X, Y = problem("tanh", "leaky_relu", "mse", seed=1)
    assert (
        gradient_error(net, make_loss("mse", parse_loss_options(None, "mse")), X, Y, reduction)
        < 1e-6
    )


LOSSES: list[tuple[str, str, dict[str, Any] | None]] = [
    ("l1", "identity", None),
    ("l1", "tanh", None),
    ("huber", "identity", {"delta": 0.8}),
    ("huber", "sigmoid", None),
    ("smooth_l1", "identity", {"beta": 0.7}),
    ("smooth_l1", "gelu", {"beta": 0.0}),
    ("cross_entropy", "softmax", {"label_smoothing": 0.2}),
    ("cross_entropy", "softmax", {"class_weights": [0.5, 2.0, 1.5]}),
    ("cross_entropy", "softmax", {"class_weights": [0.5, 2.0, 1.5], "label_smoothing": 0.3}),
    ("binary_cross_entropy", "sigmoid", {"pos_weight": [3.0, 0.5, 1.0]}),
]


CASES = [(*case, True) for case in LOSSES] + [
    (*case, False)
    for case in LOSSES
    if case[0] == "cross_entropy"  # probability targets
]


@pytest.mark.parametrize(("loss", "output", "options", "label_targets"), CASES, ids=str)
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_new_losses_and_options_give_their_exact_gradient(
    loss: str, output: str, options: dict[str, Any] | None, label_targets: bool, reduction: str
) -> None:
    # The L1 kinks (d = 0, |d| = delta, beta) break finite differences: targets far from outputs.
    net, X, Y = problem("tanh", output, loss, seed=4)
    if not label_targets:
        Y = np.random.default_rng(2).dirichlet(np.ones(3), size=Y.shape[0])
    fn = make_loss(loss, parse_loss_options(options, loss), label_targets)
    assert gradient_error(net, fn, X, Y, reduction) < 1e-6


@pytest.mark.parametrize("hidden", ["relu", "gelu", "selu"])
def test_dropout_backpropagates_through_its_masks(hidden: str) -> None:
    net, X, Y = problem(hidden, "identity", "mse", seed=3, dropout=0.4)
    assert (
        gradient_error(net, make_loss("mse", parse_loss_options(None, "mse")), X, Y, "mean") < 1e-6
    )


def test_the_check_catches_a_dropout_gradient_that_ignores_the_mask(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The check can fail: backward without the mask (forward still drops) is caught."""
    from engine.layers import Dense

    def keep_all(self: Dense, A: Any, buffers: Any, rng: Any) -> Any:
        out = drop(self, A, buffers, rng)
        buffers.noise[...] = 1.0  # what backward multiplies by
        return out

    drop = Dense.drop
    monkeypatch.setattr(Dense, "drop", keep_all)
    net, X, Y = problem("tanh", "identity", "mse", seed=3, dropout=0.4)
    assert (
        gradient_error(net, make_loss("mse", parse_loss_options(None, "mse")), X, Y, "mean") > 1e-3
    )
