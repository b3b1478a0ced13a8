"""Training state: everything needed to continue a run exactly, as arrays plus JSON."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

STATE_FORMAT = 1


@dataclass
class TrainingState:
    """A checkpoint of a training run.

    Attributes
    ----------
    arrays : dict of str to ndarray
        ``params`` (n_parameters,), the optimizer's buffers (``optimizer.*``),
        ``best_params`` when early stopping restores the best weights, and
        ``history.*`` columns when the history was included.
    meta : dict
        JSON-serializable: ``epoch``, ``seed``, the shuffling generator's state
        (big integers as strings), optimizer counters, early-stopping state,
        ``dtype`` and ``n_parameters``.
    """

    arrays: dict[str, NDArray[Any]] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def epoch(self) -> int:
        """The last epoch completed when the state was taken."""
        return int(self.meta["epoch"])

    @property
    def params(self) -> NDArray[np.floating]:
        """The flat parameter vector (n_parameters,)."""
        return self.arrays["params"]


def rng_state_to_json(state: dict[str, Any]) -> dict[str, Any]:
    """A bit generator's state with every integer turned into a string (JSON-safe)."""
    return {
        key: rng_state_to_json(value)
        if isinstance(value, dict)
        else str(value)
        if isinstance(value, int) and not isinstance(value, bool)
        else value
        for key, value in state.items()
    }


def rng_state_from_json(state: dict[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`rng_state_to_json`."""
    return {
        key: rng_state_from_json(value)
        if isinstance(value, dict)
        else int(value)
        if isinstance(value, str) and key != "bit_generator"
        else value
        for key, value in state.items()
    }
