"""How fit behaves: early stopping, divergence, history, callbacks, metrics, dtypes,
validation, numerical stability, prediction, weights and initialization.

Expected values come from independent NumPy references written from the contract
(PyTorch's loss definitions) or from other runs of the engine that must agree with
the one under test, never from numbers copied out of the engine.
"""

from __future__ import annotations

import math
import re
import warnings
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

import engine
from engine.network import MAX_PREDICT_BLOCK_ROWS, PREDICT_BLOCK_BYTES

Array = NDArray[np.float64]

# -- independent references ------------------------------------------------------------------


def activate(name: str, Z: Array) -> Array:
    """The activation ``name`` of pre-activations ``Z`` (n, units), from its definition."""
    if name == "identity":
        return Z
    if name == "sigmoid":
        return np.exp(-np.logaddexp(0.0, -Z))  # 1 / (1 + e^-z) without overflow
    if name == "tanh":
        return np.tanh(Z)
    if name == "relu":
        return np.where(Z > 0, Z, 0.0)
    if name == "leaky_relu":
        return np.where(Z > 0, Z, 0.01 * Z)
    if name == "softmax":
        e = np.exp(Z - Z.max(axis=1, keepdims=True))
        return np.asarray(e / e.sum(axis=1, keepdims=True), dtype=np.float64)
    raise ValueError(name)


def forward(net: engine.Network, X: Any) -> tuple[Array, Array]:
    """The last layer's (Z, A), from ``get_weights`` and ``spec`` in float64."""
    A = np.asarray(X, dtype=np.float64)
    Z = A
    for layer, weights in zip(net.spec["layers"], net.get_weights(), strict=True):
        Z = A @ np.asarray(weights["weights"], np.float64)
        if weights["bias"] is not None:
            Z = Z + np.asarray(weights["bias"], np.float64)
        A = activate(layer["activation"], Z)
    return Z, A


def one_hot(labels: Any, n_classes: int) -> Array:
    index = np.asarray(labels, dtype=np.int64)
    out = np.zeros((index.shape[0], n_classes))
    out[np.arange(index.shape[0]), index] = 1.0
    return out


def loss_value(loss: str, Z: Array, A: Array, Y: Array, reduction: str) -> float:
    """torch.nn.MSELoss, BCELoss (exact, from the logits) and CrossEntropyLoss."""
    if loss == "mse":
        terms = (A - Y) ** 2
    elif loss == "binary_cross_entropy":
        terms = np.logaddexp(0.0, Z) - Z * Y
    elif loss == "cross_entropy":
        top = Z.max(axis=1)
        lse = top + np.log(np.exp(Z - top[:, None]).sum(axis=1))
        terms = lse * Y.sum(axis=1) - (Y * Z).sum(axis=1)
    else:
        raise ValueError(loss)
    return float(terms.mean() if reduction == "mean" else terms.sum())


def network_loss(
    net: engine.Network, loss: str, X: Any, Y: Array, reduction: str = "mean"
) -> float:
    Z, A = forward(net, X)
    return loss_value(loss, Z, A, Y, reduction)


def trained(
    spec: dict[str, Any], X: Any, y: Any, config: dict[str, Any], **kwargs: Any
) -> tuple[engine.Network, engine.FitResult]:
    net = engine.Network.from_spec(spec)
    return net, engine.fit(net, X, y, config, **kwargs)


# -- shared problems -------------------------------------------------------------------------

RNG = np.random.default_rng(1234)
XR = RNG.normal(size=(40, 3))
YR = np.column_stack([np.sin(XR[:, 0]) + XR[:, 1] * XR[:, 2], XR[:, 0] - XR[:, 2]])
REGRESSOR = {
    "input_size": 3,
    "layers": [{"units": 8, "activation": "tanh"}, {"units": 2, "activation": "identity"}],
    "init": {"seed": 3},
}
XC = RNG.normal(size=(45, 4))
LABELS = (XC[:, 0] + XC[:, 1] > 0).astype(int) + (XC[:, 2] > 0.5).astype(int)
CLASSIFIER = {
    "input_size": 4,
    "layers": [{"units": 6, "activation": "relu"}, {"units": 3, "activation": "softmax"}],
    "init": {"scheme": "he_uniform", "seed": 5},
}
BINARY = {
    "input_size": 4,
    "layers": [{"units": 5, "activation": "leaky_relu"}, {"units": 2, "activation": "sigmoid"}],
    "init": {"seed": 6},
}
YB = np.column_stack([XC[:, 0] > 0, XC[:, 1] * XC[:, 3] > 0]).astype(float)
SGD = {"name": "sgd", "learning_rate": 0.05}


# -- early stopping ----------------------------------------------------------------------------


