"""Issue 11 against PyTorch: every optimizer and its options, every schedule, both clip modes,
every new loss and loss option, every new activation, dropout (with the engine's masks fed
to torch) and float32. 50 epochs of shuffled mini-batches with a validation split each:
weights, per-epoch loss and validation loss to 1e-12 relative (float64) or 1e-5 (float32),
and the ``lr`` column equal to PyTorch's learning rate bit for bit."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import engine

torch = pytest.importorskip("torch")

from tests.engine.torch_reference import (  # noqa: E402
    relative_error,
    run_engine,
    run_torch,
    torch_model,
    with_biases,
)

N_SAMPLES, N_FEATURES, EPOCHS, BATCH = 45, 5, 50, 8
RNG = np.random.default_rng(11)
X = RNG.normal(size=(N_SAMPLES, N_FEATURES))
LABELS = RNG.integers(0, 3, N_SAMPLES)
PROBABILITIES = RNG.dirichlet(np.ones(3), size=N_SAMPLES)
BINARY = (RNG.random((N_SAMPLES, 2)) > 0.4).astype(float)
VALUES = X[:, :2] @ RNG.normal(size=(2, 2)) + 0.3 * RNG.normal(size=(N_SAMPLES, 2))

PROBLEMS: dict[str, tuple[str, str, int, Any]] = {
    # name: (loss, output activation, output units, targets)
    "classes": ("cross_entropy", "softmax", 3, LABELS),
    "probabilities": ("cross_entropy", "softmax", 3, PROBABILITIES),
    "binary": ("binary_cross_entropy", "sigmoid", 2, BINARY),
    "regression": ("mse", "identity", 2, VALUES),
}


@pytest.fixture(autouse=True)
def _torch_threads() -> Any:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def spec_for(
    problem: str, hidden: tuple[Any, Any], dropout: tuple[float, float] = (0, 0)
) -> dict[str, Any]:
    _, output, units, _ = PROBLEMS[problem]
    layers = []
    for width, activation, rate in zip((6, 4), hidden, dropout, strict=True):
        layer: dict[str, Any] = {"units": width}
        if isinstance(activation, tuple):  # ("leaky_relu", slope)
            layer.update(activation="leaky_relu", negative_slope=activation[1])
        else:
            layer["activation"] = activation
        if rate:
            layer["dropout"] = rate
        layers.append(layer)
    layers.append({"units": units, "activation": output})
    return {
        "input_size": N_FEATURES,
        "layers": layers,
        "init": {"scheme": "xavier_normal", "seed": 3},
    }


def check_parity(
    monkeypatch: pytest.MonkeyPatch,
    problem: str,
    hidden: tuple[Any, Any],
    changes: dict[str, Any],
    *,
    dropout: tuple[float, float] = (0, 0),
    dtype: str = "float64",
) -> engine.FitResult:
    loss, _, _, y = PROBLEMS[problem]
    config: dict[str, Any] = {
        "loss": loss,
        "optimizer": {"name": "sgd", "learning_rate": 0.05, "momentum": 0.5},
        "epochs": EPOCHS,
        "batch_size": BATCH,
        "shuffle": True,
        "seed": 5,
        "validation": {"fraction": 0.2},
        "dtype": dtype,
        **changes,
    }
    net = with_biases(spec_for(problem, hidden, dropout))
    start = net.copy()
    trainer, result, recording = run_engine(net, X, y, config, monkeypatch)
    assert result.stop_reason == "completed" and result.epochs_run == EPOCHS
    torch_dtype = torch.float64 if dtype == "float64" else torch.float32
    model = torch_model(start, config, torch_dtype, iter(recording.noise))
    run = run_torch(model, trainer, config, recording, torch_dtype)
    tolerance = 1e-12 if dtype == "float64" else 1e-5
    assert relative_error(net, run.layers) < tolerance
    np.testing.assert_allclose(result.history["loss"], run.loss, rtol=tolerance)
    np.testing.assert_allclose(result.history["val_loss"], run.val_loss, rtol=tolerance)
    if config.get("lr_schedule") is not None:
        assert result.history["lr"] == run.lr
    # The comparison means something: training moved the weights a long way.
    assert np.abs(net.params - start.params.astype(net.dtype)).max() > 1e-2
    return result


OPTIMIZERS: dict[str, dict[str, Any]] = {
    "sgd_dampening": {"name": "sgd", "learning_rate": 0.05, "momentum": 0.9, "dampening": 0.3},
    "sgd_nesterov_wd": {
        "name": "sgd",
        "learning_rate": 0.02,
        "momentum": 0.9,
        "nesterov": True,
        "weight_decay": 0.01,
    },
    "adam_amsgrad": {"name": "adam", "learning_rate": 0.01, "amsgrad": True},
    "adam_amsgrad_wd": {
        "name": "adam",
        "learning_rate": 0.01,
        "beta1": 0.8,
        "beta2": 0.99,
        "eps": 1e-7,
        "weight_decay": 0.01,
        "amsgrad": True,
    },
    "adamw": {"name": "adamw", "learning_rate": 0.01},
    "adamw_amsgrad": {"name": "adamw", "learning_rate": 0.02, "weight_decay": 0.1, "amsgrad": True},
    "rmsprop": {"name": "rmsprop", "learning_rate": 0.005},
    "rmsprop_momentum": {"name": "rmsprop", "learning_rate": 0.002, "momentum": 0.7},
    "rmsprop_centered": {"name": "rmsprop", "learning_rate": 0.002, "alpha": 0.9, "centered": True},
    "rmsprop_all": {
        "name": "rmsprop",
        "learning_rate": 0.001,
        "alpha": 0.95,
        "eps": 1e-6,
        "momentum": 0.5,
        "centered": True,
        "weight_decay": 0.01,
    },
    "adagrad": {"name": "adagrad", "learning_rate": 0.05},
    "adagrad_all": {
        "name": "adagrad",
        "learning_rate": 0.1,
        "lr_decay": 0.01,
        "initial_accumulator_value": 0.1,
        "eps": 1e-8,
        "weight_decay": 0.001,
    },
}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_every_optimizer_and_option_matches_torch(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    check_parity(monkeypatch, "classes", ("tanh", "relu"), {"optimizer": OPTIMIZERS[name]})


SCHEDULES: dict[str, dict[str, Any]] = {
    "step": {"name": "step", "step_size": 7, "gamma": 0.5},
    "multistep": {"name": "multistep", "milestones": [10, 25, 25, 40], "gamma": 0.7},
    "exponential": {"name": "exponential", "gamma": 0.96},
    "cosine": {"name": "cosine", "t_max": 20, "eta_min": 0.001},  # past t_max it rises again
    "linear": {"name": "linear", "start_factor": 0.25, "end_factor": 0.9, "total_iters": 30},
    "onecycle": {"name": "onecycle", "max_learning_rate": 0.2},
    "onecycle_linear": {
        "name": "onecycle",
        "max_learning_rate": 0.1,
        "pct_start": 0.4,
        "anneal_strategy": "linear",
        "div_factor": 10.0,
        "final_div_factor": 100.0,
    },
    "plateau_val_loss": {
        "name": "plateau",
        "monitor": "val_loss",
        "factor": 0.5,
        "patience": 2,
        "threshold": 1e-3,
        "cooldown": 1,
    },
    "plateau_loss_abs": {
        "name": "plateau",
        "monitor": "loss",
        "patience": 1,
        "threshold": 1e-3,
        "threshold_mode": "abs",
        "min_lr": 0.004,
    },
}


@pytest.mark.parametrize("name", sorted(SCHEDULES))
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_every_schedule_matches_torch(
    name: str, optimizer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    opt = (
        {"name": "sgd", "learning_rate": 0.1, "momentum": 0.9}
        if optimizer == "sgd"
        else {"name": "adam", "learning_rate": 0.02}
    )
    result = check_parity(
        monkeypatch, "classes", ("tanh", "relu"), {"optimizer": opt, "lr_schedule": SCHEDULES[name]}
    )
    assert len(set(result.history["lr"])) > 1, "the schedule changed the rate"


@pytest.mark.parametrize(
    "clip",
    [
        {"max_norm": 0.3},
        {"max_norm": 0.2, "norm_type": "inf"},
        {"max_norm": 0.5, "norm_type": 1.0},
        {"max_norm": 0.25, "norm_type": 3.0},
        {"value": 0.05},
    ],
    ids=["norm2", "inf", "norm1", "norm3", "value"],
)
@pytest.mark.parametrize(("optimizer", "rate"), [("sgd_nesterov_wd", 0.1), ("adamw", 0.02)])
def test_both_clip_modes_match_torch(
    clip: dict[str, Any], optimizer: str, rate: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    changes = {"optimizer": {**OPTIMIZERS[optimizer], "learning_rate": rate}}
    clipped = check_parity(monkeypatch, "classes", ("tanh", "relu"), {**changes, "grad_clip": clip})
    unclipped = engine.fit(
        with_biases(spec_for("classes", ("tanh", "relu"))),
        X,
        LABELS,
        {
            "loss": "cross_entropy",
            "epochs": EPOCHS,
            "batch_size": BATCH,
            "seed": 5,
            "validation": {"fraction": 0.2},
            **changes,
        },
    )
    assert clipped.history["loss"][0] != unclipped.history["loss"][0], "the clip took effect"


LOSS_CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "l1": ("regression", {"loss": "l1"}),
    "huber": ("regression", {"loss": "huber"}),
    "huber_delta": ("regression", {"loss": "huber", "loss_options": {"delta": 0.4}}),
    "smooth_l1": ("regression", {"loss": "smooth_l1"}),
    "smooth_l1_beta": ("regression", {"loss": "smooth_l1", "loss_options": {"beta": 0.3}}),
    "smooth_l1_beta0": ("regression", {"loss": "smooth_l1", "loss_options": {"beta": 0.0}}),
    "label_smoothing": ("classes", {"loss_options": {"label_smoothing": 0.1}}),
    "class_weights": ("classes", {"loss_options": {"class_weights": [0.5, 2.0, 1.3]}}),
    "class_weights_smoothing": (
        "classes",
        {"loss_options": {"class_weights": [0.5, 2.0, 1.3], "label_smoothing": 0.2}},
    ),
    "probabilities_weights_smoothing": (
        "probabilities",
        {"loss_options": {"class_weights": [2.0, 0.7, 1.0], "label_smoothing": 0.15}},
    ),
    "pos_weight": ("binary", {"loss_options": {"pos_weight": [3.0, 0.5]}}),
}


@pytest.mark.parametrize("name", sorted(LOSS_CASES))
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_every_new_loss_and_option_matches_torch(
    name: str, reduction: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    problem, changes = LOSS_CASES[name]
    rate = 0.05 if reduction == "mean" else 0.05 / BATCH
    optimizer = {"name": "sgd", "learning_rate": rate, "momentum": 0.5}
    check_parity(
        monkeypatch,
        problem,
        ("tanh", "relu"),
        {**changes, "reduction": reduction, "optimizer": optimizer},
    )


ACTIVATIONS = ["gelu", "gelu_tanh", "elu", "selu", "softplus", "silu", ("leaky_relu", 0.2)]


@pytest.mark.parametrize("activation", ACTIVATIONS, ids=str)
@pytest.mark.parametrize("problem", ["classes", "regression"])
def test_every_new_activation_matches_torch(
    activation: Any, problem: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    check_parity(
        monkeypatch,
        problem,
        (activation, activation),
        {"optimizer": {"name": "adam", "learning_rate": 0.01}},
    )


@pytest.mark.parametrize(
    ("hidden", "changes"),
    [
        (("relu", "tanh"), {"optimizer": OPTIMIZERS["adamw"]}),
        (("gelu", "selu"), {"optimizer": OPTIMIZERS["rmsprop_momentum"]}),
        (
            ("silu", ("leaky_relu", 0.1)),
            {
                "optimizer": {"name": "sgd", "learning_rate": 0.1, "momentum": 0.9},
                "lr_schedule": SCHEDULES["cosine"],
                "grad_clip": {"max_norm": 1.0},
            },
        ),
    ],
    ids=["adamw", "rmsprop", "cosine-clip"],
)
def test_dropout_with_the_engines_masks_matches_torch(
    hidden: tuple[Any, Any], changes: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    check_parity(monkeypatch, "classes", hidden, changes, dropout=(0.3, 0.2))


@pytest.mark.parametrize(
    ("problem", "hidden", "changes", "dropout"),
    [
        ("classes", ("gelu", "elu"), {"optimizer": OPTIMIZERS["adamw_amsgrad"]}, (0, 0)),
        ("classes", ("silu", "selu"), {"optimizer": OPTIMIZERS["rmsprop_all"]}, (0.2, 0)),
        (
            "regression",
            ("softplus", "gelu_tanh"),
            {"loss": "huber", "optimizer": OPTIMIZERS["adagrad_all"]},
            (0, 0),
        ),
        (
            "classes",
            ("tanh", "relu"),
            {
                "lr_schedule": SCHEDULES["onecycle"],
                "grad_clip": {"max_norm": 0.5},
                "loss_options": {"label_smoothing": 0.1, "class_weights": [1.0, 2.0, 0.5]},
            },
            (0.25, 0.25),
        ),
        (
            "binary",
            ("relu", "tanh"),
            {"loss_options": {"pos_weight": [2.0, 0.5]}, "grad_clip": {"value": 0.1}},
            (0, 0),
        ),
    ],
    ids=[
        "adamw-amsgrad",
        "rmsprop-dropout",
        "adagrad-huber",
        "onecycle-ce-options-dropout",
        "pos-weight-value-clip",
    ],
)
def test_float32_matches_torch_float32(
    problem: str,
    hidden: tuple[Any, Any],
    changes: dict[str, Any],
    dropout: tuple[float, float],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    check_parity(monkeypatch, problem, hidden, changes, dropout=dropout, dtype="float32")


CLIPS: list[dict[str, Any] | None] = [
    {"max_norm": 0.5},
    {"max_norm": 0.3, "norm_type": "inf"},
    {"value": 0.1},
    {"max_norm": 0.5, "norm_type": 1.0},
    None,
]


def float32_combinations() -> list[tuple[str, str, str, Any, dict[str, Any] | None, bool]]:
    """Every optimizer option once, and with it every schedule, loss option, activation and
    clip mode at least once (dropout on every third)."""
    schedules, losses = sorted(SCHEDULES), sorted(LOSS_CASES)
    return [
        (
            optimizer,
            schedules[i % len(schedules)],
            losses[i % len(losses)],
            ACTIVATIONS[i % len(ACTIVATIONS)],
            CLIPS[i % len(CLIPS)],
            i % 3 == 0,
        )
        for i, optimizer in enumerate(sorted(OPTIMIZERS))
    ]


@pytest.mark.parametrize(
    ("optimizer", "schedule", "loss", "activation", "clip", "dropout"),
    float32_combinations(),
    ids=lambda value: str(value) if isinstance(value, str | tuple) else None,
)
def test_every_setting_in_float32_matches_torch_float32(
    optimizer: str,
    schedule: str,
    loss: str,
    activation: Any,
    clip: dict[str, Any] | None,
    dropout: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    problem, changes = LOSS_CASES[loss]
    opt = OPTIMIZERS[optimizer]
    lr_schedule = dict(SCHEDULES[schedule])
    if "max_learning_rate" in lr_schedule and opt["name"] != "sgd":
        lr_schedule["max_learning_rate"] = 0.02  # adaptive steps: onecycle's 0.2 is chaotic
    check_parity(
        monkeypatch,
        problem,
        (activation, "tanh"),
        {**changes, "optimizer": opt, "lr_schedule": lr_schedule, "grad_clip": clip},
        dropout=(0.2, 0.2) if dropout else (0, 0),
        dtype="float32",
    )


def test_the_kept_fraction_is_within_three_sigma_of_one_minus_p(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    p = 0.3
    net = with_biases(spec_for("classes", ("relu", "relu"), (p, p)))
    _, _, recording = run_engine(
        net,
        X,
        LABELS,
        {"loss": "cross_entropy", "epochs": 20, "batch_size": BATCH, "seed": 1},
        monkeypatch,
    )
    kept = np.concatenate([(noise != 0).ravel() for noise in recording.noise])
    scale = {float(v) for noise in recording.noise for v in np.unique(noise)}
    assert scale == {0.0, 1.0 / (1.0 - p)}
    sigma = np.sqrt(p * (1 - p) / kept.size)
    assert abs(kept.mean() - (1 - p)) < 3 * sigma
    # Masks differ between batches and layers.
    assert len({noise.tobytes() for noise in recording.noise}) == len(recording.noise)


# -- initializers ----------------------------------------------------------------------------

INITS: dict[str, Any] = {
    "lecun_uniform": lambda w: torch.nn.init.kaiming_uniform_(w, nonlinearity="linear"),
    "lecun_normal": lambda w: torch.nn.init.kaiming_normal_(w, nonlinearity="linear"),
    "orthogonal": lambda w: torch.nn.init.orthogonal_(w),
}


@pytest.mark.parametrize("scheme", sorted(INITS))
@pytest.mark.parametrize(("fan_in", "fan_out"), [(400, 300), (300, 400)])
def test_new_initializers_draw_from_torchs_distributions(
    scheme: str, fan_in: int, fan_out: int
) -> None:
    ours = engine.Network.from_spec(
        {
            "input_size": fan_in,
            "layers": [{"units": fan_out, "activation": "selu"}],
            "init": {"scheme": scheme, "seed": 2},
        }
    ).get_weights()[0]["weights"]
    assert ours is not None
    torch.manual_seed(0)
    # torch stores Linear weights as (out, in); the engine's are (in, out).
    theirs = INITS[scheme](torch.empty(fan_out, fan_in, dtype=torch.float64)).numpy().T
    assert ours.shape == theirs.shape == (fan_in, fan_out)
    assert not np.allclose(ours, theirs)  # the same distribution, not the same numbers
    spread = theirs.std()
    assert ours.std() == pytest.approx(spread, rel=0.02)
    quantiles = [0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99]
    np.testing.assert_allclose(
        np.quantile(ours, quantiles), np.quantile(theirs, quantiles), atol=0.04 * spread
    )
    if scheme == "lecun_uniform":
        np.testing.assert_allclose(
            [ours.min(), ours.max()], [theirs.min(), theirs.max()], atol=1e-3
        )
    if scheme == "orthogonal":  # both semi-orthogonal the same way round
        small = min(fan_in, fan_out)
        for W in (ours, theirs):
            gram = W.T @ W if fan_out <= fan_in else W @ W.T
            np.testing.assert_allclose(gram, np.eye(small), atol=1e-12)


# -- activations, elementwise ------------------------------------------------------------------

TORCH_FUNCTIONS: dict[str, Any] = {
    "gelu": lambda z: torch.nn.functional.gelu(z),
    "gelu_tanh": lambda z: torch.nn.functional.gelu(z, approximate="tanh"),
    "elu": lambda z: torch.nn.functional.elu(z),
    "selu": lambda z: torch.nn.functional.selu(z),
    "softplus": lambda z: torch.nn.functional.softplus(z),
    "silu": lambda z: torch.nn.functional.silu(z),
    "leaky_relu": lambda z: torch.nn.functional.leaky_relu(z, 0.3),
}


@pytest.mark.parametrize("name", sorted(TORCH_FUNCTIONS))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_new_activation_values_and_derivatives_match_torch(name: str, dtype: Any) -> None:
    from engine.activations import make_activation

    rng = np.random.default_rng(7)
    Z = rng.normal(scale=3.0, size=(64, 5))
    Z[0] = 0.0
    Z[1] = [40.0, -40.0, 700.0, -700.0, 1e-8]  # saturation and overflow of exp
    Z[2] = [-1e-8, 1e4, -1e4, 20.0, 20.000001]  # softplus's threshold
    Z[3] = [-0.0, 19.99999, -5.0, 5.0, 1e-300]
    Z = Z.astype(dtype)
    dA = rng.normal(size=Z.shape).astype(dtype)
    activation = make_activation(name, 0.3 if name == "leaky_relu" else None)
    with np.errstate(over="ignore", invalid="ignore"):
        A = activation.forward(Z.copy(), np.empty_like(Z))
        dZ = activation.backward(dA.copy(), Z, A, np.empty_like(Z))
    Zt = torch.tensor(Z, requires_grad=True)
    At = TORCH_FUNCTIONS[name](Zt)
    (At * torch.tensor(dA)).sum().backward()
    assert Zt.grad is not None
    expected_A, expected_dZ = At.detach().numpy(), Zt.grad.numpy()
    assert A.dtype == dtype and dZ.dtype == dtype
    assert np.isfinite(A).all() and np.isfinite(dZ).all()
    rtol = 1e-12 if dtype == np.float64 else 2e-6
    # Relative to the scale of the extreme rows and of the ordinary ones apart: 1 + erf(z)
    # cancels for very negative z in both, so tiny outputs agree only to that scale.
    for rows in (slice(0, 4), slice(4, None)):
        for ours, theirs in ((A, expected_A), (dZ, expected_dZ)):
            scale = np.abs(theirs[rows]).max()
            np.testing.assert_allclose(ours[rows], theirs[rows], rtol=rtol, atol=rtol * scale)
