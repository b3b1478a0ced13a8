"""How the issue 11 settings behave in fit: metrics (against scikit-learn), the lr column,
dropout only in training, defaults that change nothing, and the new initializers."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from sklearn import metrics as sk

import engine

RNG = np.random.default_rng(21)
X = RNG.normal(size=(60, 4))
LABELS = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int) + (X[:, 2] > 0.8)
BINARY = np.stack([X[:, 0] > 0, X[:, 1] + X[:, 3] > 0.5], axis=1).astype(float)
VALUES = X[:, :2] @ np.array([[1.0, -0.5], [0.3, 2.0]]) + 0.1 * RNG.normal(size=(60, 2))


def net(output: str, units: int, **hidden: Any) -> engine.Network:
    return engine.Network.from_spec(
        {
            "input_size": 4,
            "layers": [
                {"units": 8, "activation": "tanh", **hidden},
                {"units": units, "activation": output},
            ],
            "init": {"seed": 4},
        }
    )


def fit(network: engine.Network, y: Any, **config: Any) -> engine.FitResult:
    return engine.fit(
        network,
        X,
        y,
        {
            "epochs": 15,
            "batch_size": 10,
            "seed": 2,
            "optimizer": {"name": "adam", "learning_rate": 0.02},
            **config,
        },
    )


# -- metrics -----------------------------------------------------------------------------------


def split(network: engine.Network, y: Any, config: dict[str, Any]) -> tuple[Any, Any, Any]:
    trainer = engine.Trainer(network.copy(), X, y, {**config, "epochs": 1, "seed": 2})
    assert trainer.val is not None
    return trainer.val.X, trainer.val.Y, trainer.val.labels


def test_classification_metrics_match_scikit_learn_macro_averages() -> None:
    network = net("softmax", 3)
    config = {
        "loss": "cross_entropy",
        "validation": {"fraction": 0.3},
        "metrics": ["accuracy", "precision", "recall", "f1"],
    }
    Xv, _, labels = split(network, LABELS, config)
    result = fit(network, LABELS, **config)
    predicted = network.predict(Xv).argmax(axis=1)
    logs = result.final_logs
    assert logs["val_accuracy"] == pytest.approx(sk.accuracy_score(labels, predicted), rel=1e-12)
    for name, score in (
        ("precision", sk.precision_score),
        ("recall", sk.recall_score),
        ("f1", sk.f1_score),
    ):
        expected = score(labels, predicted, average="macro", zero_division=0)
        assert logs[f"val_{name}"] == pytest.approx(expected, rel=1e-12), name
    assert set(result.history) == {
        "epoch",
        "loss",
        "val_loss",
        "accuracy",
        "val_accuracy",
        "precision",
        "val_precision",
        "recall",
        "val_recall",
        "f1",
        "val_f1",
    }


def test_training_metrics_are_those_of_the_outputs_before_each_update() -> None:
    """Full batch: epoch 1's training metrics are the initial network's on the training data."""
    network = net("softmax", 3)
    predicted = network.predict(X).argmax(axis=1)
    result = fit(network, LABELS, loss="cross_entropy", batch_size=None, metrics=["f1", "accuracy"])
    assert result.history["f1"][0] == pytest.approx(
        sk.f1_score(LABELS, predicted, average="macro", zero_division=0), rel=1e-12
    )
    assert result.history["accuracy"][0] == pytest.approx(
        sk.accuracy_score(LABELS, predicted), rel=1e-12
    )


def test_classes_absent_from_targets_and_predictions_are_left_out_of_the_average() -> None:
    network = net("softmax", 4)
    weights = network.get_weights()
    weights[1]["bias"] = np.array([0.0, 0.0, 0.0, -50.0])  # class 3 is never predicted
    network.set_weights(weights)
    predicted = network.predict(X).argmax(axis=1)
    assert 3 not in predicted and 3 not in LABELS
    result = fit(
        network, LABELS, loss="cross_entropy", batch_size=None, metrics=["precision", "recall"]
    )
    for name, score in (("precision", sk.precision_score), ("recall", sk.recall_score)):
        expected = score(LABELS, predicted, average="macro", zero_division=0)
        assert result.history[name][0] == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("outputs", [1, 2])
def test_binary_metrics_match_scikit_learn(outputs: int) -> None:
    network = net("sigmoid", outputs)
    y = BINARY[:, :outputs]
    predicted = (network.predict(X) > 0.5).astype(int)
    result = fit(
        network,
        y,
        loss="binary_cross_entropy",
        batch_size=None,
        metrics=["precision", "recall", "f1", "accuracy"],
    )
    average = "binary" if outputs == 1 else "macro"
    truth = y.astype(int)
    if outputs == 1:
        truth, predicted = truth[:, 0], predicted[:, 0]
    for name, score in (
        ("precision", sk.precision_score),
        ("recall", sk.recall_score),
        ("f1", sk.f1_score),
    ):
        expected = score(truth, predicted, average=average, zero_division=0)
        assert result.history[name][0] == pytest.approx(expected, rel=1e-12), name
    assert result.history["accuracy"][0] == pytest.approx(
        float(np.mean(truth == predicted)), rel=1e-12
    )


def test_regression_metrics_match_scikit_learn() -> None:
    network = net("identity", 2)
    config = {"loss": "huber", "validation": {"fraction": 0.25}, "metrics": ["mae", "rmse", "r2"]}
    Xv, Yv, _ = split(network, VALUES, config)
    result = fit(network, VALUES, **config)
    predicted = network.predict(Xv)
    logs = result.final_logs
    assert logs["val_mae"] == pytest.approx(sk.mean_absolute_error(Yv, predicted), rel=1e-12)
    assert logs["val_rmse"] == pytest.approx(
        math.sqrt(sk.mean_squared_error(Yv, predicted)), rel=1e-12
    )
    assert logs["val_r2"] == pytest.approx(sk.r2_score(Yv, predicted), rel=1e-12)
    assert "accuracy" not in result.history


def test_r2_of_a_constant_target_follows_scikit_learn() -> None:
    network = net("identity", 2)
    y = np.stack([VALUES[:, 0], np.full(60, 3.0)], axis=1)
    predicted = network.predict(X)
    result = fit(network, y, loss="mse", batch_size=None, metrics=["r2"])
    assert result.history["r2"][0] == pytest.approx(sk.r2_score(y, predicted), rel=1e-12)


def test_default_metrics_are_accuracy_for_classification_and_none_for_regression() -> None:
    assert set(fit(net("softmax", 3), LABELS, loss="cross_entropy").history) == {
        "epoch",
        "loss",
        "val_loss",
        "accuracy",
        "val_accuracy",
    }
    assert set(fit(net("identity", 2), VALUES, loss="l1").history) == {"epoch", "loss", "val_loss"}
    assert set(fit(net("softmax", 3), LABELS, loss="cross_entropy", metrics=[]).history) == {
        "epoch",
        "loss",
        "val_loss",
    }


# -- the lr column -----------------------------------------------------------------------------


def test_the_lr_column_holds_each_epochs_rate_only_with_a_schedule() -> None:
    assert "lr" not in fit(net("identity", 2), VALUES, loss="mse").history
    result = fit(
        net("identity", 2),
        VALUES,
        loss="mse",
        optimizer={"name": "sgd", "learning_rate": 0.1},
        lr_schedule={"name": "step", "step_size": 4, "gamma": 0.5},
    )
    assert result.history["lr"] == [0.1] * 4 + [0.05] * 4 + [0.025] * 4 + [0.0125] * 3
    assert result.final_logs["lr"] == 0.0125


def test_onecycle_records_the_rate_of_each_epochs_first_batch() -> None:
    result = fit(
        net("identity", 2),
        VALUES,
        loss="mse",
        batch_size=20,  # 3 batches per epoch
        lr_schedule={
            "name": "onecycle",
            "max_learning_rate": 0.1,
            "anneal_strategy": "linear",
            "pct_start": 0.5,
        },
    )
    lr = result.history["lr"]
    assert lr[0] == pytest.approx(0.1 / 25)
    steps = 15 * 3
    up = float(0.5 * steps) - 1
    expected_third = (0.1 - 0.004) * (6 / up) + 0.004  # epoch 3 starts at step 6
    assert lr[2] == pytest.approx(expected_third, rel=1e-15)
    assert max(lr) <= 0.1


# -- dropout -----------------------------------------------------------------------------------


def test_dropout_applies_in_training_only() -> None:
    dropped = net("identity", 2, dropout=0.5)
    plain = net("identity", 2)
    np.testing.assert_array_equal(dropped.params, plain.params)
    np.testing.assert_array_equal(dropped.predict(X), plain.predict(X))  # no dropout in predict
    trained = fit(dropped, VALUES, loss="mse", validation={"fraction": 0.2}, epochs=5)
    untouched = fit(plain, VALUES, loss="mse", validation={"fraction": 0.2}, epochs=5)
    assert trained.history["loss"] != untouched.history["loss"]
    # Validation uses the weights without dropout: val_loss is predict's loss on the held-out rows.
    trainer = engine.Trainer(
        dropped.copy(), X, VALUES, {"loss": "mse", "validation": {"fraction": 0.2}, "seed": 2}
    )
    assert trainer.val is not None
    expected = float(np.mean((dropped.predict(trainer.val.X) - trainer.val.Y) ** 2))
    assert trained.final_logs["val_loss"] == pytest.approx(expected, rel=1e-12)


def test_dropout_masks_come_from_the_runs_seed() -> None:
    runs = [
        fit(net("identity", 2, dropout=0.3), VALUES, loss="mse", seed=seed).history["loss"]
        for seed in (7, 7, 8)
    ]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_dropout_does_not_change_the_shuffling_or_the_split() -> None:
    """The dropout generator is a third child of the seed: the batches stay those of a run without it."""
    with_dropout = engine.Trainer(
        net("identity", 2, dropout=0.3), X, VALUES, {"validation": {"fraction": 0.2}, "seed": 9}
    )
    without = engine.Trainer(
        net("identity", 2), X, VALUES, {"validation": {"fraction": 0.2}, "seed": 9}
    )
    np.testing.assert_array_equal(with_dropout.train.X, without.train.X)
    assert with_dropout.shuffle_rng.random() == without.shuffle_rng.random()


# -- defaults ----------------------------------------------------------------------------------


def test_new_settings_at_their_defaults_change_nothing() -> None:
    explicit = engine.Network.from_spec(
        {
            "input_size": 4,
            "layers": [
                {"units": 8, "activation": "leaky_relu", "dropout": 0.0, "negative_slope": 0.01},
                {"units": 3, "activation": "softmax", "dropout": None},
            ],
            "init": {"seed": 4},
        }
    )
    implicit = engine.Network.from_spec(
        {
            "input_size": 4,
            "layers": [
                {"units": 8, "activation": "leaky_relu"},
                {"units": 3, "activation": "softmax"},
            ],
            "init": {"seed": 4},
        }
    )
    assert explicit.spec == implicit.spec
    a = fit(
        explicit,
        LABELS,
        loss="cross_entropy",
        lr_schedule=None,
        grad_clip=None,
        metrics=None,
        loss_options={"label_smoothing": 0.0, "class_weights": None},
        history_max_points=None,
        optimizer={"name": "sgd", "learning_rate": 0.1, "momentum": 0.9, "dampening": 0.0},
    )
    b = fit(
        implicit,
        LABELS,
        loss="cross_entropy",
        optimizer={"name": "sgd", "learning_rate": 0.1, "momentum": 0.9},
    )
    np.testing.assert_array_equal(explicit.params, implicit.params)
    assert a.history == b.history


def test_the_normalized_config_names_every_new_setting() -> None:
    cfg = engine.FitConfig.from_dict(
        {
            "loss": "huber",
            "epochs": 20,
            "lr_schedule": {"name": "multistep", "milestones": [15, 5, 5]},
            "grad_clip": {"max_norm": 2, "norm_type": "inf"},
            "metrics": ["rmse", "mae", "rmse"],
        }
    ).to_dict()
    assert cfg["lr_schedule"] == {"name": "multistep", "milestones": [5, 5, 15], "gamma": 0.1}
    assert cfg["grad_clip"] == {"max_norm": 2.0, "norm_type": "inf"}
    assert cfg["metrics"] == ["rmse", "mae"]
    assert cfg["loss_options"] == {"delta": 1.0}
    assert engine.FitConfig.from_dict(cfg) == engine.FitConfig.from_dict(cfg).from_dict(cfg)
    assert engine.FitConfig.from_dict(cfg).to_dict() == cfg


# -- initializers ------------------------------------------------------------------------------


@pytest.mark.parametrize(("fan_in", "units"), [(40, 30), (30, 40), (16, 16)])
def test_orthogonal_weights_are_semi_orthogonal(fan_in: int, units: int) -> None:
    network = engine.Network.from_spec(
        {
            "input_size": fan_in,
            "layers": [{"units": units, "activation": "tanh"}],
            "init": {"scheme": "orthogonal", "seed": 1},
        }
    )
    W = network.get_weights()[0]["weights"]
    assert W is not None
    gram = W.T @ W if units <= fan_in else W @ W.T
    np.testing.assert_allclose(gram, np.eye(min(fan_in, units)), atol=1e-12)
