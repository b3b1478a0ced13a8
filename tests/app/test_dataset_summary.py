"""A run checked against a dataset's summary fails exactly as engine.check_data on its arrays.

``POST /v1/runs`` checks the summary (app/datasets/summary.py) instead of decoding the
dataset; these tests compare the two on every target kind (labels, one-hot,
probabilities, values, the BCE range, width mismatches, validation splits, float32
overflow), case by case and on generated data.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

import engine
from app.datasets.summary import (
    DataSummary,
    LabelRecords,
    check_summary,
    summarize,
    targets_for_loss,
)

ACTIVATION = {"mse": "identity", "binary_cross_entropy": "sigmoid", "cross_entropy": "softmax"}


def _network(input_size: int, outputs: int, activation: str) -> engine.Network:
    return engine.Network.from_spec(
        {
            "input_size": input_size,
            "layers": [{"units": outputs, "activation": activation}],
            "init": {"scheme": "xavier_uniform", "seed": 0},
        }
    )


def _outcome(call: Any) -> tuple[tuple[str | int, ...], str] | None:
    try:
        with np.errstate(over="ignore"):  # float32 overflow is the error, not a warning
            call()
    except engine.ConfigError as exc:
        return exc.loc, exc.reason
    return None


def _compare(
    X: NDArray[np.float64],
    y: NDArray[Any],
    network: engine.Network,
    config: dict[str, Any],
) -> tuple[tuple[str | int, ...], str] | None:
    """Both checks' outcome (asserted equal), after a round trip of the stored summary."""
    fit_config = engine.FitConfig.from_dict(config)
    summary, records = summarize(X, y)
    stored = DataSummary.from_json(summary.to_json())
    assert stored == summary
    loaded = None if records is None else LabelRecords.decode(records.encode())

    def load_records() -> LabelRecords:
        assert loaded is not None, "label records asked for a dataset that has none"
        return loaded

    expected = _outcome(
        lambda: engine.check_data(network, fit_config, X, targets_for_loss(fit_config.loss, y))
    )
    actual = _outcome(lambda: check_summary(network, fit_config, stored, load_records))
    assert actual == expected
    return expected


def _labels(*values: int) -> NDArray[np.int64]:
    return np.asarray(values, dtype=np.int64)


def _values(*rows: list[float]) -> NDArray[np.float64]:
    return np.asarray(rows, dtype=np.float64)