def expected_stop(values: list[float], patience: int, min_delta: float) -> tuple[int, int]:
    """(stop epoch, best epoch) by the documented rule, from an unstopped run's values."""
    best, best_epoch, wait = math.inf, 0, 0
    for epoch, value in enumerate(values, start=1):
        if value < best - min_delta:
            best, best_epoch, wait = value, epoch, 0
        else:
            wait += 1
            if wait >= patience:
                return epoch, best_epoch
    return len(values), best_epoch


@pytest.mark.parametrize(("patience", "min_delta"), [(1, 0.0), (3, 0.0), (2, 2e-3), (4, 5e-3)])
def test_early_stopping_on_loss_follows_patience_and_min_delta(
    patience: int, min_delta: float
) -> None:
    config = {"optimizer": SGD, "epochs": 200, "batch_size": 8, "seed": 1}
    _, free = trained(REGRESSOR, XR, YR, config)
    losses = free.history["loss"]
    stop, best = expected_stop(losses, patience, min_delta)
    assert stop < 200, "the problem must trigger early stopping for this test to mean anything"
    early = {"monitor": "loss", "patience": patience, "min_delta": min_delta, "restore_best": False}
    net, result = trained(REGRESSOR, XR, YR, {**config, "early_stopping": early})
    assert result.stop_reason == "early_stopping"
    assert result.epochs_run == stop
    assert result.best_epoch == best
    assert result.best_value == losses[best - 1]
    assert result.history["loss"] == losses[:stop]
    assert result.history["epoch"] == list(range(1, stop + 1))
    # restore_best false: the weights are simply those after the stopping epoch.
    reference, _ = trained(REGRESSOR, XR, YR, {**config, "epochs": stop})
    np.testing.assert_array_equal(net.params, reference.params)


def test_min_delta_larger_than_any_improvement_stops_after_patience() -> None:
    early = {"monitor": "loss", "patience": 3, "min_delta": 1e9}
    net, result = trained(
        REGRESSOR, XR, YR, {"optimizer": SGD, "epochs": 50, "early_stopping": early}
    )
    assert result.stop_reason == "early_stopping"
    assert (result.epochs_run, result.best_epoch) == (4, 1)
    # restore_best (the default): back to the weights after epoch 1.
    after_one, _ = trained(REGRESSOR, XR, YR, {"optimizer": SGD, "epochs": 1})
    np.testing.assert_array_equal(net.params, after_one.params)


def overfitting_problem() -> tuple[Array, Array, Array, Array]:
    """Validation targets half the training targets: val_loss falls, then rises."""
    rng = np.random.default_rng(8)
    X = rng.normal(size=(30, 2))
    y = (X[:, :1] - 2 * X[:, 1:]) * 2.0
    Xv = rng.normal(size=(20, 2))
    yv = (Xv[:, :1] - 2 * Xv[:, 1:]) * 1.0
    return X, y, Xv, yv


LINEAR = {
    "input_size": 2,
    "layers": [{"units": 1, "activation": "identity"}],
    "init": {"scheme": "zeros", "seed": 0},
}


@pytest.mark.parametrize("restore_best", [True, False])
def test_early_stopping_on_val_loss_restores_the_best_epochs_weights(restore_best: bool) -> None:
    X, y, Xv, yv = overfitting_problem()
    base = {
        "optimizer": {"name": "sgd", "learning_rate": 0.02},
        "epochs": 300,
        "validation": {"dataset_id": "v"},
        "seed": 0,
    }
    early = {"monitor": "val_loss", "patience": 5, "restore_best": restore_best}
    net, result = trained(LINEAR, X, y, {**base, "early_stopping": early}, validation_data=(Xv, yv))
    val = result.history["val_loss"]
    best_epoch = int(np.argmin(val)) + 1
    assert 1 < best_epoch < result.epochs_run < 300, "val_loss must fall, then rise"
    assert result.stop_reason == "early_stopping"
    assert result.epochs_run == best_epoch + 5
    assert result.best_epoch == best_epoch and result.best_value == min(val)
    # val_loss is the loss of the weights at the end of its epoch, so the restored
    # network reproduces the best val_loss (computed independently).
    if restore_best:
        assert network_loss(net, "mse", Xv, yv) == pytest.approx(min(val), rel=1e-12)
        expected_epochs = best_epoch
    else:
        assert network_loss(net, "mse", Xv, yv) == pytest.approx(val[-1], rel=1e-12)
        expected_epochs = result.epochs_run
    reference, _ = trained(
        LINEAR, X, y, {**base, "epochs": expected_epochs}, validation_data=(Xv, yv)
    )
    np.testing.assert_array_equal(net.params, reference.params)


def test_early_stopping_monitors_val_loss_by_default_when_validating() -> None:
    X, y, Xv, yv = overfitting_problem()
    config = {
        "optimizer": {"name": "sgd", "learning_rate": 0.02},
        "epochs": 300,
        "validation": {"dataset_id": "v"},
        "early_stopping": {"patience": 5},
    }
    _, result = trained(LINEAR, X, y, config, validation_data=(Xv, yv))
    assert result.stop_reason == "early_stopping"
    assert result.best_value == min(result.history["val_loss"])


