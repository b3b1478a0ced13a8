"""Checking and preparing training data: features, targets, class labels, validation splits."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from engine.config import FitConfig
from engine.errors import ConfigError, Loc
from engine.loss_options import check_loss_options
from engine.losses import LOSSES
from engine.network import Network
from engine.schedules import check_onecycle

Array = NDArray[np.floating]
PROBABILITY_TOLERANCE = 1e-6


@dataclass
class Dataset:
    """Training or validation arrays in the network's dtype.

    Attributes
    ----------
    X : ndarray of shape (n_samples, n_features)
    Y : ndarray of shape (n_samples, n_outputs)
        Targets; class labels are one-hot encoded.
    labels : ndarray of shape (n_samples,) or None
        Integer class of each sample, for the accuracy of ``cross_entropy``.
    from_labels : bool
        Whether the targets were given as integer class labels (rather than
        probability or one-hot rows): PyTorch weighs the two differently.
    """

    X: Array
    Y: Array
    labels: NDArray[np.intp] | None = None
    from_labels: bool = False

    @property
    def n_samples(self) -> int:
        """Number of samples."""
        return int(self.X.shape[0])

    def subset(self, index: NDArray[np.intp]) -> Dataset:
        """The samples at ``index``, copied."""
        return Dataset(
            self.X[index],
            self.Y[index],
            None if self.labels is None else self.labels[index],
            self.from_labels,
        )

    def empty(self, n_samples: int) -> Dataset:
        """Uninitialized arrays for ``n_samples`` samples of this data's widths and dtypes."""
        return Dataset(
            np.empty((n_samples, *self.X.shape[1:]), self.X.dtype),
            np.empty((n_samples, *self.Y.shape[1:]), self.Y.dtype),
            None if self.labels is None else np.empty(n_samples, self.labels.dtype),
            self.from_labels,
        )

    def take(self, index: NDArray[np.intp], out: Dataset) -> Dataset:
        """Gather the samples at ``index`` (valid, non-negative) into ``out``'s arrays; return ``out``.

        Nothing is allocated: ``out`` comes from :meth:`empty` with ``len(index)``
        samples. ``mode="clip"`` lets ``np.take`` write straight into ``out``
        (``"raise"`` goes through a temporary); it never clips a valid index.
        """
        np.take(self.X, index, axis=0, out=out.X, mode="clip")
        np.take(self.Y, index, axis=0, out=out.Y, mode="clip")
        if self.labels is not None and out.labels is not None:
            np.take(self.labels, index, out=out.labels, mode="clip")
        return out


def all_finite(array: Array) -> bool:
    """Whether every element of ``array`` is finite, without a temporary of its size.

    NaN and infinities propagate through a sum, so a finite sum proves every
    element finite; only a sum that overflowed needs the element-wise check.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        if math.isfinite(np.add.reduce(array, axis=None)):
            return True
    return bool(np.isfinite(array).all())


def check_compatible(network: Network, config: FitConfig) -> None:
    """Raise :class:`ConfigError` if the loss (or its options) cannot be used with the
    network's output layer."""
    required = LOSSES[config.loss].required_activation
    actual = network.output_activation
    if required is not None and actual != required:
        raise ConfigError(
            ("loss",),
            f"{config.loss} needs a {required} output layer; the "
            f"network's last layer is {actual}. Use loss "
            f"{suggest_loss(actual)!r} or change the last activation to {required}",
        )
    check_loss_options(config.loss, config.loss_options, network.output_size)


def suggest_loss(activation: str) -> str:
    """The loss that fits an output activation."""
    return {"sigmoid": "binary_cross_entropy", "softmax": "cross_entropy"}.get(activation, "mse")


def as_features(X: ArrayLike, loc: Loc, dtype: np.dtype[np.floating]) -> Array:
    """Return ``X`` as a finite, non-empty 2-D array of ``dtype``."""
    try:
        array = np.asarray(X, dtype=dtype)
    except (TypeError, ValueError):
        raise ConfigError(loc, "must be rows of numbers, all of the same length") from None
    if array.size == 0:
        raise ConfigError(loc, "is empty; give at least one sample with one feature")
    if array.ndim != 2:
        raise ConfigError(loc, f"must be 2-D (n_samples, n_features), got {array.ndim}-D")
    if not all_finite(array):
        raise ConfigError(loc, "must contain only finite numbers (no NaN or infinity)")
    return np.ascontiguousarray(array)


