"""Every invalid spec, config, data set or checkpoint raises ConfigError naming the field and the fix."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import engine
from engine.errors import format_loc

Loc = tuple[str | int, ...]


def base_spec() -> dict[str, Any]:
    return {
        "input_size": 3,
        "layers": [
            {"units": 4, "activation": "tanh"},
            {"units": 2, "activation": "softmax"},
        ],
        "init": {"seed": 0},
    }


def explicit_weights(bias0: Any = None, bias1: Any = None) -> list[dict[str, Any]]:
    return [
        {"weights": np.zeros((3, 4)).tolist(), "bias": bias0},
        {"weights": np.zeros((4, 2)).tolist(), "bias": bias1},
    ]


def assert_config_error(
    call: Callable[[], object], loc: Loc, words: tuple[str, ...]
) -> engine.ConfigError:
    with pytest.raises(engine.ConfigError) as info:
        call()
    error = info.value
    assert error.loc == loc, f"{error.loc} != {loc}: {error}"
    message = str(error).lower()
    for word in words:
        assert word.lower() in message, f"{word!r} not in {str(error)!r}"
    # str(e) is "<field>: <reason>", the shape the service turns into a 422 detail.
    assert str(error) == f"{format_loc(loc)}: {error.reason}"
    return error


# -- network specs ---------------------------------------------------------------------------

SpecEdit = Callable[[dict[str, Any]], object]

SPEC_CASES: list[tuple[str, SpecEdit, Loc, tuple[str, ...]]] = [
    ("input_size zero", lambda s: s.update(input_size=0), ("input_size",), ("at least 1",)),
    ("input_size string", lambda s: s.update(input_size="3"), ("input_size",), ("integer",)),
    ("input_size missing", lambda s: s.pop("input_size"), ("input_size",), ("required",)),
    ("layers empty", lambda s: s.update(layers=[]), ("layers",), ("at least one layer",)),
    ("layers not a list", lambda s: s.update(layers={"units": 2}), ("layers",), ("list",)),
    ("layer not an object", lambda s: s["layers"].__setitem__(0, 4), ("layers", 0), ("object",)),
    (
        "units zero",
        lambda s: s["layers"][0].update(units=0),
        ("layers", 0, "units"),
        ("at least 1",),
    ),
    (
        "units fractional",
        lambda s: s["layers"][0].update(units=2.5),
        ("layers", 0, "units"),
        ("integer",),
    ),
    (
        "unknown activation",
        lambda s: s["layers"][0].update(activation="relu6"),
        ("layers", 0, "activation"),
        ("relu6", "identity", "sigmoid", "tanh", "relu", "leaky_relu", "softmax"),
    ),
    (
        "activation missing",
        lambda s: s["layers"][1].pop("activation"),
        ("layers", 1, "activation"),
        ("required", "sigmoid"),
    ),
    (
        "bias not a boolean",
        lambda s: s["layers"][0].update(bias="yes"),
        ("layers", 0, "bias"),
        ("true or false",),
    ),
    (
        "softmax on a hidden layer",
        lambda s: s["layers"][0].update(activation="softmax"),
        ("layers", 0, "activation"),
        ("softmax", "last layer"),
    ),
    (
        "softmax with one unit",
        lambda s: s["layers"][1].update(units=1),
        ("layers", 1, "units"),
        ("softmax", "at least 2", "sigmoid"),
    ),
    (
        "typo at top level",
        lambda s: s.update(input_sise=3),
        ("input_sise",),
        ("unknown", "input_size"),
    ),
    (
        "typo in a layer",
        lambda s: s["layers"][1].update(unit=2),
        ("layers", 1, "unit"),
        ("unknown", "units"),
    ),
    ("typo in init", lambda s: s["init"].update(sead=1), ("init", "sead"), ("unknown", "seed")),
    ("init not an object", lambda s: s.update(init="xavier"), ("init",), ("object",)),
    (
        "unknown init scheme",
        lambda s: s["init"].update(scheme="glorot"),
        ("init", "scheme"),
        ("glorot", "xavier_uniform", "he_normal", "zeros"),
    ),
    ("negative seed", lambda s: s["init"].update(seed=-1), ("init", "seed"), ("at least 0",)),
    (
        "uniform high equal to low",
        lambda s: s["init"].update(scheme="uniform", low=1.0, high=1.0),
        ("init", "high"),
        ("greater than low",),
    ),
    (
        "uniform high below low",
        lambda s: s["init"].update(scheme="uniform", low=0.5, high=-0.5),
        ("init", "high"),
        ("greater than low",),
    ),
    (
        "uniform low not a number",
        lambda s: s["init"].update(scheme="uniform", low="a"),
        ("init", "low"),
        ("number",),
    ),
    (
        "normal negative std",
        lambda s: s["init"].update(scheme="normal", std=-1.0),
        ("init", "std"),
        ("at least 0",),
    ),
    (
        "normal infinite mean",
        lambda s: s["init"].update(scheme="normal", mean=math.inf),
        ("init", "mean"),
        ("finite",),
    ),
    (
        "low for a xavier scheme",
        lambda s: s["init"].update(low=0.0),
        ("init", "low"),
        ("uniform",),
    ),
    (
        "std for the uniform scheme",
        lambda s: s["init"].update(scheme="uniform", std=1.0),
        ("init", "std"),
        ("normal",),
    ),
    # explicit weights, layer by layer
    ("weights not a list", lambda s: s.update(weights="zeros"), ("weights",), ("list",)),
    (
        "too few weight entries",
        lambda s: s.update(weights=explicit_weights()[:1]),
        ("weights",),
        ("1", "2 layers"),
    ),
    (
        "layer 0 weights transposed",
        lambda s: s.update(weights=[{"weights": np.zeros((4, 3)).tolist()}, explicit_weights()[1]]),
        ("weights", 0, "weights"),
        ("[4, 3]", "[3, 4]"),
    ),
    (
        "layer 1 weights wrong shape",
        lambda s: s.update(weights=[explicit_weights()[0], {"weights": np.zeros((4, 3)).tolist()}]),
        ("weights", 1, "weights"),
        ("[4, 3]", "[4, 2]"),
    ),
    (
        "layer 0 weights ragged",
        lambda s: s.update(
            weights=[{"weights": [[0, 0, 0, 0], [0, 0, 0], [0, 0, 0, 0]]}, explicit_weights()[1]]
        ),
        ("weights", 0, "weights"),
        ("[3, 4]", "equal length"),
    ),
    (
        "layer 0 weights NaN",
        lambda s: s.update(weights=[{"weights": [[0, 0, 0, math.nan]] * 3}, explicit_weights()[1]]),
        ("weights", 0, "weights"),
        ("finite",),
    ),
    (
        "layer 0 bias wrong length",
        lambda s: s.update(weights=explicit_weights(bias0=[0, 0, 0])),
        ("weights", 0, "bias"),
        ("[3]", "[4]"),
    ),
    (
        "layer 1 bias wrong length",
        lambda s: s.update(weights=explicit_weights(bias1=[0, 0, 0])),
        ("weights", 1, "bias"),
        ("[3]", "[2]"),
    ),
    (
        "layer 1 bias 2-D",
        lambda s: s.update(weights=explicit_weights(bias1=[[0, 0]])),
        ("weights", 1, "bias"),
        ("[1, 2]", "[2]"),
    ),
    (
        "bias for a bias-false layer",
        lambda s: (
            s["layers"][1].update(bias=False),
            s.update(weights=explicit_weights(bias1=[0.0, 0.0])),
        ),
        ("weights", 1, "bias"),
        ("null", "bias false"),
    ),
    (
        "typo in a weights entry",
        lambda s: s.update(
            weights=[{**explicit_weights()[0], "biass": None}, explicit_weights()[1]]
        ),
        ("weights", 0, "biass"),
        ("unknown", "bias"),
    ),
]


@pytest.mark.parametrize(
    ("edit", "loc", "words"),
    [case[1:] for case in SPEC_CASES],
    ids=[case[0] for case in SPEC_CASES],
)
def test_invalid_spec(edit: SpecEdit, loc: Loc, words: tuple[str, ...]) -> None:
    spec = base_spec()
    edit(spec)
    assert_config_error(lambda: engine.Network.from_spec(spec), loc, words)


def test_spec_must_be_an_object() -> None:
    assert_config_error(lambda: engine.Network.from_spec([1, 2]), (), ("object",))  # type: ignore[arg-type]


def test_the_base_spec_and_weights_are_valid() -> None:
    """The cases above fail because of their one edit, not because the base is broken."""
    engine.Network.from_spec(base_spec())
    spec = base_spec()
    spec["layers"][1]["bias"] = False
    spec["weights"] = explicit_weights(bias0=[0.0] * 4)
    engine.Network.from_spec(spec)


@pytest.mark.parametrize(
    ("weights", "loc", "words"),
    [
        ([{"weights": [[1.0, 2.0]]}], (0, "weights"), ("[1, 2]", "[2, 2]")),
        ([], (), ("0 entries", "1 layers")),
        ([{"weights": np.eye(2), "bias": [1.0]}], (0, "bias"), ("[1]", "[2]")),
        ([{"weights": np.full((2, 2), np.inf)}], (0, "weights"), ("finite",)),
    ],
)
def test_set_weights_names_the_entry(weights: Any, loc: Loc, words: tuple[str, ...]) -> None:
    net = engine.Network.from_spec(
        {"input_size": 2, "layers": [{"units": 2, "activation": "identity"}], "init": {"seed": 1}}
    )
    before = net.get_weights()
    assert_config_error(lambda: net.set_weights(weights), loc, words)
    for old, new in zip(before, net.get_weights(), strict=True):
        np.testing.assert_array_equal(old["weights"], new["weights"])
        np.testing.assert_array_equal(old["bias"], new["bias"])


# -- training configs ------------------------------------------------------------------------

CONFIG_CASES: list[tuple[str, dict[str, Any], Loc, tuple[str, ...]]] = [
    ("config typo", {"epoch": 10}, ("epoch",), ("unknown", "epochs")),
    ("unknown loss", {"loss": "hinge"}, ("loss",), ("hinge", "mse", "cross_entropy")),
    ("unknown reduction", {"reduction": "avg"}, ("reduction",), ("mean", "sum")),
    ("optimizer not an object", {"optimizer": "sgd"}, ("optimizer",), ("object",)),
    (
        "unknown optimizer",
        {"optimizer": {"name": "lbfgs"}},
        ("optimizer", "name"),
        ("lbfgs", "sgd", "adam", "adamw", "rmsprop", "adagrad"),
    ),
    (
        "negative learning rate",
        {"optimizer": {"name": "sgd", "learning_rate": -0.1}},
        ("optimizer", "learning_rate"),
        ("greater than 0",),
    ),
    (
        "zero learning rate",
        {"optimizer": {"name": "adam", "learning_rate": 0}},
        ("optimizer", "learning_rate"),
        ("greater than 0",),
    ),
    (
        "NaN learning rate",
        {"optimizer": {"name": "sgd", "learning_rate": math.nan}},
        ("optimizer", "learning_rate"),
        ("finite",),
    ),
    (
        "learning rate string",
        {"optimizer": {"name": "sgd", "learning_rate": "0.1"}},
        ("optimizer", "learning_rate"),
        ("number",),
    ),
    (
        "momentum 1",
        {"optimizer": {"name": "sgd", "learning_rate": 0.1, "momentum": 1.0}},
        ("optimizer", "momentum"),
        ("less than 1",),
    ),
    (
        "momentum above 1",
        {"optimizer": {"name": "sgd", "learning_rate": 0.1, "momentum": 1.5}},
        ("optimizer", "momentum"),
        ("less than 1",),
    ),
    (
        "negative momentum",
        {"optimizer": {"name": "sgd", "learning_rate": 0.1, "momentum": -0.5}},
        ("optimizer", "momentum"),
        ("at least 0",),
    ),
    (
        "nesterov without momentum",
        {"optimizer": {"name": "sgd", "learning_rate": 0.1, "nesterov": True}},
        ("optimizer", "nesterov"),
        ("momentum",),
    ),
    (
        "negative weight decay",
        {"optimizer": {"name": "sgd", "weight_decay": -1e-3}},
        ("optimizer", "weight_decay"),
        ("at least 0",),
    ),
    (
        "optimizer typo",
        {"optimizer": {"name": "sgd", "learning_rte": 0.1}},
        ("optimizer", "learning_rte"),
        ("unknown", "learning_rate"),
    ),
    (
        "sgd field on adam",
        {"optimizer": {"name": "adam", "momentum": 0.9}},
        ("optimizer", "momentum"),
        ("unknown", "beta1"),
    ),
    (
        "adam beta1 1",
        {"optimizer": {"name": "adam", "beta1": 1.0}},
        ("optimizer", "beta1"),
        ("less than 1",),
    ),
    (
        "adam beta2 negative",
        {"optimizer": {"name": "adam", "beta2": -0.1}},
        ("optimizer", "beta2"),
        ("at least 0",),
    ),
    (
        "adam eps zero",
        {"optimizer": {"name": "adam", "eps": 0.0}},
        ("optimizer", "eps"),
        ("greater than 0",),
    ),
    ("zero epochs", {"epochs": 0}, ("epochs",), ("at least 1",)),
    ("fractional epochs", {"epochs": 1.5}, ("epochs",), ("integer",)),
    ("boolean epochs", {"epochs": True}, ("epochs",), ("integer",)),
    ("batch_size zero", {"batch_size": 0}, ("batch_size",), ("at least 1",)),
    ("history_every zero", {"history_every": 0}, ("history_every",), ("at least 1",)),
    ("shuffle not a boolean", {"shuffle": "yes"}, ("shuffle",), ("true or false",)),
    ("negative seed", {"seed": -3}, ("seed",), ("at least 0",)),
    ("unknown dtype", {"dtype": "float16"}, ("dtype",), ("float64", "float32")),
    ("validation not an object", {"validation": 0.2}, ("validation",), ("object",)),
    ("validation empty", {"validation": {}}, ("validation",), ("fraction", "dataset_id")),
    (
        "validation both",
        {"validation": {"fraction": 0.2, "dataset_id": "d1"}},
        ("validation",),
        ("exactly one",),
    ),
    (
        "validation fraction 0",
        {"validation": {"fraction": 0.0}},
        ("validation", "fraction"),
        ("greater than 0",),
    ),
    (
        "validation fraction 1",
        {"validation": {"fraction": 1.0}},
        ("validation", "fraction"),
        ("less than 1",),
    ),
    (
        "validation typo",
        {"validation": {"fractoin": 0.2}},
        ("validation", "fractoin"),
        ("unknown", "fraction"),
    ),
    (
        "val_loss monitor without validation",
        {"early_stopping": {"monitor": "val_loss"}},
        ("early_stopping", "monitor"),
        ("validation", "fraction", '"loss"'),
    ),
    (
        "unknown monitor",
        {"early_stopping": {"monitor": "accuracy"}},
        ("early_stopping", "monitor"),
        ("loss", "val_loss"),
    ),
    (
        "patience zero",
        {"early_stopping": {"patience": 0}},
        ("early_stopping", "patience"),
        ("at least 1",),
    ),
    (
        "negative min_delta",
        {"early_stopping": {"min_delta": -0.1}},
        ("early_stopping", "min_delta"),
        ("at least 0",),
    ),
    (
        "early stopping typo",
        {"early_stopping": {"patiense": 3}},
        ("early_stopping", "patiense"),
        ("unknown", "patience"),
    ),
]


@pytest.mark.parametrize(
    ("config", "loc", "words"),
    [case[1:] for case in CONFIG_CASES],
    ids=[case[0] for case in CONFIG_CASES],
)
def test_invalid_config(config: dict[str, Any], loc: Loc, words: tuple[str, ...]) -> None:
    assert_config_error(lambda: engine.FitConfig.from_dict(config), loc, words)
    # fit validates the same way, before touching the network.
    net = engine.Network.from_spec(
        {"input_size": 2, "layers": [{"units": 1, "activation": "identity"}], "init": {"seed": 0}}
    )
    before = net.params.copy()
    assert_config_error(lambda: engine.fit(net, [[0.0, 1.0]] * 4, [0.0] * 4, config), loc, words)
    np.testing.assert_array_equal(net.params, before)


def test_service_keys_are_ignored_and_defaults_filled() -> None:
    cfg = engine.FitConfig.from_dict(
        {"network_id": "n", "dataset_id": "d", "checkpoint_every": 5, "init_from": None}
    )
    assert cfg.to_dict()["epochs"] >= 1
    assert cfg.seed is None


# -- loss versus network ---------------------------------------------------------------------


def single_layer(activation: str, units: int) -> engine.Network:
    return engine.Network.from_spec(
        {
            "input_size": 2,
            "layers": [{"units": units, "activation": activation}],
            "init": {"seed": 0},
        }
    )


@pytest.mark.parametrize(
    ("loss", "activation", "units", "required", "suggested"),
    [
        ("cross_entropy", "sigmoid", 1, "softmax", "binary_cross_entropy"),
        ("cross_entropy", "identity", 3, "softmax", "mse"),
        ("cross_entropy", "relu", 3, "softmax", "mse"),
        ("binary_cross_entropy", "softmax", 3, "sigmoid", "cross_entropy"),
        ("binary_cross_entropy", "identity", 1, "sigmoid", "mse"),
        ("binary_cross_entropy", "tanh", 1, "sigmoid", "mse"),
    ],
)
def test_loss_needs_its_output_activation(
    loss: str, activation: str, units: int, required: str, suggested: str
) -> None:
    net = single_layer(activation, units)
    words = (loss, required, activation, suggested)
    cfg = engine.FitConfig.from_dict({"loss": loss})
    assert_config_error(lambda: engine.check_compatible(net, cfg), ("loss",), words)
    y = np.zeros((3, units))
    assert_config_error(lambda: engine.fit(net, np.zeros((3, 2)), y, cfg), ("loss",), words)


# -- data ------------------------------------------------------------------------------------

NETS: dict[str, Callable[[], engine.Network]] = {
    "softmax3": lambda: single_layer("softmax", 3),
    "sigmoid1": lambda: single_layer("sigmoid", 1),
    "identity2": lambda: single_layer("identity", 2),
}
LOSS_OF = {"softmax3": "cross_entropy", "sigmoid1": "binary_cross_entropy", "identity2": "mse"}
X3 = [[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]
Y3 = [[0.0, 0.0]] * 3

DATA_CASES: list[tuple[str, str, Any, Any, Loc, tuple[str, ...]]] = [
    ("label above range", "softmax3", X3, [0, 1, 3], ("y",), ("3", "out of range", "0..2")),
    ("negative label", "softmax3", X3, [0, -1, 2], ("y",), ("-1", "out of range", "0..2")),
    ("label column", "softmax3", X3, [[0], [5], [1]], ("y",), ("5", "0..2")),
    ("fractional label", "softmax3", X3, [0, 1.5, 2], ("y",), ("whole numbers", "0..2")),
    (
        "probability row not summing to 1",
        "softmax3",
        X3,
        [[0.5, 0.5, 0.0], [0.2, 0.2, 0.2], [1.0, 0.0, 0.0]],
        ("y",),
        ("summing to 1", "class labels"),
    ),
    (
        "negative probability",
        "softmax3",
        X3,
        [[1.5, -0.5, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]],
        ("y",),
        ("non-negative",),
    ),
    (
        "one-hot with too few columns",
        "softmax3",
        X3,
        [[1, 0], [0, 1], [1, 0]],
        ("y",),
        ("2 target column", "3 output unit"),
    ),
    ("BCE target above 1", "sigmoid1", X3, [0.0, 1.5, 1.0], ("y",), ("between 0 and 1",)),
    ("BCE target below 0", "sigmoid1", X3, [[0.0], [-0.1], [1.0]], ("y",), ("between 0 and 1",)),
    ("NaN in X", "identity2", [[0, math.nan], [1, 0], [1, 1]], Y3, ("X",), ("finite", "NaN")),
    ("inf in X", "identity2", [[0, math.inf], [1, 0], [1, 1]], Y3, ("X",), ("finite",)),
    ("None in X", "identity2", [[None, 1], [1, 0], [1, 1]], Y3, ("X",), ("finite",)),
    ("NaN in y", "identity2", X3, [[0, 0], [math.nan, 0], [0, 0]], ("y",), ("finite", "NaN")),
    ("-inf in y", "identity2", X3, [[0, 0], [-math.inf, 0], [0, 0]], ("y",), ("finite",)),
    ("NaN label", "softmax3", X3, [0, math.nan, 1], ("y",), ("finite",)),
    ("ragged X", "identity2", [[0, 1], [1], [1, 1]], Y3, ("X",), ("same length",)),
    ("text in X", "identity2", [["a", "b"]] * 3, Y3, ("X",), ("numbers",)),
    ("ragged y", "identity2", X3, [[0, 0], [0], [0, 0]], ("y",), ("equal length",)),
    ("empty X", "identity2", [], [], ("X",), ("empty",)),
    ("X with no rows", "identity2", np.zeros((0, 2)), np.zeros((0, 2)), ("X",), ("empty",)),
    ("X with no columns", "identity2", [[], [], []], Y3, ("X",), ("empty",)),
    ("1-D X", "identity2", [1.0, 2.0, 3.0], Y3, ("X",), ("2-D",)),
    ("3-D y", "identity2", X3, np.zeros((3, 2, 1)), ("y",), ("1-D or 2-D",)),
    ("y shorter than X", "identity2", X3, Y3[:2], ("y",), ("2 samples", "X has 3")),
    ("y longer than X", "softmax3", X3, [0, 1, 2, 0], ("y",), ("4 samples", "X has 3")),
    (
        "n_features differs from input_size",
        "identity2",
        [[0, 1, 2]] * 3,
        Y3,
        ("X",),
        ("3 features", "input_size is 2"),
    ),
    (
        "n_targets differs from output units",
        "identity2",
        X3,
        [[0, 0, 0]] * 3,
        ("y",),
        ("3 target column", "2 output unit"),
    ),
    (
        "1-D targets for two outputs",
        "identity2",
        X3,
        [0.0, 1.0, 0.5],
        ("y",),
        ("1 target column", "2 output unit"),
    ),
]


@pytest.mark.parametrize(
    ("net_name", "X", "y", "loc", "words"),
    [case[1:] for case in DATA_CASES],
    ids=[case[0] for case in DATA_CASES],
)
def test_invalid_data(net_name: str, X: Any, y: Any, loc: Loc, words: tuple[str, ...]) -> None:
    net = NETS[net_name]()
    cfg = engine.FitConfig.from_dict({"loss": LOSS_OF[net_name], "epochs": 1})
    assert_config_error(lambda: engine.check_data(net, cfg, X, y), loc, words)
    assert_config_error(lambda: engine.fit(net, X, y, cfg), loc, words)


def test_valid_data_of_each_kind_is_accepted() -> None:
    """The data cases fail because of their one defect."""
    cases: list[tuple[str, Any]] = [
        ("softmax3", [0, 1, 2]),
        ("softmax3", [[0.5, 0.5, 0.0], [0.0, 1.0, 0.0], [0.2, 0.3, 0.5]]),
        ("sigmoid1", [0.0, 0.25, 1.0]),
        ("identity2", Y3),
    ]
    for name, y in cases:
        net = NETS[name]()
        engine.check_data(net, engine.FitConfig.from_dict({"loss": LOSS_OF[name]}), X3, y)


def test_bad_validation_data_is_named_as_such() -> None:
    net = NETS["identity2"]()
    with pytest.raises(engine.ConfigError) as info:
        engine.fit(net, X3, Y3, {"epochs": 1}, validation_data=([[0.0, 1.0, 2.0]], [[0.0, 0.0]]))
    assert str(info.value).startswith("validation.X:")
    assert "input_size is 2" in str(info.value)
    with pytest.raises(engine.ConfigError) as info:
        engine.fit(net, X3, Y3, {"epochs": 1}, validation_data=([[0.0, 1.0]], [[math.nan, 0.0]]))
    assert str(info.value).startswith("validation.y:")


@pytest.mark.parametrize(
    ("fraction", "words"),
    [(0.1, ("3 for training", "0 for validation")), (0.9, ("0 for training", "3 for validation"))],
)
def test_validation_fraction_must_leave_samples_on_both_sides(
    fraction: float, words: tuple[str, ...]
) -> None:
    net = NETS["identity2"]()
    config = {"epochs": 1, "validation": {"fraction": fraction}}
    assert_config_error(
        lambda: engine.fit(net, X3, Y3, config),
        ("validation", "fraction"),
        (*words, "at least one"),
    )


def test_validation_dataset_needs_its_arrays() -> None:
    net = NETS["identity2"]()
    config = {"epochs": 1, "validation": {"dataset_id": "ds-1"}}
    assert_config_error(
        lambda: engine.fit(net, X3, Y3, config), ("validation", "dataset_id"), ("not supplied",)
    )


@pytest.mark.parametrize(
    ("X", "loc", "words"),
    [
        ([[1.0, 2.0, 3.0]], ("X",), ("3 values", "input_size is 2")),
        ([[1.0, math.nan]], ("X",), ("finite",)),
        ([1.0, 2.0], ("X",), ("2-D",)),
        ([[1.0], [2.0, 3.0]], ("X",), ("same length",)),
    ],
)
def test_invalid_predict_input(X: Any, loc: Loc, words: tuple[str, ...]) -> None:
    assert_config_error(lambda: NETS["identity2"]().predict(X), loc, words)


def test_a_rejected_fit_leaves_the_network_untouched() -> None:
    """A float32 config that fails on its data must not round the float64 weights."""
    net = single_layer("identity", 2)
    net.set_weights([{"weights": [[0.1, 0.2], [0.3, 1 / 3]], "bias": [1e-9, math.pi]}])
    before = net.params.copy()
    config = {"epochs": 1, "dtype": "float32"}
    bad: list[tuple[Any, Any]] = [
        ([[0.0, math.nan]], [[0.0, 0.0]]),
        (X3, Y3[:2]),
        ([[0.0, 1.0, 2.0]], [[0, 0]]),
    ]
    for X, y in bad:
        with pytest.raises(engine.ConfigError):
            engine.fit(net, X, y, config)
        assert net.dtype == np.float64
        assert net.params.dtype == np.float64
        np.testing.assert_array_equal(net.params, before)


# -- resuming from a checkpoint --------------------------------------------------------------


class TakeState(engine.Callback):
    def __init__(self, at: int) -> None:
        self.at = at
        self.state: engine.TrainingState | None = None

    def on_epoch_end(
        self, trainer: engine.Trainer, epoch: int, logs: dict[str, float | None], recorded: bool
    ) -> None:
        if epoch == self.at:
            self.state = trainer.state()
            trainer.stop("paused")


RESUME_SPEC = {
    "input_size": 2,
    "layers": [{"units": 3, "activation": "tanh"}, {"units": 1, "activation": "identity"}],
    "init": {"seed": 4},
}
RESUME_CONFIG: dict[str, Any] = {
    "optimizer": {"name": "sgd", "learning_rate": 0.05, "momentum": 0.9},
    "epochs": 6,
    "batch_size": 2,
    "seed": 17,
}
RX = np.random.default_rng(0).normal(size=(8, 2))
RY = RX.sum(axis=1)


def checkpoint() -> engine.TrainingState:
    take = TakeState(3)
    engine.fit(engine.Network.from_spec(RESUME_SPEC), RX, RY, RESUME_CONFIG, callbacks=[take])
    assert take.state is not None
    return take.state


RESUME_CASES: list[tuple[str, dict[str, Any], dict[str, Any], Loc, tuple[str, ...]]] = [
    (
        "different network",
        {"layers": [{"units": 4, "activation": "tanh"}, {"units": 1, "activation": "identity"}]},
        {},
        ("initial_state",),
        ("13 parameters", "17"),
    ),
    (
        "different optimizer",
        {},
        {"optimizer": {"name": "adam", "learning_rate": 0.01}},
        ("optimizer", "name"),
        ("checkpoint", "sgd"),
    ),
    (
        "momentum dropped",
        {},
        {"optimizer": {"name": "sgd", "learning_rate": 0.05}},
        ("optimizer",),
        ("checkpoint", "momentum"),
    ),
    ("different dtype", {}, {"dtype": "float32"}, ("dtype",), ("checkpoint", "float64")),
    ("different seed", {}, {"seed": 18}, ("seed",), ("checkpoint", "17", "same seed")),
]


@pytest.mark.parametrize(
    ("spec_edit", "config_edit", "loc", "words"),
    [case[1:] for case in RESUME_CASES],
    ids=[case[0] for case in RESUME_CASES],
)
def test_resume_from_an_incompatible_checkpoint(
    spec_edit: dict[str, Any], config_edit: dict[str, Any], loc: Loc, words: tuple[str, ...]
) -> None:
    state = checkpoint()
    net = engine.Network.from_spec({**RESUME_SPEC, **spec_edit})
    before = net.params.copy()
    config = {**RESUME_CONFIG, **config_edit}
    assert_config_error(lambda: engine.fit(net, RX, RY, config, initial_state=state), loc, words)
    assert net.params.dtype == np.float64
    np.testing.assert_array_equal(net.params, before)


def test_resume_without_momentum_into_momentum_is_rejected() -> None:
    """The other direction: a plain-sgd checkpoint has no momentum buffer to continue from."""
    take = TakeState(2)
    plain = {**RESUME_CONFIG, "optimizer": {"name": "sgd", "learning_rate": 0.05}}
    engine.fit(engine.Network.from_spec(RESUME_SPEC), RX, RY, plain, callbacks=[take])
    assert take.state is not None
    net = engine.Network.from_spec(RESUME_SPEC)
    assert_config_error(
        lambda: engine.fit(net, RX, RY, RESUME_CONFIG, initial_state=take.state),
        ("optimizer",),
        ("checkpoint", "momentum"),
    )


def test_resume_with_a_compatible_checkpoint_works() -> None:
    """The resume cases fail because of their one difference."""
    net = engine.Network.from_spec(RESUME_SPEC)
    result = engine.fit(net, RX, RY, RESUME_CONFIG, initial_state=checkpoint())
    assert result.epochs_run == 6
    assert result.history["epoch"] == [4, 5, 6]
    # The seed can also be left out: it comes from the checkpoint.
    unseeded = {k: v for k, v in RESUME_CONFIG.items() if k != "seed"}
    result = engine.fit(
        engine.Network.from_spec(RESUME_SPEC), RX, RY, unseeded, initial_state=checkpoint()
    )
    assert result.seed == 17


def test_one_checkpoint_state_can_be_resumed_twice() -> None:
    """Resuming twice from one state object gives the same result (the state is not mutated)."""
    state = checkpoint()
    snapshot = copy.deepcopy(state)
    first = engine.Network.from_spec(RESUME_SPEC)
    engine.fit(first, RX, RY, RESUME_CONFIG, initial_state=state)
    second = engine.Network.from_spec(RESUME_SPEC)
    engine.fit(second, RX, RY, RESUME_CONFIG, initial_state=state)
    np.testing.assert_array_equal(first.params, second.params)
    for key, value in snapshot.arrays.items():
        np.testing.assert_array_equal(state.arrays[key], value)
    assert state.meta == snapshot.meta