# -- divergence --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("learning_rate", "batch_size", "epochs"),
    [
        (1e3, None, 100),
        (1e3, 8, 100),
        (1e8, None, 100),
        (1e100, 5, 100),
        (1e300, None, 100),
        # lr * gradient overflows: the update itself makes the weights infinite while
        # the loss it followed was finite.
        (1e308, None, 100),
        (1e308, 8, 100),
        (1e308, None, 1),
        (1e308, 40, 1),
    ],
)
def test_a_huge_learning_rate_diverges_with_finite_weights_and_advice(
    learning_rate: float, batch_size: int | None, epochs: int
) -> None:
    config = {
        "optimizer": {"name": "sgd", "learning_rate": learning_rate},
        "epochs": epochs,
        "batch_size": batch_size,
        "shuffle": False,
        "seed": 0,
    }
    X = XR * 100.0
    net, result = trained(REGRESSOR, X, YR, config)
    assert result.stop_reason == "diverged"
    assert result.epochs_run < epochs or learning_rate == 1e308
    assert result.message is not None
    assert f"epoch {result.epochs_run + 1}" in result.message or (
        f"update of epoch {result.epochs_run}" in result.message
    )
    assert "learning_rate" in result.message and "smaller" in result.message
    assert np.isfinite(net.params).all()
    assert all(math.isfinite(v) for v in result.history["loss"])
    assert result.history["epoch"] == list(range(1, result.epochs_run + 1))
    # The message says whose weights are kept; an identical run stopped there has them.
    match = re.search(r"the weights are those after epoch (\d+)", result.message)
    assert match is not None
    kept = int(match.group(1))
    assert kept in (result.epochs_run, result.epochs_run - 1)
    if kept == 0:
        np.testing.assert_array_equal(net.params, engine.Network.from_spec(REGRESSOR).params)
    else:
        reference, completed = trained(REGRESSOR, X, YR, {**config, "epochs": kept})
        assert completed.stop_reason == "completed"
        np.testing.assert_array_equal(net.params, reference.params)


def test_divergence_is_reported_with_callbacks_and_validation_too() -> None:
    seen: list[int] = []

    class Record(engine.Callback):
        def on_epoch_end(
            self, trainer: engine.Trainer, epoch: int, logs: dict[str, float | None], rec: bool
        ) -> None:
            assert logs["loss"] is not None and math.isfinite(logs["loss"])
            seen.append(epoch)

    config = {
        "optimizer": {"name": "sgd", "learning_rate": 1e4},
        "epochs": 100,
        "validation": {"fraction": 0.25},
    }
    net, result = trained(REGRESSOR, XR * 10, YR, config, callbacks=[Record()])
    assert result.stop_reason == "diverged"
    assert seen == list(range(1, result.epochs_run + 1))
    assert np.isfinite(net.params).all()


def test_an_overflowing_update_at_a_callbacks_stop_is_divergence() -> None:
    """The epoch a callback stops at had a finite loss but its update overflowed."""
    config = {"optimizer": {"name": "sgd", "learning_rate": 1e308}, "epochs": 10}
    stopper = Recorder(stop_at=1)
    net, result = trained(REGRESSOR, XR * 100, YR, config, callbacks=[stopper])
    assert [e[0] for e in stopper.epochs] == [1]
    assert result.stop_reason == "diverged"
    assert result.message is not None and "after epoch 0" in result.message
    np.testing.assert_array_equal(net.params, engine.Network.from_spec(REGRESSOR).params)


# -- history_every -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("every", "epochs", "expected"),
    [
        (1, 4, [1, 2, 3, 4]),
        (3, 10, [3, 6, 9, 10]),
        (5, 10, [5, 10]),
        (7, 3, [3]),
        (4, 12, [4, 8, 12]),
    ],
)
@pytest.mark.parametrize("classification", [False, True])
def test_history_every_records_multiples_and_the_last_epoch(
    every: int, epochs: int, expected: list[int], classification: bool
) -> None:
    spec: dict[str, Any]
    config: dict[str, Any]
    if classification:
        spec, X, y, config = CLASSIFIER, XC, LABELS, {"loss": "cross_entropy"}
    else:
        spec, X, y, config = REGRESSOR, XR, YR, {}
    config = {**config, "optimizer": SGD, "epochs": epochs, "batch_size": 10, "seed": 2}
    _, every_epoch = trained(spec, X, y, config)
    _, sparse = trained(spec, X, y, {**config, "history_every": every})
    assert sparse.history["epoch"] == expected
    lengths = {len(column) for column in sparse.history.values()}
    assert lengths == {len(expected)}
    for key, column in sparse.history.items():
        assert column == [every_epoch.history[key][e - 1] for e in expected], key


