r"""Metrics (``metrics`` in a run config), for the training data and the validation data.

=============  ======================================================================
key            definition
=============  ======================================================================
``accuracy``   the share of correct predictions: the arg-max class for
               ``cross_entropy``; every output thresholded at 0.5 for
               ``binary_cross_entropy`` (the share of correct outputs)
``precision``  TP / (TP + FP), macro-averaged: over the classes that occur in the
               targets or the predictions (``cross_entropy``, scikit-learn's
               ``average="macro"``), over the outputs (``binary_cross_entropy``;
               with one output, the plain binary precision of the positive class)
``recall``     TP / (TP + FN), averaged the same way
``f1``         2 TP / (2 TP + FP + FN) per class or output, averaged the same way
``mae``        mean absolute error over all outputs
``rmse``       root of the mean squared error over all outputs
``r2``         coefficient of determination per output, averaged over the outputs
               (scikit-learn's ``uniform_average``; 1 for a constant target fitted
               exactly, else 0 where the target is constant)
=============  ======================================================================

A ratio with a zero denominator is 0 (scikit-learn's ``zero_division=0``).
Classification metrics need a classification loss, the others a regression loss.
The defaults are ``["accuracy"]`` for the classification losses and none for the
others. On the training data a metric is accumulated over the epoch's batches,
from the outputs each batch had before its update (with dropout on, as the loss
is); on the validation data it is computed from the weights at the end of the
epoch, without dropout. ``r2`` compares with the mean of the targets of that data.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from engine.errors import ConfigError

Array = NDArray[np.floating]
Labels = NDArray[np.intp]

CLASSIFICATION_METRICS = ("accuracy", "precision", "recall", "f1")
REGRESSION_METRICS = ("mae", "rmse", "r2")
METRICS = CLASSIFICATION_METRICS + REGRESSION_METRICS


def parse_metrics(raw: Any, classification: bool, loss: str) -> tuple[str, ...]:
    """Validate ``metrics``: a list of metric names fitting the loss (null: the default)."""
    if raw is None:
        return ("accuracy",) if classification else ()
    if not isinstance(raw, Sequence) or isinstance(raw, str | bytes):
        raise ConfigError(("metrics",), f"must be a list of metric names: {', '.join(METRICS)}")
    names: list[str] = []
    allowed = CLASSIFICATION_METRICS if classification else REGRESSION_METRICS
    for index, name in enumerate(raw):
        if not isinstance(name, str) or name not in METRICS:
            raise ConfigError(
                ("metrics", index), f"must be one of: {', '.join(METRICS)}; got {name!r}"
            )
        if name not in allowed:
            kind = "classification" if name in CLASSIFICATION_METRICS else "regression"
            raise ConfigError(
                ("metrics", index),
                f"{name} is a {kind} metric but loss {loss} is not; with {loss} use: "
                f"{', '.join(allowed)}",
            )
        if name not in names:
            names.append(name)
    return tuple(names)


def _ratio(numerator: Array, denominator: Array) -> Array:
    """``numerator / denominator`` elementwise, 0 where the denominator is 0."""
    out = np.zeros(numerator.shape, np.float64)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


class MetricTracker:
    """Accumulates the configured metrics over the batches of one pass over a dataset.

    Parameters
    ----------
    names : sequence of str
        The metrics to compute.
    n_outputs : int
        Output units (classes for ``cross_entropy``).
    Y : ndarray of shape (n_samples, n_outputs)
        The dataset's targets; ``r2`` uses their column means.
    """

    def __init__(self, names: Sequence[str], n_outputs: int, Y: Array) -> None:
        self.names = tuple(names)
        self.n_outputs = n_outputs
        self.confusion = any(n in ("precision", "recall", "f1") for n in self.names)
        self.regression = any(n in REGRESSION_METRICS for n in self.names)
        self.accuracy = "accuracy" in self.names
        self.total_variance = (
            ((Y - Y.mean(axis=0)) ** 2).sum(axis=0).astype(np.float64)
            if "r2" in self.names
            else None
        )
        self.reset()

    def reset(self) -> None:
        """Start a new pass."""
        k = self.n_outputs
        self.correct = 0
        self.count = 0
        self.elements = 0
        self.true_positive = np.zeros(k, np.int64)
        self.predicted = np.zeros(k, np.int64)
        self.actual = np.zeros(k, np.int64)
        self.absolute = 0.0
        self.squared = np.zeros(k, np.float64)

    def batch(self, A: Array, Y: Array, labels: Labels | None) -> None:
        """Add a batch: outputs ``A`` and targets ``Y`` (batch, n_outputs), class ``labels``."""
        self.count += A.shape[0]
        self.elements += A.size
        if self.accuracy:
            self.correct += count_correct(A, Y, labels)
        if self.confusion:
            self._confusion(A, Y, labels)
        if self.regression:
            diff = A - Y
            self.absolute += float(np.abs(diff).sum())
            self.squared += (diff * diff).sum(axis=0)

    def _confusion(self, A: Array, Y: Array, labels: Labels | None) -> None:
        k = self.n_outputs
        if labels is not None:
            predicted = A.argmax(axis=1)
            hits = predicted == labels
            self.true_positive += np.bincount(labels[hits], minlength=k)
            self.predicted += np.bincount(predicted, minlength=k)
            self.actual += np.bincount(labels, minlength=k)
        else:
            predicted_mask, actual_mask = A > 0.5, Y > 0.5
            self.true_positive += (predicted_mask & actual_mask).sum(axis=0)
            self.predicted += predicted_mask.sum(axis=0)
            self.actual += actual_mask.sum(axis=0)

    def results(self, labelled: bool) -> dict[str, float]:
        """The metrics of the pass; ``labelled``: the targets are classes (``cross_entropy``)."""
        values: dict[str, float] = {}
        if self.accuracy:
            values["accuracy"] = self.correct / (self.count if labelled else self.elements)
        if self.confusion:
            values.update(self._averages(labelled))
        if self.regression:
            values.update(self._regression())
        return {name: values[name] for name in self.names}

    def _averages(self, labelled: bool) -> dict[str, float]:
        tp = self.true_positive.astype(np.float64)
        predicted = self.predicted.astype(np.float64)
        actual = self.actual.astype(np.float64)
        present = (predicted + actual) > 0 if labelled else np.ones(tp.shape, np.bool_)
        if not present.any():
            return {"precision": 0.0, "recall": 0.0, "f1": 0.0}
        precision = _ratio(tp, predicted)[present]
        recall = _ratio(tp, actual)[present]
        f1 = _ratio(2.0 * tp, predicted + actual)[present]
        return {
            "precision": float(precision.mean()),
            "recall": float(recall.mean()),
            "f1": float(f1.mean()),
        }

    def _regression(self) -> dict[str, float]:
        values = {
            "mae": self.absolute / self.elements,
            "rmse": float(np.sqrt(self.squared.sum() / self.elements)),
        }
        if self.total_variance is not None:
            residual, total = self.squared, self.total_variance
            scores = np.where(
                total > 0, 1.0 - _ratio(residual, total), np.where(residual == 0, 1.0, 0.0)
            )
            values["r2"] = float(scores.mean())
        return values


def count_correct(A: Array, Y: Array, labels: Labels | None) -> int:
    """Correct predictions: arg-max classes against ``labels``, or every output against ``Y`` at 0.5."""
    if labels is not None:
        return int(np.count_nonzero(A.argmax(axis=1) == labels))
    return int(np.count_nonzero((A > 0.5) == (Y > 0.5)))