X4 = np.arange(8, dtype=np.float64).reshape(4, 2)
CE, MSE, BCE = "cross_entropy", "mse", "binary_cross_entropy"
FITS, FAILS = True, False
CASES: list[tuple[str, bool, NDArray[Any], NDArray[Any], str, int, dict[str, Any]]] = [
    ("labels", FITS, X4, _labels(0, 1, 2, 1), CE, 3, {}),
    ("label out of range", FAILS, X4, _labels(0, 5, 1, 7), CE, 3, {}),
    ("first of several bad labels", FAILS, X4, _labels(0, 9, 4, 3), CE, 3, {}),
    ("labels as a column for mse", FITS, X4, _labels(0, 5, 1, 7), MSE, 1, {}),
    ("labels, two outputs for mse", FAILS, X4, _labels(0, 1, 1, 0), MSE, 2, {}),
    ("labels for bce, out of range", FAILS, X4, _labels(0, 2, 1, 0), BCE, 1, {}),
    ("one-hot", FITS, X4, _values([1, 0], [0, 1], [1, 0], [0, 1]), CE, 2, {}),
    ("one-hot, too few outputs", FAILS, X4, _values([1, 0], [0, 1], [1, 0], [0, 1]), CE, 3, {}),
    (
        "probabilities",
        FITS,
        X4,
        _values([0.25, 0.75], [0.5, 0.5000005], [1, 0], [0.1, 0.9]),
        CE,
        2,
        {},
    ),
    (
        "a row summing past the tolerance",
        FAILS,
        X4,
        _values([0.25, 0.75], [0.5, 0.500002], [1, 0], [0, 1]),
        CE,
        2,
        {},
    ),
    ("a negative probability", FAILS, X4, _values([1.5, -0.5], [0, 1], [1, 0], [0, 1]), CE, 2, {}),
    ("column labels, negative", FAILS, X4, _values([0], [2], [-1], [5]), CE, 3, {}),
    ("column labels, negative first", FAILS, X4, _values([0], [-1], [2], [5]), CE, 2, {}),
    ("column labels, not whole", FAILS, X4, _values([0], [1.5], [1], [9]), CE, 3, {}),
    ("values", FITS, X4, _values([0.5], [-2], [3], [1]), MSE, 1, {}),
    ("values, width mismatch", FAILS, X4, _values([0.5, 1], [2, 3], [3, 4], [1, 2]), MSE, 3, {}),
    ("bce in range", FITS, X4, _values([0], [1], [0.5], [1]), BCE, 1, {}),
    ("bce below 0", FAILS, X4, _values([0], [1], [-0.1], [1]), BCE, 1, {}),
    ("bce above 1", FAILS, X4, _values([0], [1.1], [0], [1]), BCE, 1, {}),
    ("input width mismatch", FAILS, X4, _labels(0, 1, 0, 1), CE, 2, {"input_size": 3}),
    ("validation split", FITS, X4, _labels(0, 1, 0, 1), CE, 2, {"fraction": 0.5}),
    ("validation split too big", FAILS, X4, _labels(0, 1, 0, 1), CE, 2, {"fraction": 0.9}),
    ("validation split too small", FAILS, X4, _labels(0, 1, 0, 1), CE, 2, {"fraction": 0.1}),
    (
        "float32 overflow",
        FAILS,
        _values([1.0, 2.0], [-4e38, 0], [0, 1], [1, 1]),
        _labels(0, 1, 0, 1),
        CE,
        2,
        {"dtype": "float32"},
    ),
    (
        "float32 max",
        FITS,
        _values([3.4028234e38, 2.0], [0, 0], [0, 1], [1, 1]),
        _labels(0, 1, 0, 1),
        CE,
        2,
        {"dtype": "float32"},
    ),
    ("loss against the output layer", FAILS, X4, _labels(0, 1, 0, 1), CE, 2, {"bad": 1}),
    ("onecycle warm-up of one step", FAILS, X4, _labels(0, 1, 0, 1), CE, 2, {"onecycle": 0.25}),
    ("onecycle warm-up", FITS, X4, _labels(0, 1, 0, 1), CE, 2, {"onecycle": 0.3}),
    (
        "onecycle after a split",
        FAILS,
        X4,
        _labels(0, 1, 0, 1),
        CE,
        2,
        {"onecycle": 1 / 3, "fraction": 0.25},
    ),
    ("class weights, one per class", FITS, X4, _labels(0, 1, 0, 1), CE, 2, {"weights": 2}),
    ("class weights, too few", FAILS, X4, _labels(0, 1, 0, 1), CE, 2, {"weights": 1}),
]