def test_history_every_keeps_the_last_epoch_when_stopping_early() -> None:
    early = {"monitor": "loss", "patience": 2, "min_delta": 1e9}
    config = {"optimizer": SGD, "epochs": 50, "history_every": 2, "early_stopping": early}
    _, result = trained(REGRESSOR, XR, YR, config)
    assert result.epochs_run == 3
    assert result.history["epoch"] == [2, 3]


# -- callbacks ---------------------------------------------------------------------------------


class Recorder(engine.Callback):
    def __init__(self, stop_at: int | None = None, reason: str = "cancelled") -> None:
        self.stop_at, self.reason = stop_at, reason
        self.begun = 0
        self.epochs: list[tuple[int, dict[str, float | None], bool, int]] = []
        self.result: engine.FitResult | None = None

    def on_train_begin(self, trainer: engine.Trainer) -> None:
        self.begun += 1

    def on_epoch_end(
        self, trainer: engine.Trainer, epoch: int, logs: dict[str, float | None], recorded: bool
    ) -> None:
        self.epochs.append((epoch, dict(logs), recorded, trainer.epoch))
        if epoch == self.stop_at:
            trainer.stop(self.reason)

    def on_train_end(self, trainer: engine.Trainer, result: engine.FitResult) -> None:
        self.result = result


@pytest.mark.parametrize("classification", [False, True])
def test_callbacks_see_every_epoch_with_its_logs(classification: bool) -> None:
    spec: dict[str, Any]
    config: dict[str, Any]
    if classification:
        spec, X, y, config = CLASSIFIER, XC, LABELS, {"loss": "cross_entropy"}
    else:
        spec, X, y, config = REGRESSOR, XR, YR, {}
    config = {**config, "optimizer": SGD, "epochs": 7, "history_every": 3, "seed": 4}
    first, second = Recorder(), Recorder()
    _, result = trained(spec, X, y, config, callbacks=[first, second])
    for recorder in (first, second):
        assert recorder.begun == 1
        assert recorder.result is result
        assert [e[0] for e in recorder.epochs] == list(range(1, 8))
        assert [e[3] for e in recorder.epochs] == list(range(1, 8))  # trainer.epoch
        assert [e[2] for e in recorder.epochs] == [e % 3 == 0 for e in range(1, 8)]
    for epoch, logs, _, _ in first.epochs:
        assert set(logs) == set(result.history) - {"epoch"}
        if epoch in result.history["epoch"]:
            index = result.history["epoch"].index(epoch)
            assert all(logs[key] == result.history[key][index] for key in logs)
    assert result.final_logs == first.epochs[-1][1]
    # Callbacks observe; they do not change training.
    net_plain, plain = trained(spec, X, y, config)
    net_observed, _ = trained(spec, X, y, config, callbacks=[Recorder()])
    np.testing.assert_array_equal(net_plain.params, net_observed.params)
    assert plain.history == result.history


@pytest.mark.parametrize(("reason", "full_batch"), [("cancelled", True), ("paused", False)])
def test_a_callback_stops_training_at_that_epoch(reason: str, full_batch: bool) -> None:
    config = {"optimizer": SGD, "epochs": 20, "batch_size": None if full_batch else 8, "seed": 9}
    recorder = Recorder(stop_at=4, reason=reason)
    net, result = trained(REGRESSOR, XR, YR, config, callbacks=[recorder])
    assert result.stop_reason == reason
    assert result.epochs_run == 4
    assert result.history["epoch"] == [1, 2, 3, 4]
    assert [e[0] for e in recorder.epochs] == [1, 2, 3, 4]
    assert recorder.result is result
    reference, _ = trained(REGRESSOR, XR, YR, {**config, "epochs": 4})
    np.testing.assert_array_equal(net.params, reference.params)


def test_stop_during_early_stopping_run_keeps_the_callbacks_reason() -> None:
    early = {"monitor": "loss", "patience": 50, "restore_best": True}
    config = {"optimizer": SGD, "epochs": 20, "early_stopping": early}
    _, result = trained(REGRESSOR, XR, YR, config, callbacks=[Recorder(stop_at=6)])
    assert result.stop_reason == "cancelled"
    assert result.epochs_run == 6


# -- metrics -----------------------------------------------------------------------------------


def test_accuracy_is_reported_for_cross_entropy() -> None:
    config = {
        "loss": "cross_entropy",
        "optimizer": {"name": "sgd", "learning_rate": 0.1},
        "epochs": 5,
        "validation": {"dataset_id": "v"},
    }
    Xv, yv = XC[:15], LABELS[:15]
    before = engine.Network.from_spec(CLASSIFIER)
    net, result = trained(CLASSIFIER, XC[15:], LABELS[15:], config, validation_data=(Xv, yv))
    assert set(result.history) == {"epoch", "loss", "val_loss", "accuracy", "val_accuracy"}
    # Full batch: epoch 1's loss and accuracy are those of the initial weights.
    _, A0 = forward(before, XC[15:])
    assert result.history["accuracy"][0] == np.mean(A0.argmax(axis=1) == LABELS[15:])
    # val_accuracy is measured after the epoch's update: the final weights.
    _, A = forward(net, Xv)
    assert result.history["val_accuracy"][-1] == np.mean(A.argmax(axis=1) == yv)
    assert all(0.0 <= a <= 1.0 for a in result.history["accuracy"])


