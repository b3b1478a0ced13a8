"""Shared problems for the engine tests."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest


def classification_problem(seed: int = 0, n: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """Three Gaussian blobs in 4-D with integer labels."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=2.0, size=(3, 4))
    labels = rng.integers(0, 3, size=n)
    X = centers[labels] + rng.normal(size=(n, 4))
    return X, labels


@pytest.fixture
def blobs() -> tuple[np.ndarray, np.ndarray]:
    return classification_problem()


@pytest.fixture
def classifier_spec() -> dict[str, Any]:
    return {
        "input_size": 4,
        "layers": [
            {"units": 8, "activation": "tanh"},
            {"units": 6, "activation": "relu"},
            {"units": 3, "activation": "softmax"},
        ],
        "init": {"scheme": "he_uniform", "seed": 11},
    }
