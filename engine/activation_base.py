"""The :class:`Activation` interface every nonlinearity implements (see :mod:`engine.activations`)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.floating]


class Activation:
    """Base class: an elementwise (or row-wise) nonlinearity with its derivative.

    Each layer owns its own instance (:func:`engine.activations.make_activation`),
    so an activation may keep per-shape scratch buffers (:meth:`scratch`).
    """

    name: ClassVar[str] = ""
    #: True when ``forward`` returns ``Z`` itself (no buffer needed).
    is_identity: ClassVar[bool] = False

    def forward(self, Z: Array, out: Array) -> Array:
        """Compute ``A`` from ``Z`` (shape (n_samples, units)) into ``out``."""
        raise NotImplementedError

    def backward(self, dA: Array, Z: Array, A: Array, work: Array) -> Array:
        """Return ``dZ`` of shape (n_samples, units), overwriting ``dA`` and ``work``.

        Parameters
        ----------
        dA : ndarray of shape (n_samples, units)
            Gradient of the loss with respect to the activations; overwritten.
        Z, A : ndarray of shape (n_samples, units)
            The pre-activations and activations of the forward pass (left intact).
        work : ndarray of shape (n_samples, units)
            Scratch buffer.
        """
        raise NotImplementedError

    @property
    def params(self) -> dict[str, float]:
        """The activation's settings as they appear in a layer spec (none by default)."""
        return {}

    def scratch(self, like: Array, count: int) -> list[Array]:
        """``count`` buffers shaped like ``like``, allocated once per shape and dtype."""
        cache: dict[tuple[tuple[int, ...], np.dtype[np.floating]], list[Array]] = (
            self.__dict__.setdefault("_scratch", {})
        )
        key = (like.shape, like.dtype)
        buffers = cache.get(key)
        if buffers is None or len(buffers) < count:
            buffers = cache[key] = [np.empty_like(like) for _ in range(count)]
        return buffers