def test_accuracy_for_binary_cross_entropy_counts_every_output() -> None:
    config = {"loss": "binary_cross_entropy", "optimizer": SGD, "epochs": 1}
    before = engine.Network.from_spec(BINARY)
    _, result = trained(BINARY, XC, YB, config)
    _, A0 = forward(before, XC)
    assert result.history["accuracy"] == [np.mean((A0 > 0.5) == (YB > 0.5))]
    assert result.history["val_accuracy"] == [None]
    assert result.history["val_loss"] == [None]


def test_no_accuracy_for_mse() -> None:
    config = {"optimizer": SGD, "epochs": 3, "validation": {"fraction": 0.2}}
    _, result = trained(REGRESSOR, XR, YR, config)
    assert set(result.history) == {"epoch", "loss", "val_loss"}
    assert "accuracy" not in result.final_logs and "val_accuracy" not in result.final_logs
    # mse on a sigmoid or softmax output is still regression: no accuracy.
    softmax_mse = {**CLASSIFIER}
    _, result = trained(softmax_mse, XC, one_hot(LABELS, 3), {"optimizer": SGD, "epochs": 2})
    assert set(result.history) == {"epoch", "loss", "val_loss"}


# -- labels versus one-hot ---------------------------------------------------------------------


@pytest.mark.parametrize("labels_as", ["list", "int_array", "float_array", "column"])
def test_integer_labels_train_exactly_like_one_hot_targets(labels_as: str) -> None:
    config = {
        "loss": "cross_entropy",
        "optimizer": {"name": "adam", "learning_rate": 0.01},
        "epochs": 6,
        "batch_size": 7,
        "seed": 12,
        "validation": {"fraction": 0.2},
    }
    labels: Any = {
        "list": LABELS.tolist(),
        "int_array": LABELS,
        "float_array": LABELS.astype(float),
        "column": LABELS.reshape(-1, 1),
    }[labels_as]
    net_labels, with_labels = trained(CLASSIFIER, XC, labels, config)
    net_onehot, with_onehot = trained(CLASSIFIER, XC, one_hot(LABELS, 3), config)
    np.testing.assert_array_equal(net_labels.params, net_onehot.params)
    assert with_labels.history == with_onehot.history


# -- float32 -----------------------------------------------------------------------------------


@pytest.mark.parametrize("optimizer", [SGD, {"name": "adam", "learning_rate": 0.01}])
def test_float32_training_keeps_float32_everywhere(optimizer: dict[str, Any]) -> None:
    config = {"optimizer": optimizer, "epochs": 5, "batch_size": 8, "seed": 3}
    net32, result32 = trained(REGRESSOR, XR, YR, {**config, "dtype": "float32"})
    net64, result64 = trained(REGRESSOR, XR, YR, config)
    assert net32.dtype == np.float32 and net32.params.dtype == np.float32
    for layer in net32.get_weights():
        assert layer["weights"] is not None and layer["weights"].dtype == np.float32
        assert layer["bias"] is not None and layer["bias"].dtype == np.float32
    prediction = net32.predict(XR)
    assert prediction.dtype == np.float32 and prediction.shape == (40, 2)
    assert net64.predict(XR).dtype == np.float64
    # Same training, rounded: close to float64 but not identical.
    np.testing.assert_allclose(net32.params, net64.params, rtol=1e-4, atol=1e-5)
    assert not np.array_equal(net32.params.astype(np.float64), net64.params)
    np.testing.assert_allclose(result32.history["loss"], result64.history["loss"], rtol=1e-4)
    # The float32 prediction is the float32 network's own forward pass.
    np.testing.assert_allclose(prediction, forward(net32, XR)[1], rtol=1e-5, atol=1e-6)


# -- validation --------------------------------------------------------------------------------


def test_separate_validation_data_gives_the_val_loss_of_the_final_weights() -> None:
    Xv = RNG.normal(size=(13, 3))
    yv = np.column_stack([np.sin(Xv[:, 0]), Xv[:, 0] - Xv[:, 2]])
    config = {
        "optimizer": SGD,
        "epochs": 4,
        "batch_size": 10,
        "reduction": "sum",
        "validation": {"dataset_id": "val"},
        "seed": 8,
    }
    net, result = trained(REGRESSOR, XR, YR, config, validation_data=(Xv, yv))
    assert all(v is not None for v in result.history["val_loss"])
    expected = network_loss(net, "mse", Xv, yv, "sum")
    assert result.history["val_loss"][-1] == pytest.approx(expected, rel=1e-12)
    assert result.final_logs["val_loss"] == result.history["val_loss"][-1]
    # Validation data never trains: the weights equal a run without it.
    plain, _ = trained(REGRESSOR, XR, YR, {**config, "validation": None})
    np.testing.assert_array_equal(net.params, plain.params)


