"""Every invalid issue 11 setting or combination raises the ConfigError that names the field."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest

import engine
from tests.engine.test_config_errors import Loc, assert_config_error

SPEC: dict[str, Any] = {
    "input_size": 2,
    "layers": [{"units": 4, "activation": "tanh"}, {"units": 3, "activation": "softmax"}],
    "init": {"seed": 0},
}


def layer_edit(index: int, **changes: Any) -> dict[str, Any]:
    spec = copy.deepcopy(SPEC)
    spec["layers"][index].update(changes)
    return spec


SPEC_CASES: list[tuple[str, dict[str, Any], Loc, tuple[str, ...]]] = [
    ("dropout 1", layer_edit(0, dropout=1.0), ("layers", 0, "dropout"), ("less than 1",)),
    ("dropout negative", layer_edit(0, dropout=-0.1), ("layers", 0, "dropout"), ("at least 0",)),
    ("dropout string", layer_edit(0, dropout="0.5"), ("layers", 0, "dropout"), ("number",)),
    (
        "dropout on the output",
        layer_edit(1, dropout=0.2),
        ("layers", 1, "dropout"),
        ("hidden layers", "last layer"),
    ),
    (
        "negative_slope on tanh",
        layer_edit(0, negative_slope=0.1),
        ("layers", 0, "negative_slope"),
        ("only applies to leaky_relu", "tanh"),
    ),
    (
        "negative_slope above 1",
        layer_edit(0, activation="leaky_relu", negative_slope=1.5),
        ("layers", 0, "negative_slope"),
        ("at most 1",),
    ),
    (
        "unknown activation lists the new ones",
        layer_edit(0, activation="swish"),
        ("layers", 0, "activation"),
        ("swish", "gelu", "gelu_tanh", "elu", "selu", "softplus", "silu"),
    ),
    (
        "unknown init lists the new ones",
        {**SPEC, "init": {"scheme": "lecun"}},
        ("init", "scheme"),
        ("lecun_uniform", "lecun_normal", "orthogonal"),
    ),
]


@pytest.mark.parametrize(
    ("spec", "loc", "words"), [c[1:] for c in SPEC_CASES], ids=[c[0] for c in SPEC_CASES]
)
def test_invalid_layer_settings(spec: dict[str, Any], loc: Loc, words: tuple[str, ...]) -> None:
    assert_config_error(lambda: engine.Network.from_spec(spec), loc, words)


def schedule(**fields: Any) -> dict[str, Any]:
    return {"lr_schedule": fields, "epochs": 50}


CONFIG_CASES: list[tuple[str, dict[str, Any], Loc, tuple[str, ...]]] = [
    # optimizers
    (
        "adamw with momentum",
        {"optimizer": {"name": "adamw", "momentum": 0.9}},
        ("optimizer", "momentum"),
        ("unknown", "amsgrad"),
    ),
    (
        "rmsprop alpha 1",
        {"optimizer": {"name": "rmsprop", "alpha": 1.0}},
        ("optimizer", "alpha"),
        ("less than 1",),
    ),
    (
        "adagrad negative lr_decay",
        {"optimizer": {"name": "adagrad", "lr_decay": -0.1}},
        ("optimizer", "lr_decay"),
        ("at least 0",),
    ),
    (
        "adagrad eps 0",
        {"optimizer": {"name": "adagrad", "eps": 0}},
        ("optimizer", "eps"),
        ("greater than 0",),
    ),
    (
        "adagrad negative accumulator",
        {"optimizer": {"name": "adagrad", "initial_accumulator_value": -1}},
        ("optimizer", "initial_accumulator_value"),
        ("at least 0",),
    ),
    (
        "amsgrad not a boolean",
        {"optimizer": {"name": "adam", "amsgrad": "yes"}},
        ("optimizer", "amsgrad"),
        ("true or false",),
    ),
    (
        "dampening without momentum",
        {"optimizer": {"name": "sgd", "dampening": 0.5}},
        ("optimizer", "dampening"),
        ("momentum",),
    ),
    (
        "dampening with nesterov",
        {"optimizer": {"name": "sgd", "momentum": 0.9, "nesterov": True, "dampening": 0.1}},
        ("optimizer", "dampening"),
        ("nesterov", "dampening 0"),
    ),
    (
        "rmsprop with amsgrad",
        {"optimizer": {"name": "rmsprop", "amsgrad": True}},
        ("optimizer", "amsgrad"),
        ("unknown", "centered"),
    ),
    # schedules
    ("schedule without name", schedule(gamma=0.5), ("lr_schedule", "name"), ("required", "step")),
    (
        "unknown schedule",
        schedule(name="cyclic"),
        ("lr_schedule", "name"),
        ("cyclic", "cosine", "onecycle", "plateau"),
    ),
    (
        "field of another schedule",
        schedule(name="step", step_size=5, t_max=10),
        ("lr_schedule", "t_max"),
        ("unknown", "step_size", "gamma"),
    ),
    ("step without step_size", schedule(name="step"), ("lr_schedule", "step_size"), ("required",)),
    (
        "step_size 0",
        schedule(name="step", step_size=0),
        ("lr_schedule", "step_size"),
        ("at least 1",),
    ),
    (
        "gamma 0",
        schedule(name="step", step_size=3, gamma=0),
        ("lr_schedule", "gamma"),
        ("greater than 0",),
    ),
    (
        "milestone past epochs",
        schedule(name="multistep", milestones=[10, 60]),
        ("lr_schedule", "milestones", 1),
        ("60", "past", "50 epochs"),
    ),
    (
        "milestone 0",
        schedule(name="multistep", milestones=[0, 10]),
        ("lr_schedule", "milestones", 0),
        ("at least 1",),
    ),
    (
        "milestones empty",
        schedule(name="multistep", milestones=[]),
        ("lr_schedule", "milestones"),
        ("non-empty list",),
    ),
    (
        "milestone not an integer",
        schedule(name="multistep", milestones=[2.5]),
        ("lr_schedule", "milestones", 0),
        ("integer",),
    ),
    (
        "exponential without gamma",
        schedule(name="exponential"),
        ("lr_schedule", "gamma"),
        ("required",),
    ),
    ("cosine without t_max", schedule(name="cosine"), ("lr_schedule", "t_max"), ("required",)),
    (
        "cosine negative eta_min",
        schedule(name="cosine", t_max=5, eta_min=-1),
        ("lr_schedule", "eta_min"),
        ("at least 0",),
    ),
    (
        "linear start_factor 0",
        schedule(name="linear", start_factor=0),
        ("lr_schedule", "start_factor"),
        ("greater than 0",),
    ),
    (
        "linear end_factor above 1",
        schedule(name="linear", end_factor=1.5),
        ("lr_schedule", "end_factor"),
        ("at most 1",),
    ),
    (
        "onecycle max_learning_rate 0",
        schedule(name="onecycle", max_learning_rate=0),
        ("lr_schedule", "max_learning_rate"),
        ("greater than 0",),
    ),
    (
        "onecycle max_learning_rate negative",
        schedule(name="onecycle", max_learning_rate=-0.1),
        ("lr_schedule", "max_learning_rate"),
        ("greater than 0",),
    ),
    (
        "onecycle without max_learning_rate",
        schedule(name="onecycle"),
        ("lr_schedule", "max_learning_rate"),
        ("required",),
    ),
    (
        "onecycle pct_start 1",
        schedule(name="onecycle", max_learning_rate=0.1, pct_start=1.0),
        ("lr_schedule", "pct_start"),
        ("less than 1",),
    ),
    (
        "onecycle anneal_strategy",
        schedule(name="onecycle", max_learning_rate=0.1, anneal_strategy="exp"),
        ("lr_schedule", "anneal_strategy"),
        ("cos", "linear"),
    ),
    (
        "plateau on val_loss without validation",
        schedule(name="plateau", monitor="val_loss"),
        ("lr_schedule", "monitor"),
        ("validation",),
    ),
    (
        "plateau monitors an unknown value",
        schedule(name="plateau", monitor="accuracy"),
        ("lr_schedule", "monitor"),
        ("loss", "val_loss"),
    ),
    (
        "plateau factor 1",
        schedule(name="plateau", factor=1.0),
        ("lr_schedule", "factor"),
        ("less than 1",),
    ),
    ("plateau mode", schedule(name="plateau", mode="up"), ("lr_schedule", "mode"), ("min", "max")),
    (
        "plateau negative patience",
        schedule(name="plateau", patience=-1),
        ("lr_schedule", "patience"),
        ("at least 0",),
    ),
    # clipping
    (
        "clip with both",
        {"grad_clip": {"max_norm": 1, "value": 1}},
        ("grad_clip",),
        ("exactly one",),
    ),
    ("clip with neither", {"grad_clip": {}}, ("grad_clip",), ("exactly one", "max_norm", "value")),
    (
        "clip max_norm 0",
        {"grad_clip": {"max_norm": 0}},
        ("grad_clip", "max_norm"),
        ("greater than 0",),
    ),
    (
        "clip value negative",
        {"grad_clip": {"value": -1}},
        ("grad_clip", "value"),
        ("greater than 0",),
    ),
    (
        "clip norm_type 0",
        {"grad_clip": {"max_norm": 1, "norm_type": 0}},
        ("grad_clip", "norm_type"),
        ("greater than 0",),
    ),
    (
        "clip norm_type word",
        {"grad_clip": {"max_norm": 1, "norm_type": "two"}},
        ("grad_clip", "norm_type"),
        ("inf",),
    ),
    (
        "clip value with norm_type",
        {"grad_clip": {"value": 1, "norm_type": 2}},
        ("grad_clip", "norm_type"),
        ("max_norm",),
    ),
    ("clip typo", {"grad_clip": {"max_nrom": 1}}, ("grad_clip", "max_nrom"), ("unknown",)),
    # metrics
    ("metrics not a list", {"metrics": "accuracy"}, ("metrics",), ("list",)),
    ("unknown metric", {"metrics": ["auc"]}, ("metrics", 0), ("auc", "precision", "r2")),
    (
        "classification metric with mse",
        {"metrics": ["mae", "accuracy"]},
        ("metrics", 1),
        ("accuracy", "classification", "mse", "mae, rmse, r2"),
    ),
    (
        "regression metric with cross_entropy",
        {"loss": "cross_entropy", "metrics": ["f1", "rmse"]},
        ("metrics", 1),
        ("rmse", "regression", "cross_entropy"),
    ),
    # loss options
    (
        "pos_weight with cross_entropy",
        {"loss": "cross_entropy", "loss_options": {"pos_weight": [1, 2]}},
        ("loss_options", "pos_weight"),
        ("binary_cross_entropy", "softmax", "class_weights"),
    ),
    (
        "class_weights with binary_cross_entropy",
        {"loss": "binary_cross_entropy", "loss_options": {"class_weights": [1, 2]}},
        ("loss_options", "class_weights"),
        ("cross_entropy", "pos_weight"),
    ),
    (
        "delta with mse",
        {"loss_options": {"delta": 0.5}},
        ("loss_options", "delta"),
        ("huber", "mse"),
    ),
    (
        "unknown option",
        {"loss": "huber", "loss_options": {"gamma": 2}},
        ("loss_options", "gamma"),
        ("unknown", "delta"),
    ),
    (
        "huber delta 0",
        {"loss": "huber", "loss_options": {"delta": 0}},
        ("loss_options", "delta"),
        ("greater than 0",),
    ),
    (
        "smooth_l1 negative beta",
        {"loss": "smooth_l1", "loss_options": {"beta": -1}},
        ("loss_options", "beta"),
        ("at least 0",),
    ),
    (
        "label_smoothing above 1",
        {"loss": "cross_entropy", "loss_options": {"label_smoothing": 1.5}},
        ("loss_options", "label_smoothing"),
        ("at most 1",),
    ),
    (
        "class_weights empty",
        {"loss": "cross_entropy", "loss_options": {"class_weights": []}},
        ("loss_options", "class_weights"),
        ("non-empty",),
    ),
    (
        "class weight 0",
        {"loss": "cross_entropy", "loss_options": {"class_weights": [1, 0, 2]}},
        ("loss_options", "class_weights", 1),
        ("greater than 0",),
    ),
    (
        "class weight not a number",
        {"loss": "cross_entropy", "loss_options": {"class_weights": [1, "a"]}},
        ("loss_options", "class_weights", 1),
        ("number",),
    ),
    (
        "pos_weight negative",
        {"loss": "binary_cross_entropy", "loss_options": {"pos_weight": [-1]}},
        ("loss_options", "pos_weight", 0),
        ("at least 0",),
    ),
    (
        "loss_options not an object",
        {"loss": "huber", "loss_options": [1]},
        ("loss_options",),
        ("object",),
    ),
]


@pytest.mark.parametrize(
    ("config", "loc", "words"), [c[1:] for c in CONFIG_CASES], ids=[c[0] for c in CONFIG_CASES]
)
def test_invalid_new_settings(config: dict[str, Any], loc: Loc, words: tuple[str, ...]) -> None:
    assert_config_error(lambda: engine.FitConfig.from_dict(config), loc, words)


def network(output: str, units: int) -> engine.Network:
    return engine.Network.from_spec(
        {"input_size": 2, "layers": [{"units": units, "activation": output}], "init": {"seed": 0}}
    )


@pytest.mark.parametrize(
    ("output", "units", "config", "loc", "words"),
    [
        (
            "softmax",
            3,
            {"loss": "cross_entropy", "loss_options": {"class_weights": [1, 2]}},
            ("loss_options", "class_weights"),
            ("2 weights", "3 output units", "one weight per class"),
        ),
        (
            "sigmoid",
            2,
            {"loss": "binary_cross_entropy", "loss_options": {"pos_weight": [1, 2, 3]}},
            ("loss_options", "pos_weight"),
            ("3 weights", "2 output units"),
        ),
    ],
)
def test_weights_of_the_wrong_length_are_refused_before_training(
    output: str, units: int, config: dict[str, Any], loc: Loc, words: tuple[str, ...]
) -> None:
    net = network(output, units)
    cfg = engine.FitConfig.from_dict(config)
    assert_config_error(lambda: engine.check_compatible(net, cfg), loc, words)
    X, y = np.zeros((4, 2)), np.eye(units)[[0, 1, 0, 1]]
    before = net.params.copy()
    assert_config_error(lambda: engine.fit(net, X, y, config), loc, words)
    np.testing.assert_array_equal(net.params, before)


def test_onecycle_whose_warm_up_is_exactly_one_step_is_refused() -> None:
    """PyTorch divides by zero when pct_start x total_steps is 1; the engine says why first."""
    net = network("identity", 1)
    before = net.params.copy()
    config = {
        "epochs": 10,
        "lr_schedule": {"name": "onecycle", "max_learning_rate": 0.1, "pct_start": 0.1},
    }
    assert_config_error(
        lambda: engine.fit(net, np.zeros((4, 2)), np.zeros(4), config),
        ("lr_schedule", "pct_start"),
        ("0.1", "10 steps", "pct_start"),
    )
    np.testing.assert_array_equal(net.params, before)


def test_check_data_refuses_that_onecycle_before_the_run_is_stored() -> None:
    """The service validates with check_data at creation: 40 samples, 20% validation, batches
    of 8 = 4 batches; 25 epochs = 100 steps, of which pct_start 0.01 is exactly one."""
    net = network("identity", 1)
    X, y = np.zeros((40, 2)), np.zeros(40)
    config = engine.FitConfig.from_dict(
        {
            "epochs": 25,
            "batch_size": 8,
            "validation": {"fraction": 0.2},
            "lr_schedule": {"name": "onecycle", "max_learning_rate": 0.1, "pct_start": 0.01},
        }
    )
    assert_config_error(
        lambda: engine.check_data(net, config, X, y), ("lr_schedule", "pct_start"), ("100 steps",)
    )
    engine.check_data(net, engine.FitConfig.from_dict({**config.to_dict(), "epochs": 26}), X, y)
