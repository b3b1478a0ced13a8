"""The engine against PyTorch: losses, optimizers, activations and initializers.

DESIGN.md's engine contract is that losses and update rules are PyTorch's. torch is
optional (CPU build in .venv); without it this module is skipped.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

import engine

torch = pytest.importorskip("torch")

Array = NDArray[Any]

TORCH_ACTIVATIONS: dict[str, Any] = {
    "identity": lambda: torch.nn.Identity(),
    "sigmoid": lambda: torch.nn.Sigmoid(),
    "tanh": lambda: torch.nn.Tanh(),
    "relu": lambda: torch.nn.ReLU(),
    "leaky_relu": lambda: torch.nn.LeakyReLU(0.01),
    "softmax": lambda: torch.nn.Softmax(dim=1),
}


@pytest.fixture(autouse=True)
def _torch_threads() -> Any:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# -- training parity ---------------------------------------------------------------------------

N_SAMPLES, N_FEATURES = 37, 5
RNG = np.random.default_rng(0)
X = RNG.normal(size=(N_SAMPLES, N_FEATURES))
TARGETS: dict[str, tuple[str, int, Array]] = {
    # loss: (output activation, units, targets)
    "mse": ("identity", 2, RNG.normal(size=(N_SAMPLES, 2))),
    "binary_cross_entropy": ("sigmoid", 2, (RNG.random((N_SAMPLES, 2)) > 0.5).astype(float)),
    "cross_entropy": ("softmax", 3, RNG.integers(0, 3, N_SAMPLES)),
}
PROBABILITIES = RNG.dirichlet(np.ones(3), size=N_SAMPLES)

OPTIMIZERS: dict[str, tuple[dict[str, Any], tuple[str, str]]] = {
    # name: (optimizer config for reduction mean, hidden activations)
    "sgd": ({"name": "sgd", "learning_rate": 0.1}, ("tanh", "relu")),
    "sgd_momentum": (
        {"name": "sgd", "learning_rate": 0.05, "momentum": 0.5},
        ("sigmoid", "leaky_relu"),
    ),
    "sgd_nesterov_wd": (
        {
            "name": "sgd",
            "learning_rate": 0.05,
            "momentum": 0.9,
            "nesterov": True,
            "weight_decay": 0.01,
        },
        ("tanh", "leaky_relu"),
    ),
    "adam_wd": (
        {"name": "adam", "learning_rate": 0.01, "beta2": 0.99, "weight_decay": 0.001},
        ("relu", "identity"),
    ),
}


def build(
    loss: str, hidden: tuple[str, str], seed: int = 3, dtype: str = "float64"
) -> tuple[engine.Network, Any]:
    """The engine network and a torch copy with the same initial weights."""
    out_activation, units, _ = TARGETS[loss]
    spec: dict[str, Any] = {
        "input_size": N_FEATURES,
        "layers": [
            {"units": 6, "activation": hidden[0]},
            {"units": 4, "activation": hidden[1]},
            {"units": units, "activation": out_activation},
        ],
        "init": {"scheme": "xavier_normal", "seed": seed},
    }
    net = engine.Network.from_spec(spec)
    # Non-zero biases, so that their updates (and weight decay on them) are compared.
    rng = np.random.default_rng(seed)
    weights = net.get_weights()
    for layer in weights:
        layer["bias"] = rng.normal(scale=0.3, size=layer["bias"].shape)  # type: ignore[union-attr]
    net.set_weights(weights)
    torch_dtype = torch.float64 if dtype == "float64" else torch.float32
    modules: list[Any] = []
    for layer, values in zip(spec["layers"], net.get_weights(), strict=True):
        W, b = values["weights"], values["bias"]
        assert W is not None and b is not None
        linear = torch.nn.Linear(*W.shape, dtype=torch_dtype)
        with torch.no_grad():
            linear.weight.copy_(torch.tensor(W.T))
            linear.bias.copy_(torch.tensor(b))
        modules.append(linear)
        # The losses take pre-softmax logits (CrossEntropyLoss) or sigmoid outputs (BCELoss).
        if layer["activation"] != "softmax":
            modules.append(TORCH_ACTIVATIONS[layer["activation"]]())
    return net, torch.nn.Sequential(*modules)


def torch_optimizer(config: dict[str, Any], parameters: Any) -> Any:
    options = {k: v for k, v in config.items() if k not in ("name", "learning_rate")}
    if config["name"] == "sgd":
        return torch.optim.SGD(parameters, lr=config["learning_rate"], **options)
    betas = (options.pop("beta1", 0.9), options.pop("beta2", 0.999))
    return torch.optim.Adam(parameters, lr=config["learning_rate"], betas=betas, **options)


def torch_loss(loss: str, reduction: str) -> Any:
    return {
        "mse": torch.nn.MSELoss,
        "binary_cross_entropy": torch.nn.BCELoss,
        "cross_entropy": torch.nn.CrossEntropyLoss,
    }[loss](reduction=reduction)


def torch_train(
    model: Any,
    loss: str,
    reduction: str,
    optimizer: dict[str, Any],
    y: Array,
    batch: int,
    epochs: int,
    dtype: Any,
) -> tuple[list[Array], list[float]]:
    """Ordered mini-batches, one step per batch; returns weights (fan_in, units) and epoch losses."""
    opt = torch_optimizer(optimizer, model.parameters())
    criterion = torch_loss(loss, reduction)
    Xt = torch.tensor(X, dtype=dtype)
    if loss == "cross_entropy" and y.ndim == 1:
        yt = torch.tensor(y, dtype=torch.long)
    else:
        yt = torch.tensor(y, dtype=dtype)
    history = []
    for _ in range(epochs):
        total = 0.0
        for start in range(0, N_SAMPLES, batch):
            opt.zero_grad()
            value = criterion(model(Xt[start : start + batch]), yt[start : start + batch])
            value.backward()
            opt.step()
            size = min(batch, N_SAMPLES - start)
            total += value.item() * (size if reduction == "mean" else 1)
        history.append(total / N_SAMPLES if reduction == "mean" else total)
    layers = []
    for module in model:
        if isinstance(module, torch.nn.Linear):
            layers.append(module.weight.detach().numpy().T)
            layers.append(module.bias.detach().numpy())
    return layers, history


def relative_error(engine_net: engine.Network, torch_layers: list[Array]) -> float:
    ours = []
    for layer in engine_net.get_weights():
        ours += [layer["weights"], layer["bias"]]
    return max(
        float(np.abs(a - b).max() / np.abs(b).max())
        for a, b in zip(ours, torch_layers, strict=True)
    )


def scaled(optimizer: dict[str, Any], reduction: str, batch: int) -> dict[str, Any]:
    """Sum reduction multiplies the gradient by the batch size: scale the rate back."""
    if reduction == "mean" or optimizer["name"] == "adam":
        return optimizer
    return {**optimizer, "learning_rate": optimizer["learning_rate"] / batch}


@pytest.mark.parametrize("optimizer_name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("loss", sorted(TARGETS))
def test_training_matches_torch_in_float64(loss: str, reduction: str, optimizer_name: str) -> None:
    base, hidden = OPTIMIZERS[optimizer_name]
    batch, epochs = 8, 4
    optimizer = scaled(base, reduction, batch)
    y = TARGETS[loss][2]
    net, model = build(loss, hidden)
    config = {
        "loss": loss,
        "reduction": reduction,
        "optimizer": optimizer,
        "epochs": epochs,
        "batch_size": batch,
        "shuffle": False,
    }
    result = engine.fit(net, X, y, config)
    layers, losses = torch_train(model, loss, reduction, optimizer, y, batch, epochs, torch.float64)
    assert relative_error(net, layers) < 1e-12
    np.testing.assert_allclose(result.history["loss"], losses, rtol=1e-12)
    # The comparison means something: training moved the weights a long way.
    start, _ = build(loss, hidden)
    assert np.abs(net.params - start.params).max() > 1e-2


@pytest.mark.parametrize(
    ("batch", "optimizer_name"),
    [(None, "sgd_momentum"), (1, "sgd_nesterov_wd"), (N_SAMPLES, "adam_wd"), (10, "sgd")],
    ids=["full-batch", "per-example", "batch-equals-n", "uneven-last-batch"],
)
def test_batch_sizes_match_torch(batch: int | None, optimizer_name: str) -> None:
    base, hidden = OPTIMIZERS[optimizer_name]
    optimizer = {**base, "learning_rate": base["learning_rate"] / 4} if batch == 1 else base
    y = TARGETS["cross_entropy"][2]
    net, model = build("cross_entropy", hidden)
    config = {
        "loss": "cross_entropy",
        "optimizer": optimizer,
        "epochs": 3,
        "batch_size": batch,
        "shuffle": False,
    }
    result = engine.fit(net, X, y, config)
    size = N_SAMPLES if batch is None else batch
    layers, losses = torch_train(
        model, "cross_entropy", "mean", optimizer, y, size, 3, torch.float64
    )
    assert relative_error(net, layers) < 1e-12
    np.testing.assert_allclose(result.history["loss"], losses, rtol=1e-12)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_cross_entropy_with_probability_targets_matches_torch(reduction: str) -> None:
    base, hidden = OPTIMIZERS["sgd_nesterov_wd"]
    optimizer = scaled(base, reduction, 8)
    net, model = build("cross_entropy", hidden)
    config = {
        "loss": "cross_entropy",
        "reduction": reduction,
        "optimizer": optimizer,
        "epochs": 3,
        "batch_size": 8,
        "shuffle": False,
    }
    result = engine.fit(net, X, PROBABILITIES, config)
    layers, losses = torch_train(
        model, "cross_entropy", reduction, optimizer, PROBABILITIES, 8, 3, torch.float64
    )
    assert relative_error(net, layers) < 1e-12
    np.testing.assert_allclose(result.history["loss"], losses, rtol=1e-12)


@pytest.mark.parametrize("optimizer_name", ["sgd_momentum", "adam_wd"])
@pytest.mark.parametrize("loss", sorted(TARGETS))
def test_float32_training_matches_torch_float32(loss: str, optimizer_name: str) -> None:
    optimizer, hidden = OPTIMIZERS[optimizer_name]
    y = TARGETS[loss][2]
    net, model = build(loss, hidden, dtype="float32")
    config = {
        "loss": loss,
        "optimizer": optimizer,
        "epochs": 3,
        "batch_size": 8,
        "shuffle": False,
        "dtype": "float32",
    }
    result = engine.fit(net, X, y, config)
    assert net.params.dtype == np.float32
    layers, losses = torch_train(model, loss, "mean", optimizer, y, 8, 3, torch.float32)
    assert all(layer.dtype == np.float32 for layer in layers)
    assert relative_error(net, layers) < 1e-5
    np.testing.assert_allclose(result.history["loss"], losses, rtol=1e-5)


# -- activations ---------------------------------------------------------------------------------


def preactivations() -> Array:
    rng = np.random.default_rng(7)
    Z = rng.normal(scale=3.0, size=(64, 5))
    Z[0] = 0.0  # the kink of relu / leaky_relu: PyTorch's convention at exactly 0
    Z[1] = [40.0, -40.0, 700.0, -700.0, 1e-8]  # saturation and overflow of exp
    Z[2] = [-1e-8, 1e4, -1e4, 0.5, -0.5]
    return Z


@pytest.mark.parametrize("name", sorted(TORCH_ACTIVATIONS))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_activation_forward_and_backward_match_torch(name: str, dtype: Any) -> None:
    Z = preactivations().astype(dtype)
    dA = np.random.default_rng(8).normal(size=Z.shape).astype(dtype)
    activation = engine.ACTIVATIONS[name]
    assert activation.name == name
    # The layer-level API, as fit calls it: exp may overflow to inf harmlessly.
    with np.errstate(over="ignore"):
        A = activation.forward(Z.copy(), np.empty_like(Z))
        dZ = activation.backward(dA.copy(), Z, A, np.empty_like(Z))

    Zt = torch.tensor(Z, requires_grad=True)
    At = TORCH_ACTIVATIONS[name]()(Zt)
    (At * torch.tensor(dA)).sum().backward()
    assert Zt.grad is not None
    expected_A, expected_dZ = At.detach().numpy(), Zt.grad.numpy()
    assert A.dtype == dtype and dZ.dtype == dtype
    assert np.isfinite(A).all() and np.isfinite(dZ).all()
    rtol, atol = (1e-12, 1e-300) if dtype == np.float64 else (2e-6, 1e-37)
    np.testing.assert_allclose(A, expected_A, rtol=rtol, atol=atol)
    scale = np.abs(expected_dZ).max()
    np.testing.assert_allclose(dZ, expected_dZ, rtol=rtol, atol=rtol * scale)


def test_leaky_relu_uses_torchs_default_slope() -> None:
    Z = np.array([[-2.0, 3.0]])
    A = engine.ACTIVATIONS["leaky_relu"].forward(Z, np.empty_like(Z))
    expected = torch.nn.LeakyReLU()(torch.tensor(Z)).numpy()  # negative_slope=0.01
    np.testing.assert_array_equal(A, expected)


# -- losses --------------------------------------------------------------------------------------

LOSS_CASES = [
    ("mse", "identity", 3),
    ("mse", "sigmoid", 3),
    ("mse", "tanh", 3),
    ("mse", "softmax", 3),
    ("binary_cross_entropy", "sigmoid", 3),
    ("cross_entropy", "softmax", 4),
]


@pytest.mark.parametrize(("loss", "activation", "units"), LOSS_CASES)
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_loss_value_and_output_gradient_match_torch(
    loss: str, activation: str, units: int, reduction: str
) -> None:
    rng = np.random.default_rng(units)
    Z = rng.normal(scale=4.0, size=(11, units))
    if loss == "cross_entropy":
        labels = rng.integers(0, units, 11)
        Y = np.eye(units)[labels]
        target = torch.tensor(labels)
    elif loss == "binary_cross_entropy":
        Y = rng.random((11, units))
        target = torch.tensor(Y)
    else:
        Y = rng.normal(size=(11, units))
        target = torch.tensor(Y)
    act = engine.ACTIVATIONS[activation]
    A = act.forward(Z.copy(), np.empty_like(Z))
    value, dZ = engine.LOSSES[loss].value_and_delta(
        Z, A, Y, reduction, act, np.empty_like(Z), np.empty_like(Z)
    )
    assert value == engine.LOSSES[loss].value(Z, A, Y, reduction)

    Zt = torch.tensor(Z, requires_grad=True)
    # CrossEntropyLoss takes the logits; the other losses the activations.
    output = Zt if loss == "cross_entropy" else TORCH_ACTIVATIONS[activation]()(Zt)
    expected = torch_loss(loss, reduction)(output, target)
    expected.backward()
    assert Zt.grad is not None
    assert value == pytest.approx(expected.item(), rel=1e-12)
    np.testing.assert_allclose(dZ, Zt.grad.numpy(), rtol=1e-10, atol=1e-14)


# -- initializers --------------------------------------------------------------------------------

FAN_IN, FAN_OUT = 400, 300


def engine_weights(scheme: str, **params: float) -> Array:
    net = engine.Network.from_spec(
        {
            "input_size": FAN_IN,
            "layers": [{"units": FAN_OUT, "activation": "relu"}],
            "init": {"scheme": scheme, "seed": 2, **params},
        }
    )
    layer = net.get_weights()[0]
    assert layer["bias"] is not None
    np.testing.assert_array_equal(layer["bias"], 0.0)
    assert layer["weights"] is not None
    return layer["weights"]


TORCH_INITS: dict[str, tuple[Any, dict[str, float], float, bool]] = {
    # scheme: (torch initializer, engine params, PyTorch's bound or std formula, bounded)
    "xavier_uniform": (
        lambda w: torch.nn.init.xavier_uniform_(w),
        {},
        math.sqrt(6 / (FAN_IN + FAN_OUT)),
        True,
    ),
    "xavier_normal": (
        lambda w: torch.nn.init.xavier_normal_(w),
        {},
        math.sqrt(2 / (FAN_IN + FAN_OUT)),
        False,
    ),
    "he_uniform": (
        lambda w: torch.nn.init.kaiming_uniform_(w, nonlinearity="relu"),
        {},
        math.sqrt(2) * math.sqrt(3 / FAN_IN),
        True,
    ),
    "he_normal": (
        lambda w: torch.nn.init.kaiming_normal_(w, nonlinearity="relu"),
        {},
        math.sqrt(2) / math.sqrt(FAN_IN),
        False,
    ),
    "uniform": (
        lambda w: torch.nn.init.uniform_(w, -0.3, 0.7),
        {"low": -0.3, "high": 0.7},
        0.5,
        True,
    ),
    "normal": (
        lambda w: torch.nn.init.normal_(w, 1.5, 0.2),
        {"mean": 1.5, "std": 0.2},
        0.2,
        False,
    ),
}


@pytest.mark.parametrize("scheme", sorted(TORCH_INITS))
def test_initializer_distributions_match_torch(scheme: str) -> None:
    initializer, params, scale, bounded = TORCH_INITS[scheme]
    ours = engine_weights(scheme, **params)
    torch.manual_seed(0)
    # torch stores Linear weights as (out, in); fan_in is the second dimension.
    theirs = initializer(torch.empty(FAN_OUT, FAN_IN, dtype=torch.float64)).numpy().T
    assert ours.shape == theirs.shape == (FAN_IN, FAN_OUT)
    # Same distribution, not the same numbers (the generators differ).
    assert not np.allclose(ours, theirs)
    spread = theirs.std()
    assert ours.std() == pytest.approx(spread, rel=0.02)
    assert ours.mean() == pytest.approx(theirs.mean(), abs=0.02 * spread)
    quantiles = [0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99]
    np.testing.assert_allclose(
        np.quantile(ours, quantiles), np.quantile(theirs, quantiles), atol=0.03 * spread
    )
    if bounded:  # U(-a, a) or U(low, high): same support
        center = ours.mean()
        np.testing.assert_allclose(
            [ours.min(), ours.max()], [theirs.min(), theirs.max()], atol=1e-3
        )
        assert ours.max() - center == pytest.approx(scale, rel=0.01, abs=0.01)
        assert spread == pytest.approx(scale / math.sqrt(3), rel=0.02)
    else:  # N(mean, std) with PyTorch's std
        assert spread == pytest.approx(scale, rel=0.02)


def test_zeros_initializer_matches_torch() -> None:
    ours = engine_weights("zeros")
    theirs = torch.nn.init.zeros_(torch.empty(FAN_OUT, FAN_IN, dtype=torch.float64)).numpy().T
    np.testing.assert_array_equal(ours, theirs)