def split_of(seed: int) -> tuple[set[int], set[int], float]:
    """Which samples a 0.25 validation split trains on, read off the epoch-1 loss.

    Sample i's initial loss (zero weights) is 4**i, so the full-batch loss of epoch 1
    is an exact sum of distinct powers of two that names the training samples.
    """
    n = 20
    X = np.random.default_rng(0).normal(size=(n, 2))
    y = 2.0 ** np.arange(n)
    config = {
        "optimizer": {"name": "sgd", "learning_rate": 1e-40},
        "epochs": 1,
        "validation": {"fraction": 0.25},
        "seed": seed,
    }
    _, result = trained(LINEAR, X, y, config)
    total = round(result.history["loss"][0] * 15)
    train = {i for i in range(n) if total >> (2 * i) & 1}
    assert total == sum(4**i for i in train)
    val_loss = result.history["val_loss"][0]
    assert val_loss is not None
    return train, set(range(n)) - train, val_loss


def test_validation_fraction_holds_out_that_share_of_the_samples() -> None:
    train, val, val_loss = split_of(seed=3)
    assert (len(train), len(val)) == (15, 5)
    # val_loss is measured on exactly the held-out samples (weights barely moved).
    assert val_loss == pytest.approx(sum(4.0**i for i in val) / 5, rel=1e-12)
    assert split_of(seed=3)[0] == train
    others = [split_of(seed)[0] for seed in (4, 5, 6)]
    assert any(other != train for other in others), "the split must depend on the seed"


# -- large pre-activations ---------------------------------------------------------------------

STABILITY_CASES = [
    ("mse", "identity", 2),
    ("mse", "sigmoid", 2),
    ("mse", "tanh", 2),
    ("mse", "softmax", 2),
    ("binary_cross_entropy", "sigmoid", 2),
    ("cross_entropy", "softmax", 3),
]


@pytest.mark.parametrize(("loss", "activation", "units"), STABILITY_CASES)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_huge_pre_activations_give_exact_losses_and_no_warnings(
    loss: str, activation: str, units: int, dtype: str, reduction: str
) -> None:
    rng = np.random.default_rng(units)
    X = rng.normal(size=(24, 3))
    spec = {
        "input_size": 3,
        "layers": [{"units": units, "activation": activation}],
        "init": {"scheme": "normal", "std": 3000.0, "seed": 1},
    }
    if loss == "cross_entropy":
        y: Any = rng.integers(0, units, 24)
        Y = one_hot(y, units)
    elif loss == "binary_cross_entropy":
        Y = y = (rng.random((24, units)) > 0.5).astype(float)
    else:
        Y = y = rng.random((24, units))
    before = engine.Network.from_spec(spec)
    Z0, A0 = forward(before, X)
    assert np.abs(Z0).max() > 5e3, "the case must reach |Z| in the thousands"
    config = {
        "loss": loss,
        "reduction": reduction,
        "optimizer": {"name": "sgd", "learning_rate": 1e-9},
        "epochs": 2,
        "dtype": dtype,
        "validation": {"dataset_id": "v"},
    }
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        net, result = trained(spec, X, y, config, validation_data=(X, y))
        prediction = net.predict(X)
    assert np.isfinite(prediction).all()
    assert result.stop_reason == "completed"
    expected = loss_value(loss, Z0, A0, Y, reduction)
    assert math.isfinite(expected)
    # Full batch: epoch 1's loss is the initial weights' loss, exact despite |Z| ~ 1e4.
    rtol = 1e-12 if dtype == "float64" else 1e-4
    assert result.history["loss"][0] == pytest.approx(expected, rel=rtol, abs=rtol)


# -- predict -----------------------------------------------------------------------------------


