"""Evaluate a network's weights on data: the loss and metrics, without training.

The network runs in the engine's row blocks (:meth:`engine.Network.predict_blocks`,
the blocks ``/predict`` uses) written into one ``(n_samples, n_outputs)`` array of
pre-activations and one of activations; those two arrays are what a request
costs, and they are refused with a 422 before any work when they would exceed
``BACKPROP_MAX_REQUEST_MEMORY``. The loss is then the engine's own
(:func:`engine.losses.make_loss` with the run's options and reduction) over all
rows, as training computes ``val_loss``. Evaluation is float64, like ``/predict``.

Metrics:

- classification losses (``cross_entropy``: arg-max class; ``binary_cross_entropy``:
  each output at 0.5): ``accuracy`` and macro ``precision``/``recall``/``f1`` as in
  training (:mod:`engine.metrics`), a confusion matrix (``cross_entropy``: rows are
  the true class, columns the predicted one, over every class 0..k-1;
  ``binary_cross_entropy``: one ``[[tn, fp], [fn, tp]]`` per output, scikit-learn's
  ``multilabel_confusion_matrix``) and per-class (per-output) precision, recall,
  F1 and support, zero where a denominator is zero;
- any other loss: ``mae``, ``rmse`` and ``r2`` (:mod:`engine.metrics`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np
from numpy.typing import NDArray

import engine
from app.datasets.json_arrays import ArraySpec, parse_object, refuse_early, validate_fields
from app.datasets.parsing import dataset_from_arrays
from app.datasets.summary import targets_for_loss
from app.errors import InvalidInputError, invalid_from_config_error
from engine.config import ENGINE_KEYS
from engine.data import prepare
from engine.losses import make_loss
from engine.metrics import CLASSIFICATION_METRICS, REGRESSION_METRICS, MetricTracker

CLASSIFICATION_LOSSES = ("cross_entropy", "binary_cross_entropy")


def read_evaluate_body(
    file: BinaryIO, model: type[Any], max_rows: int
) -> tuple[Any, NDArray[Any] | None, NDArray[Any] | None]:
    """The small fields of an evaluate body (validated by ``model``) and its inline
    ``X`` and ``y`` as arrays, read as a stream (None when it names a dataset).

    Raises
    ------
    InvalidInputError
        Bad arrays, more than ``max_rows`` rows, or neither (or both) of
        ``dataset_id`` and ``X``/``y``.
    """
    specs = {
        "X": ArraySpec(
            what="feature",
            max_rows=max_rows,
            rows_message="more than {max_rows} rows; at most {max_rows} per request "
            "(BACKPROP_MAX_PREDICT_ROWS)",
            placeholder=[[0.0]],
        ),
        "y": ArraySpec(one_d=True, what="target", max_rows=max_rows, placeholder=[0.0]),
    }
    refuse_early(file, specs)
    body = parse_object(file, specs)
    parsed = validate_fields(model, body, specs)
    arrays = body.arrays
    if ("X" in arrays) != ("y" in arrays):
        missing = "y" if "X" in arrays else "X"
        raise InvalidInputError(("body", missing), "give X and y together")
    if "X" in arrays and parsed.dataset_id is not None:
        raise InvalidInputError(("body", "dataset_id"), "give either dataset_id or X and y")
    if "X" not in arrays and parsed.dataset_id is None:
        raise InvalidInputError(("body",), "give dataset_id, or X and y")
    if "X" in arrays:
        data = dataset_from_arrays(arrays.pop("X"), arrays.pop("y"))
        return parsed, data.X, data.y
    return parsed, None, None


def fit_config(config: dict[str, Any]) -> engine.FitConfig:
    """The loss settings of ``config`` (a run's config or an evaluate body) as a
    float64 :class:`engine.FitConfig` (training settings do not matter here)."""
    settings = {key: config[key] for key in ENGINE_KEYS if config.get(key) is not None}
    settings.pop("dtype", None)
    settings.pop("validation", None)
    settings.pop("early_stopping", None)
    settings.pop("lr_schedule", None)
    try:
        return engine.FitConfig.from_dict(settings)
    except engine.ConfigError as exc:
        raise invalid_from_config_error(exc) from exc


def _outputs(
    net: engine.Network, X: NDArray[Any], max_bytes: int
) -> tuple[NDArray[Any], NDArray[Any]]:
    n, k = X.shape[0], net.output_size
    needed = 2 * n * k * int(net.dtype.itemsize)
    if needed > max_bytes:
        raise InvalidInputError(
            ("body",),
            f"{n} samples x {k} outputs need {needed} bytes of outputs; at most {max_bytes} "
            "(BACKPROP_MAX_REQUEST_MEMORY): evaluate fewer samples at a time",
        )
    Z = np.empty((n, k), net.dtype)
    A = np.empty((n, k), net.dtype)
    start = 0
    for Z_block, A_block in net.predict_blocks(X):  # the blocks of /predict
        stop = start + Z_block.shape[0]
        Z[start:stop], A[start:stop] = Z_block, A_block
        start = stop
    return Z, A


def _ratio(numerator: NDArray[Any], denominator: NDArray[Any]) -> NDArray[np.float64]:
    out = np.zeros(numerator.shape, np.float64)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


def _per_class(
    tp: NDArray[Any], predicted: NDArray[Any], actual: NDArray[Any]
) -> list[dict[str, Any]]:
    precision = _ratio(tp, predicted)
    recall = _ratio(tp, actual)
    f1 = _ratio(2.0 * tp, predicted + actual)
    return [
        {
            "class": index,
            "precision": float(precision[index]),
            "recall": float(recall[index]),
            "f1": float(f1[index]),
            "support": int(actual[index]),
        }
        for index in range(tp.shape[0])
    ]


def _classification(
    A: NDArray[Any], Y: NDArray[Any], labels: NDArray[Any] | None
) -> tuple[list[Any], list[dict[str, Any]]]:
    if labels is not None:
        k = A.shape[1]
        predicted = A.argmax(axis=1)
        matrix = np.zeros((k, k), np.int64)
        np.add.at(matrix, (labels, predicted), 1)
        tp = np.diag(matrix)
        return matrix.tolist(), _per_class(tp, matrix.sum(axis=0), matrix.sum(axis=1))
    pred, true = A > 0.5, Y > 0.5
    tp = (pred & true).sum(axis=0)
    fp = (pred & ~true).sum(axis=0)
    fn = (~pred & true).sum(axis=0)
    tn = (~pred & ~true).sum(axis=0)
    matrices = [[[int(tn[j]), int(fp[j])], [int(fn[j]), int(tp[j])]] for j in range(A.shape[1])]
    return matrices, _per_class(tp, tp + fp, tp + fn)


@dataclass(frozen=True)
class Evaluation:
    """What ``POST .../evaluate`` answers (besides the ids)."""

    n_samples: int
    loss: float | None
    metrics: dict[str, float | None]
    confusion_matrix: list[Any] | None
    per_class: list[dict[str, Any]] | None


def evaluate(
    *,
    net: engine.Network,
    config: engine.FitConfig,
    X: NDArray[Any],
    y: NDArray[Any],
    dataset_id: str | None,
    max_bytes: int,
) -> Evaluation:
    """The loss and metrics of ``net`` (weights set) on ``X``, ``y`` (of ``dataset_id``,
    or given inline when it is None).

    Raises
    ------
    InvalidInputError
        When the data does not fit the network or the loss (at ``body.X``/``body.y``,
        or at ``body.dataset_id`` naming it), or the outputs would not fit ``max_bytes``.
    """
    try:
        data = prepare(net, config, X, targets_for_loss(config.loss, y))
    except engine.ConfigError as exc:
        if dataset_id is None:
            raise InvalidInputError(("body", *exc.loc), exc.reason) from exc
        raise InvalidInputError(
            ("body", "dataset_id"), f"dataset {dataset_id!r} does not fit: {exc}"
        ) from exc
    Z, A = _outputs(net, data.X, max_bytes)
    loss_fn = make_loss(config.loss, config.loss_options, data.from_labels)
    loss = float(loss_fn.value(Z, A, data.Y, config.reduction))
    classification = config.loss in CLASSIFICATION_LOSSES
    names = CLASSIFICATION_METRICS if classification else REGRESSION_METRICS
    tracker = MetricTracker(names, net.output_size, data.Y)
    tracker.batch(A, data.Y, data.labels)
    metrics = tracker.results(data.labels is not None)
    matrix, per_class = _classification(A, data.Y, data.labels) if classification else (None, None)
    return Evaluation(
        n_samples=data.n_samples,
        loss=loss if np.isfinite(loss) else None,
        metrics={name: (v if np.isfinite(v) else None) for name, v in metrics.items()},
        confusion_matrix=matrix,
        per_class=per_class,
    )
