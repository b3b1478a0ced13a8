"""Property tests over random small architectures and data (hypothesis, derandomized).

Architectures: 1-3 layers of width 1-6, every activation (softmax only last), bias
on or off per layer, every loss compatible with the output layer, both reductions.
Data: 1-20 samples of bounded floats. Properties: predict's shape and range,
finite outputs, and the first small-learning-rate full-batch SGD step lowers the
loss by the amount the (finite-difference) gradient predicts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from hypothesis import HealthCheck, assume, given, note, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from numpy.typing import NDArray

import engine
from tests.engine.test_training import activate, loss_value, one_hot

Array = NDArray[np.float64]

# Deterministic: the same examples on every machine and every run, no example
# database, no deadline (CI machines vary), a bounded number of examples.
settings.register_profile(
    "engine-properties",
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=80,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
PROFILE = settings.get_profile("engine-properties")

HIDDEN = ("identity", "sigmoid", "tanh", "relu", "leaky_relu")
OUTPUT = (*HIDDEN, "softmax")


@dataclass
class Problem:
    spec: dict[str, Any]
    loss: str
    reduction: str
    X: Array
    y: Any  # what fit receives: targets, integer labels, or probability rows
    Y: Array  # the same targets as (n, outputs) floats, for the reference loss
    params: Array  # random initial parameters (weights and non-zero biases)

    @property
    def shapes(self) -> list[tuple[tuple[int, int], bool]]:
        fan_in, shapes = self.spec["input_size"], []
        for layer in self.spec["layers"]:
            shapes.append(((fan_in, layer["units"]), layer["bias"]))
            fan_in = layer["units"]
        return shapes


def unflatten(problem: Problem, flat: Array) -> list[dict[str, Any]]:
    """Layer weights (fan_in, units) then bias (units,), in layer order."""
    layers, offset = [], 0
    for (fan_in, units), has_bias in problem.shapes:
        W = flat[offset : offset + fan_in * units].reshape(fan_in, units)
        offset += fan_in * units
        bias = None
        if has_bias:
            bias = flat[offset : offset + units]
            offset += units
        layers.append({"weights": W, "bias": bias})
    assert offset == flat.size
    return layers


def flatten(layers: list[dict[str, Any]]) -> Array:
    parts = []
    for layer in layers:
        parts.append(np.asarray(layer["weights"], np.float64).ravel())
        if layer["bias"] is not None:
            parts.append(np.asarray(layer["bias"], np.float64))
    return np.concatenate(parts)


def reference_loss(problem: Problem, flat: Array) -> float:
    """The loss of parameters ``flat``, computed without the engine."""
    A = Z = problem.X
    for layer, weights in zip(problem.spec["layers"], unflatten(problem, flat), strict=True):
        Z = A @ weights["weights"]
        if weights["bias"] is not None:
            Z = Z + weights["bias"]
        A = activate(layer["activation"], Z)
    return loss_value(problem.loss, Z, A, problem.Y, problem.reduction)


def numeric_gradient(problem: Problem, flat: Array, h: float = 1e-6) -> Array:
    gradient = np.empty_like(flat)
    for i in range(flat.size):
        up, down = flat.copy(), flat.copy()
        up[i] += h
        down[i] -= h
        gradient[i] = (reference_loss(problem, up) - reference_loss(problem, down)) / (2 * h)
    return gradient


@st.composite
def problems(draw: st.DrawFn, x_bound: float = 3.0) -> Problem:
    input_size = draw(st.integers(1, 6))
    n_layers = draw(st.integers(1, 3))
    layers: list[dict[str, Any]] = []
    for index in range(n_layers):
        last = index == n_layers - 1
        activation = draw(st.sampled_from(OUTPUT if last else HIDDEN))
        units = draw(st.integers(2 if activation == "softmax" else 1, 6))
        layers.append({"units": units, "activation": activation, "bias": draw(st.booleans())})
    out_activation: str = layers[-1]["activation"]
    outputs: int = layers[-1]["units"]
    losses = ["mse"]
    if out_activation == "sigmoid":
        losses.append("binary_cross_entropy")
    if out_activation == "softmax":
        losses.append("cross_entropy")
    loss = draw(st.sampled_from(losses))
    reduction = draw(st.sampled_from(["mean", "sum"]))
    n = draw(st.integers(1, 20))
    bounded = st.floats(-x_bound, x_bound, allow_nan=False, allow_infinity=False)
    X = draw(hnp.arrays(np.float64, (n, input_size), elements=bounded))
    Y: Array
    if loss == "cross_entropy":
        if draw(st.booleans()):
            labels = draw(hnp.arrays(np.int64, (n,), elements=st.integers(0, outputs - 1)))
            y: Any = labels.tolist()
            Y = one_hot(labels, outputs)
        else:
            weights = draw(hnp.arrays(np.float64, (n, outputs), elements=st.floats(0.01, 1.0)))
            Y = y = weights / weights.sum(axis=1, keepdims=True)
    elif loss == "binary_cross_entropy":
        Y = y = draw(hnp.arrays(np.float64, (n, outputs), elements=st.floats(0.0, 1.0)))
    else:
        Y = y = draw(hnp.arrays(np.float64, (n, outputs), elements=st.floats(-2.0, 2.0)))
    spec = {
        "input_size": input_size,
        "layers": layers,
        "init": {"seed": draw(st.integers(0, 2**32))},
    }
    n_params = sum(
        fan_in * units + (units if bias else 0)
        for fan_in, units, bias in zip(
            [input_size] + [layer["units"] for layer in layers[:-1]],
            [layer["units"] for layer in layers],
            [layer["bias"] for layer in layers],
            strict=True,
        )
    )
    seed = draw(st.integers(0, 2**32))
    params = np.random.default_rng(seed).normal(scale=0.8, size=n_params)
    return Problem(spec, loss, reduction, X, y, Y, params)


def network(problem: Problem) -> engine.Network:
    net = engine.Network.from_spec(problem.spec)
    net.set_weights(unflatten(problem, problem.params))
    return net


@PROFILE
@given(problems(x_bound=1e3), st.integers(1, 9000))
def test_predict_has_the_right_shape_range_and_finite_values(
    problem: Problem, extra_rows: int
) -> None:
    net = network(problem)
    n = problem.X.shape[0]
    outputs = problem.spec["layers"][-1]["units"]
    assert net.n_parameters == problem.params.size
    assert (net.input_size, net.output_size) == (problem.spec["input_size"], outputs)
    np.testing.assert_array_equal(flatten(net.get_weights()), problem.params)
    prediction = net.predict(problem.X)
    assert prediction.shape == (n, outputs)
    assert prediction.dtype == np.float64
    assert np.isfinite(prediction).all()
    activation = net.output_activation
    assert activation == problem.spec["layers"][-1]["activation"]
    if activation in ("sigmoid", "softmax"):
        assert ((prediction >= 0) & (prediction <= 1)).all()
    if activation == "softmax":
        np.testing.assert_allclose(prediction.sum(axis=1), 1.0, rtol=1e-12)
    if activation == "tanh":
        assert (np.abs(prediction) <= 1).all()
    if activation == "relu":
        assert (prediction >= 0).all()
    # Each row's prediction does not depend on the other rows in the batch.
    for row in {0, n - 1}:
        np.testing.assert_allclose(
            net.predict(problem.X[row : row + 1])[0], prediction[row], rtol=1e-12, atol=1e-300
        )
    # Tiled past one predict chunk, the rows come back in order and unchanged.
    tiled = np.tile(problem.X, (extra_rows // n + 1, 1))
    np.testing.assert_allclose(net.predict(tiled)[:n], prediction, rtol=1e-12, atol=1e-300)
    # The reference forward pass agrees.
    reference = np.asarray(problem.X)
    for layer, weights in zip(problem.spec["layers"], net.get_weights(), strict=True):
        W = np.asarray(weights["weights"])
        Z = reference @ W + (0.0 if weights["bias"] is None else weights["bias"])
        reference = activate(layer["activation"], Z)
    np.testing.assert_allclose(prediction, reference, rtol=1e-9, atol=1e-9)


@PROFILE
@given(problems(), st.sampled_from(["float64", "float32"]))
def test_a_short_run_keeps_everything_finite(problem: Problem, dtype: str) -> None:
    net = network(problem)
    config = {
        "loss": problem.loss,
        "reduction": problem.reduction,
        "optimizer": {"name": "sgd", "learning_rate": 1e-3},
        "epochs": 3,
        "batch_size": 4,
        "seed": 0,
        "dtype": dtype,
    }
    result = engine.fit(net, problem.X, problem.y, config)
    assert result.stop_reason == "completed"
    assert result.history["epoch"] == [1, 2, 3]
    assert all(math.isfinite(v) and v >= 0 for v in result.history["loss"])
    assert np.isfinite(net.params).all()
    prediction = net.predict(problem.X)
    assert prediction.dtype == np.dtype(dtype) and np.isfinite(prediction).all()


@PROFILE
@given(problems())
def test_the_first_small_sgd_step_lowers_the_loss(problem: Problem) -> None:
    p0 = problem.params
    L0 = reference_loss(problem, p0)
    gradient = numeric_gradient(problem, p0)
    norm = float(np.linalg.norm(gradient))
    # Well above the finite-difference and float64 rounding noise of the loss.
    assume(norm > 1e-5 * max(1.0, L0))
    # A step small enough that the first-order decrease lr * |g|^2 dominates: checked
    # on the reference loss, shrinking the rate until the decrease matches it.
    lr = 1e-2 / norm
    for _ in range(40):
        predicted = lr * norm**2
        actual = L0 - reference_loss(problem, p0 - lr * gradient)
        if abs(actual - predicted) <= 0.05 * predicted:
            break
        lr /= 4
    else:
        assume(False)
    assume(predicted > 1e-9 * max(1.0, L0))
    note(f"L0={L0!r} |g|={norm!r} lr={lr!r} predicted decrease={predicted!r}")

    net = network(problem)
    config = {
        "loss": problem.loss,
        "reduction": problem.reduction,
        "optimizer": {"name": "sgd", "learning_rate": lr},
        "epochs": 1,
        "shuffle": False,
    }
    result = engine.fit(net, problem.X, problem.y, config)
    # Full batch: the recorded loss is that of the starting weights.
    assert math.isclose(result.history["loss"][0], L0, rel_tol=1e-10, abs_tol=1e-12)
    p1 = flatten(net.get_weights())
    L1 = reference_loss(problem, p1)
    assert L1 < L0
    # ... by the amount the true gradient predicts,
    assert math.isclose(L0 - L1, predicted, rel_tol=0.1)
    # because the step is -lr times the (finite-difference) gradient.
    np.testing.assert_allclose((p0 - p1) / lr, gradient, rtol=1e-4, atol=1e-5 * max(1.0, norm))