def test_predict_on_more_rows_than_a_block_equals_the_whole_forward_pass() -> None:
    rng = np.random.default_rng(3)
    net = engine.Network.from_spec(CLASSIFIER)
    block = net.predict_block_rows()
    assert block == MAX_PREDICT_BLOCK_ROWS  # a narrow network: the most rows
    n = 2 * block + 17
    X = rng.normal(size=(n, 4))
    prediction = net.predict(X)
    assert prediction.shape == (n, 3)
    whole = net.forward(X)[1]
    np.testing.assert_allclose(prediction, whole, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(prediction, forward(net, X)[1], rtol=1e-12, atol=1e-14)
    # Row order is kept across block boundaries.
    for start in (0, block - 1, block, 2 * block, n - 1):
        np.testing.assert_allclose(prediction[start], net.predict(X[start : start + 1])[0])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_predict_blocks_fit_the_block_bytes_and_give_predicts_bits(dtype: str) -> None:
    """A 3-254-3 network's widest layer takes 3 + 2 x 254 values per row: 1,026 rows of
    float64 (2,052 of float32) fit 4 MiB. Predicting any split of the rows at block
    boundaries gives the bits of one predict call (the same products)."""
    spec = {**CLASSIFIER, "input_size": 3}
    spec["layers"] = [{"units": 254, "activation": "tanh"}, {"units": 3, "activation": "softmax"}]
    net = engine.Network.from_spec(spec)
    net.astype(dtype)
    block = net.predict_block_rows()
    itemsize = np.dtype(dtype).itemsize
    assert block == PREDICT_BLOCK_BYTES // (itemsize * (3 + 2 * 254))
    assert block == {"float64": 1026, "float32": 2052}[dtype]
    X = np.random.default_rng(5).normal(size=(5 * block + 3, 3))
    whole = net.predict(X)
    for cut in (block, 3 * block):
        parts = np.concatenate([net.predict(X[:cut]), net.predict(X[cut:])])
        assert parts.tobytes() == whole.tobytes()
    blocks = list(net.predict_blocks(net.check_input(X)))
    assert [A.shape[0] for _, A in blocks] == [block] * 5 + [3]
    assert np.concatenate([A for _, A in blocks]).tobytes() == whole.tobytes()


def test_a_layer_wider_than_the_block_bytes_predicts_one_row_at_a_time() -> None:
    spec = {**CLASSIFIER, "input_size": 2}
    spec["layers"] = [
        {"units": 300_000, "activation": "relu"},
        {"units": 1, "activation": "identity"},
    ]
    net = engine.Network.from_spec(spec)
    assert net.predict_block_rows() == 1
    X = np.random.default_rng(6).normal(size=(3, 2))
    np.testing.assert_allclose(net.predict(X), forward(net, X)[1], rtol=1e-12)


def test_predict_accepts_lists_and_returns_one_row_per_sample() -> None:
    net = engine.Network.from_spec(REGRESSOR)
    prediction = net.predict(XR[:3].tolist())
    assert prediction.shape == (3, 2)
    np.testing.assert_allclose(prediction, forward(net, XR[:3])[1], rtol=1e-13)
    assert net.predict(np.zeros((0, 3))).shape == (0, 2)


# -- weights -----------------------------------------------------------------------------------


def test_get_and_set_weights_round_trip() -> None:
    spec = {
        "input_size": 3,
        "layers": [
            {"units": 4, "activation": "relu", "bias": True},
            {"units": 2, "activation": "identity", "bias": False},
        ],
        "init": {"seed": 1},
    }
    source = engine.Network.from_spec(spec)
    source.params[...] = np.random.default_rng(0).normal(size=source.n_parameters)
    weights = source.get_weights()
    assert [w["weights"].shape for w in weights] == [(3, 4), (4, 2)]  # type: ignore[union-attr]
    assert weights[0]["bias"] is not None and weights[0]["bias"].shape == (4,)
    assert weights[1]["bias"] is None
    assert source.n_parameters == 3 * 4 + 4 + 4 * 2
    target = engine.Network.from_spec(spec)
    target.set_weights(weights)
    np.testing.assert_array_equal(target.params, source.params)
    np.testing.assert_array_equal(target.predict(XR), source.predict(XR))
    # Through JSON-shaped lists, bit for bit (Python floats repr exactly).
    as_json = [
        {
            "weights": np.asarray(w["weights"]).tolist(),
            "bias": None if w["bias"] is None else w["bias"].tolist(),
        }
        for w in weights
    ]
    target = engine.Network.from_spec({**spec, "weights": as_json})
    np.testing.assert_array_equal(target.params, source.params)
    # get_weights returns copies.
    weights[0]["weights"][...] = 0.0  # type: ignore[index]
    assert np.abs(np.asarray(source.get_weights()[0]["weights"])).sum() > 0


def test_set_weights_without_bias_means_zero_bias() -> None:
    net = engine.Network.from_spec(REGRESSOR)
    net.params[...] = 1.0
    net.set_weights([{"weights": np.ones((3, 8))}, {"weights": np.ones((8, 2)), "bias": None}])
    for layer in net.get_weights():
        np.testing.assert_array_equal(np.asarray(layer["bias"]), 0.0)


def test_explicit_weights_in_the_spec_are_used_as_given() -> None:
    W = [[0.5, -1.0], [2.0, 0.25]]
    net = engine.Network.from_spec(
        {
            "input_size": 2,
            "layers": [{"units": 2, "activation": "identity"}],
            "weights": [{"weights": W, "bias": [0.1, -0.2]}],
        }
    )
    np.testing.assert_array_equal(net.predict([[1.0, 2.0]]), [[0.5 + 4.0 + 0.1, -1.0 + 0.5 - 0.2]])
    assert "weights" not in net.spec


# -- seeds and initializers --------------------------------------------------------------------


def test_the_drawn_seed_rebuilds_identical_weights() -> None:
    spec = {k: v for k, v in CLASSIFIER.items() if k != "init"}
    first = engine.Network.from_spec(spec)
    seed = first.spec["init"]["seed"]
    assert isinstance(seed, int) and 0 <= seed < 2**53
    assert first.spec["init"]["scheme"] == "xavier_uniform"
    rebuilt = engine.Network.from_spec(first.spec)
    np.testing.assert_array_equal(rebuilt.params, first.params)
    assert rebuilt.spec == first.spec
    other = engine.Network.from_spec(spec)
    assert other.spec["init"]["seed"] != seed
    assert not np.array_equal(other.params, first.params)


def test_the_same_seed_gives_the_same_weights_and_another_seed_others() -> None:
    a = engine.Network.from_spec(CLASSIFIER)
    b = engine.Network.from_spec(CLASSIFIER)
    c = engine.Network.from_spec({**CLASSIFIER, "init": {"scheme": "he_uniform", "seed": 6}})
    np.testing.assert_array_equal(a.params, b.params)
    assert not np.array_equal(a.params, c.params)


def wide(scheme: str, **params: float) -> engine.Network:
    return engine.Network.from_spec(
        {
            "input_size": 300,
            "layers": [
                {"units": 200, "activation": "relu"},
                {"units": 100, "activation": "relu"},
            ],
            "init": {"scheme": scheme, "seed": 21, **params},
        }
    )


@pytest.mark.parametrize(
    ("scheme", "bound_or_std"),
    [
        ("xavier_uniform", lambda fi, fo: math.sqrt(6 / (fi + fo))),
        ("he_uniform", lambda fi, fo: math.sqrt(6 / fi)),
        ("xavier_normal", lambda fi, fo: math.sqrt(2 / (fi + fo))),
        ("he_normal", lambda fi, fo: math.sqrt(2 / fi)),
    ],
)
def test_scaled_schemes_use_each_layers_fans(scheme: str, bound_or_std: Any) -> None:
    net = wide(scheme)
    for layer in net.get_weights():
        W, b = layer["weights"], layer["bias"]
        assert W is not None and b is not None
        fan_in, fan_out = W.shape
        scale = bound_or_std(fan_in, fan_out)
        np.testing.assert_array_equal(b, 0.0)
        assert abs(W.mean()) < 0.02 * scale
        if scheme.endswith("uniform"):
            assert -scale <= W.min() < -0.99 * scale and 0.99 * scale < W.max() <= scale
            assert W.std() == pytest.approx(scale / math.sqrt(3), rel=0.02)
        else:
            assert W.std() == pytest.approx(scale, rel=0.02)
            assert np.abs(W).max() > 3.5 * scale  # normal tails, not a bounded distribution


@pytest.mark.parametrize(("low", "high"), [(0.0, 1.0), (-3.0, -2.0), (0.25, 0.5)])
def test_uniform_scheme_respects_low_and_high(low: float, high: float) -> None:
    net = wide("uniform", low=low, high=high)
    for layer in net.get_weights():
        w = layer["weights"]
        assert w is not None
        assert low <= w.min() and w.max() < high
        assert w.min() < low + 0.01 * (high - low) and w.max() > high - 0.01 * (high - low)
        assert w.mean() == pytest.approx((low + high) / 2, abs=0.01 * (high - low))
        np.testing.assert_array_equal(np.asarray(layer["bias"]), 0.0)


def test_uniform_scheme_defaults_to_zero_one() -> None:
    w = wide("uniform").get_weights()[0]["weights"]
    assert w is not None and w.min() >= 0.0 and w.max() < 1.0
    assert w.mean() == pytest.approx(0.5, abs=0.01)


@pytest.mark.parametrize(("mean", "std"), [(0.0, 1.0), (2.5, 0.1), (-1.0, 3.0), (4.0, 0.0)])
def test_normal_scheme_respects_mean_and_std(mean: float, std: float) -> None:
    net = wide("normal", mean=mean, std=std)
    for layer in net.get_weights():
        w = layer["weights"]
        assert w is not None
        assert w.mean() == pytest.approx(mean, abs=0.02 * max(std, 1e-12) + 1e-15)
        assert w.std() == pytest.approx(std, rel=0.02, abs=1e-15)
        np.testing.assert_array_equal(np.asarray(layer["bias"]), 0.0)


def test_zeros_scheme_gives_all_zero_parameters() -> None:
    net = wide("zeros")
    np.testing.assert_array_equal(net.params, 0.0)
    assert net.spec["init"] == {"scheme": "zeros", "seed": 21}


def test_layers_get_different_draws_from_one_seed() -> None:
    net = engine.Network.from_spec(
        {
            "input_size": 5,
            "layers": [{"units": 5, "activation": "tanh"}, {"units": 5, "activation": "tanh"}],
            "init": {"scheme": "normal", "seed": 3},
        }
    )
    first, second = (np.asarray(layer["weights"]) for layer in net.get_weights())
    assert not np.array_equal(first, second)