def as_targets(
    y: ArrayLike,
    network: Network,
    loss: str,
    n_samples: int,
    loc: Loc,
    dtype: np.dtype[np.floating],
) -> tuple[Array, NDArray[np.intp] | None]:
    """Return targets as (n_samples, output_size) plus integer labels for ``cross_entropy``.

    ``y`` may be 2-D (n_samples, n_targets), 1-D numbers (one target), or, for
    ``cross_entropy``, integer class labels (1-D, or one column).
    """
    try:
        array = np.asarray(y, dtype=np.float64)
    except (TypeError, ValueError):
        raise ConfigError(loc, "must be numbers: a list, or rows of equal length") from None
    if array.ndim not in (1, 2):
        raise ConfigError(loc, f"must be 1-D or 2-D, got {array.ndim}-D")
    if array.shape[0] != n_samples:
        raise ConfigError(
            loc,
            f"has {array.shape[0]} samples but X has {n_samples}; give one target per row of X",
        )
    if not np.isfinite(array).all():
        raise ConfigError(loc, "must contain only finite numbers (no NaN or infinity)")
    outputs = network.output_size
    column = array.reshape(-1, 1) if array.ndim == 1 else array
    if loss == "cross_entropy" and column.shape[1] == 1:
        return labels_to_one_hot(column[:, 0], outputs, loc, dtype)
    if column.shape[1] != outputs:
        raise ConfigError(
            loc,
            f"has {column.shape[1]} target column(s) but the network has "
            f"{outputs} output unit(s); they must match",
        )
    if loss == "binary_cross_entropy" and ((column < 0).any() or (column > 1).any()):
        raise ConfigError(loc, "binary_cross_entropy targets must be between 0 and 1")
    labels = None
    if loss == "cross_entropy":
        if (column < 0).any() or (np.abs(column.sum(axis=1) - 1) > PROBABILITY_TOLERANCE).any():
            raise ConfigError(
                loc,
                "cross_entropy targets must be one-hot or probability "
                "rows (non-negative, each summing to 1), or integer class labels",
            )
        labels = column.argmax(axis=1)
    return np.ascontiguousarray(column, dtype=dtype), labels


def labels_to_one_hot(
    labels: NDArray[np.float64], n_classes: int, loc: Loc, dtype: np.dtype[np.floating]
) -> tuple[Array, NDArray[np.intp]]:
    """Turn integer class labels (n_samples,) into one-hot rows (n_samples, n_classes)."""
    if (labels != np.round(labels)).any():
        raise ConfigError(
            loc, f"cross_entropy class labels must be whole numbers 0..{n_classes - 1}"
        )
    bad = (labels < 0) | (labels >= n_classes)
    if bad.any():
        raise ConfigError(
            loc,
            f"class label {labels[bad][0]:g} is out of range: the "
            f"network has {n_classes} output units, so labels must be "
            f"0..{n_classes - 1}",
        )
    index = labels.astype(np.intp)
    one_hot = np.zeros((labels.shape[0], n_classes), dtype)
    one_hot[np.arange(labels.shape[0]), index] = 1.0
    return one_hot, index


def prepare(
    network: Network, config: FitConfig, X: ArrayLike, y: ArrayLike, prefix: Loc = ()
) -> Dataset:
    """Validate ``X`` and ``y`` against the network and loss; convert to the training dtype."""
    dtype = np.dtype(config.dtype)
    features = as_features(X, (*prefix, "X"), dtype)
    if features.shape[1] != network.input_size:
        raise ConfigError(
            (*prefix, "X"),
            f"has {features.shape[1]} features per sample but "
            f"the network's input_size is {network.input_size}",
        )
    Y, labels = as_targets(y, network, config.loss, features.shape[0], (*prefix, "y"), dtype)
    shape = np.shape(y)  # valid now: 1-D, or 2-D with one column for class labels
    from_labels = config.loss == "cross_entropy" and (len(shape) == 1 or shape[1] == 1)
    return Dataset(features, Y, labels, from_labels)


def check_data(
    network: Network, config: FitConfig, X: ArrayLike, y: ArrayLike, prefix: Loc = ()
) -> None:
    """Raise :class:`ConfigError` if the data cannot train ``network`` with ``config``.

    Also checks, for the training data (``prefix`` empty), that a
    ``validation.fraction`` split leaves samples on both sides and that a
    ``onecycle`` schedule's warm-up has a length over the run's batches.
    """
    check_compatible(network, config)
    data = prepare(network, config, X, y, prefix)
    if prefix:
        return
    n_train = data.n_samples
    if config.validation is not None and config.validation.fraction is not None:
        n_train -= validation_size(data.n_samples, config.validation.fraction)
    batch = n_train if config.batch_size is None else min(config.batch_size, n_train)
    check_onecycle(config.lr_schedule, config.epochs * -(-n_train // batch))


def validation_size(n_samples: int, fraction: float) -> int:
    """Samples a ``fraction`` split puts in validation: ``round(n_samples * fraction)``.

    Raises :class:`ConfigError` unless both sides keep at least one sample.
    """
    n_val = round(n_samples * fraction)
    if n_val < 1 or n_val > n_samples - 1:
        raise ConfigError(
            ("validation", "fraction"),
            f"{fraction:g} of {n_samples} samples leaves {n_samples - n_val} for training and "
            f"{n_val} for validation; each needs at least one (use a larger fraction or more data)",
        )
    return n_val


def split_validation(
    data: Dataset, fraction: float, rng: np.random.Generator
) -> tuple[Dataset, Dataset]:
    """Split off a seeded random ``fraction`` of the samples for validation.

    Returns ``(train, validation)``; both keep the original sample order.
    """
    n = data.n_samples
    n_val = validation_size(n, fraction)
    order = rng.permutation(n)
    val_index = np.sort(order[:n_val])
    train_index = np.sort(order[n_val:])
    return data.subset(train_index), data.subset(val_index)
