"""Central-difference gradient check of every activation x loss x bias x reduction."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest

import engine
from engine.losses import LOSSES

HIDDEN = ("identity", "sigmoid", "tanh", "relu", "leaky_relu")
OUTPUTS = [("mse", act) for act in (*HIDDEN, "softmax")] + [
    ("binary_cross_entropy", "sigmoid"),
    ("cross_entropy", "softmax"),
]
CASES = list(itertools.product(OUTPUTS, HIDDEN, (True, False), ("mean", "sum")))


def make_problem(loss: str, out_act: str, hidden: str, bias: bool, seed: int) -> tuple[Any, ...]:
    rng = np.random.default_rng(seed)
    n, n_in, n_out = 7, 4, 3
    spec = {
        "input_size": n_in,
        "layers": [
            {"units": 5, "activation": hidden, "bias": bias},
            {"units": n_out, "activation": out_act, "bias": bias},
        ],
        "init": {"scheme": "normal", "std": 0.7, "seed": seed},
    }
    net = engine.Network.from_spec(spec)
    if bias:  # non-zero biases so their gradients are exercised away from the initial zeros
        net.params[...] = rng.normal(scale=0.7, size=net.n_parameters)
    X = rng.normal(size=(n, n_in))
    if loss == "binary_cross_entropy":
        Y = rng.random((n, n_out))
    elif loss == "cross_entropy":
        Y = rng.dirichlet(np.ones(n_out), size=n)
    else:
        Y = rng.normal(size=(n, n_out))
    return net, X, Y


def loss_at(net: engine.Network, loss: str, X: np.ndarray, Y: np.ndarray, reduction: str) -> float:
    Z, A = net.forward(X)
    return LOSSES[loss].value(Z, A, Y, reduction)


def analytic_gradient(
    net: engine.Network, loss: str, X: np.ndarray, Y: np.ndarray, reduction: str
) -> np.ndarray:
    plan = net.plan(X.shape[0])
    A = plan.forward(X)
    out = plan.spaces[-1]
    activation = net.layers[-1].activation
    _, dZ = LOSSES[loss].value_and_delta(out.Z, A, Y, reduction, activation, out.dA, out.work)
    plan.backward(dZ)
    return net.grads.copy()


def numeric_gradient(
    net: engine.Network, loss: str, X: np.ndarray, Y: np.ndarray, reduction: str, h: float = 1e-6
) -> np.ndarray:
    grad = np.zeros(net.n_parameters)
    for i in range(net.n_parameters):
        saved = net.params[i]
        net.params[i] = saved + h
        plus = loss_at(net, loss, X, Y, reduction)
        net.params[i] = saved - h
        minus = loss_at(net, loss, X, Y, reduction)
        net.params[i] = saved
        grad[i] = (plus - minus) / (2 * h)
    return grad


def hidden_preactivations(net: engine.Network, X: np.ndarray) -> np.ndarray:
    Z, _ = net.layers[0].forward(X)
    return Z


@pytest.mark.parametrize(("output", "hidden", "bias", "reduction"), CASES)
def test_backprop_matches_central_differences(
    output: tuple[str, str], hidden: str, bias: bool, reduction: str
) -> None:
    loss, out_act = output
    # relu kinks break finite differences: pick the first seed whose pre-activations stay clear.
    for seed in range(50):
        net, X, Y = make_problem(loss, out_act, hidden, bias, seed)
        if np.abs(hidden_preactivations(net, X)).min() > 1e-3:
            break
    analytic = analytic_gradient(net, loss, X, Y, reduction)
    numeric = numeric_gradient(net, loss, X, Y, reduction)
    assert np.linalg.norm(numeric) > 1e-8, "degenerate problem: the gradient is zero"
    error = np.linalg.norm(analytic - numeric) / (
        np.linalg.norm(analytic) + np.linalg.norm(numeric)
    )
    assert error < 1e-6, f"relative error {error:.2e}"


def test_gradient_check_detects_a_wrong_derivative(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check itself can fail: a sigmoid backward missing its (1 - A) factor is caught."""
    sigmoid = type(engine.ACTIVATIONS["sigmoid"])  # each layer has its own instance

    def wrong_backward(self: Any, dA: Any, Z: Any, A: Any, work: Any) -> Any:
        return np.multiply(dA, A, out=dA)

    monkeypatch.setattr(sigmoid, "backward", wrong_backward)
    net, X, Y = make_problem("mse", "identity", "sigmoid", True, 0)
    analytic = analytic_gradient(net, "mse", X, Y, "mean")
    numeric = numeric_gradient(net, "mse", X, Y, "mean")
    error = np.linalg.norm(analytic - numeric) / (
        np.linalg.norm(analytic) + np.linalg.norm(numeric)
    )
    assert error > 1e-3