@pytest.mark.parametrize(
    ("fits", "X", "y", "loss", "outputs", "extra"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_the_summary_check_fails_as_check_data(
    fits: bool,
    X: NDArray[np.float64],
    y: NDArray[Any],
    loss: str,
    outputs: int,
    extra: dict[str, Any],
) -> None:
    activation = "sigmoid" if extra.get("bad") else ACTIVATION[loss]
    network = _network(extra.get("input_size", X.shape[1]), outputs, activation)
    config: dict[str, Any] = {"loss": loss, "epochs": 1, "dtype": extra.get("dtype", "float64")}
    if "fraction" in extra:
        config["validation"] = {"fraction": extra["fraction"]}
    if "onecycle" in extra:  # 4 steps (one epoch, 4 batches of 1): pct_start 0.25 is one step
        config["batch_size"] = 1
        config["lr_schedule"] = {
            "name": "onecycle",
            "pct_start": extra["onecycle"],
            "max_learning_rate": 0.1,
        }
    if "weights" in extra:
        config["loss_options"] = {"class_weights": [1.0] * extra["weights"]}
    outcome = _compare(X, y, network, config)
    assert (outcome is None) == fits, outcome


def test_a_validation_dataset_checks_no_split() -> None:
    network = _network(2, 2, "softmax")
    config = {"loss": "cross_entropy", "validation": {"dataset_id": "ds_x"}}
    assert _compare(X4, _labels(0, 1, 0, 3), network, config) is not None
    assert _compare(X4[:1], _labels(1), network, config) is None


def test_label_records_name_the_first_label_at_least_k() -> None:
    summary, records = summarize(X4, _labels(3, 1, 4, 1))
    assert records is not None and summary.n_records == 2
    assert records.index.tolist() == [0, 2] and records.value.tolist() == [3.0, 4.0]
    assert records.first_at_least(2) == (0, 3.0)
    assert records.first_at_least(4) == (2, 4.0)
    assert records.first_at_least(5) is None


def test_label_records_are_read_only_when_a_label_can_be_out_of_range() -> None:
    summary, _ = summarize(X4, _labels(0, 1, 2, 1))

    def no_records() -> LabelRecords:
        raise AssertionError("read the records although every label is in range")

    check_summary(
        _network(2, 3, "softmax"),
        engine.FitConfig.from_dict({"loss": "cross_entropy"}),
        summary,
        no_records,
    )


FINITE = st.floats(-1e6, 1e6, allow_nan=False, width=64)


@st.composite
def datasets(draw: st.DrawFn) -> tuple[NDArray[np.float64], NDArray[Any]]:
    n = draw(st.integers(1, 7))
    width = draw(st.integers(1, 3))
    big = st.sampled_from([0.0, 1.0, -2.5, 3.5e38, -3.5e38, 3.4028235e38, 1e300])
    X = np.asarray(draw(st.lists(st.one_of(FINITE, big), min_size=n * width, max_size=n * width)))
    kind = draw(st.sampled_from(["labels", "column", "one-hot", "probabilities", "values"]))
    if kind == "labels":
        y: NDArray[Any] = np.asarray(
            draw(st.lists(st.integers(0, 6), min_size=n, max_size=n)), np.int64
        )
    elif kind == "column":
        cell = st.one_of(st.integers(-2, 6).map(float), st.sampled_from([0.5, 1.0, 0.0]))
        y = np.asarray(draw(st.lists(cell, min_size=n, max_size=n))).reshape(n, 1)
    else:
        k = draw(st.integers(1, 4))
        if kind == "one-hot":
            hot = draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n))
            y = np.eye(k)[hot]
        elif kind == "probabilities":
            raw = np.asarray(draw(st.lists(st.floats(0, 1), min_size=n * k, max_size=n * k)))
            rows = raw.reshape(n, k) + 1e-3
            noise = draw(st.sampled_from([0.0, 5e-7, 2e-6, -2e-6]))
            y = rows / rows.sum(axis=1, keepdims=True)
            y[0, 0] += noise
        else:
            y = np.asarray(draw(st.lists(FINITE, min_size=n * k, max_size=n * k))).reshape(n, k)
    return X.reshape(n, width), y


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=datasets(),
    loss=st.sampled_from(list(ACTIVATION)),
    activation=st.sampled_from(["identity", "sigmoid", "softmax"]),
    input_delta=st.sampled_from([0, 0, 0, 1]),
    outputs=st.integers(1, 5),
    dtype=st.sampled_from(["float64", "float32"]),
    fraction=st.sampled_from([None, 0.1, 0.3, 0.5, 0.9]),
)
def test_generated_datasets_fail_alike(
    data: tuple[NDArray[np.float64], NDArray[Any]],
    loss: str,
    activation: str,
    input_delta: int,
    outputs: int,
    dtype: str,
    fraction: float | None,
) -> None:
    X, y = data
    if activation == "softmax":
        outputs = max(outputs, 2)  # a softmax layer needs two units
    network = _network(X.shape[1] + input_delta, outputs, activation)
    config: dict[str, Any] = {"loss": loss, "dtype": dtype}
    if fraction is not None:
        config["validation"] = {"fraction": fraction}
    _compare(X, y, network, config)


@pytest.mark.parametrize("width", [2, 3, 7, 8, 9, 64, 257])
def test_witness_rows_sum_bit_for_bit_as_in_the_whole_dataset(width: int) -> None:
    """The probability check sums each row; the witness's rows must sum exactly as the
    same rows do inside the dataset (numpy's pairwise summation, whatever the shape)."""
    rng = np.random.default_rng(width)
    y = rng.random((5000, width))
    y /= y.sum(axis=1, keepdims=True)
    summary, _ = summarize(np.zeros((5000, 1)), y)
    assert summary.rows is not None
    rows = np.asarray(summary.rows)
    sums = {float(s) for s in y.sum(axis=1)}
    assert all(float(s) in sums for s in rows.sum(axis=1))
    worst = float(np.abs(y.sum(axis=1) - 1).max())
    assert float(np.abs(rows.sum(axis=1) - 1).max()) == worst
