"""The :class:`Loss` interface every loss implements (see :mod:`engine.losses`)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from numpy.typing import NDArray

from engine.activation_base import Activation

Array = NDArray[np.floating]

REDUCTIONS = ("mean", "sum")


class Loss:
    """Base class for a loss between network outputs and targets.

    All arrays are (n_samples, n_outputs); targets ``Y`` are float, with class
    labels already one-hot encoded.
    """

    name: ClassVar[str] = ""
    #: The output activation this loss must be paired with (None: any).
    required_activation: ClassVar[str | None] = None
    #: Whether an accuracy metric makes sense for this loss.
    is_classification: ClassVar[bool] = False

    def value(self, Z: Array, A: Array, Y: Array, reduction: str) -> float:
        """Return the batch loss for pre-activations ``Z`` and activations ``A``."""
        raise NotImplementedError

    def value_and_delta(
        self,
        Z: Array,
        A: Array,
        Y: Array,
        reduction: str,
        activation: Activation,
        out: Array,
        work: Array,
    ) -> tuple[float, Array]:
        """Return the batch loss and dL/dZ of shape (n_samples, n_outputs), written into ``out``.

        ``work`` is a scratch buffer of the same shape as ``out``.
        """
        raise NotImplementedError
