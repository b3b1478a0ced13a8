"""Built-in datasets: generated from a seed, or shipped inside the package.

Every built-in is a classification problem whose ``y`` is 1-D integer class
labels (int64), so it works with ``cross_entropy`` (softmax output, one unit per
class) and, for the two-class ones, with ``mse`` or ``binary_cross_entropy`` on
one sigmoid output (labels are then used as a 0/1 column).

=========  ====================  =========  =======  ==========================
name       X shape               classes    source   parameters
=========  ====================  =========  =======  ==========================
xor        (4, 2)                2          table    none
and        (4, 2)                2          table    none
or         (4, 2)                2          table    none
moons      (n_samples, 2)        2          seed     n_samples=200, noise=0.1
circles    (n_samples, 2)        2          seed     n_samples=200, noise=0.05
spirals    (n_samples, 2)        2          seed     n_samples=300, noise=0.05
iris       (150, 4)              3          shipped  none
digits     (1797, 64)            10         shipped  none
=========  ====================  =========  =======  ==========================

Generated datasets draw everything from ``np.random.default_rng(seed)`` (seed 0
when omitted), so one seed always gives the same arrays. ``iris`` (Fisher's
iris, in centimetres) and ``digits`` (8x8 images, pixel values 0-16, flattened
row by row) are scikit-learn's bundled copies, stored as CSV under
``app/datasets/builtin_data/`` and read without pickle; nothing is downloaded.
"""

from __future__ import annotations

import gzip
import io
from functools import lru_cache
from importlib import resources
from typing import Any, Final, get_args

import numpy as np
from numpy.typing import NDArray

from app.api.schemas import BuiltinDatasetCreate, BuiltinName, DatasetCreate, DatasetCreateBody
from app.datasets.parsing import ParsedDataset, parse_json
from app.errors import InvalidInputError

BUILTIN_NAMES: Final[tuple[str, ...]] = get_args(BuiltinName)

GENERATED: Final[dict[str, dict[str, float]]] = {
    "moons": {"n_samples": 200, "noise": 0.1},
    "circles": {"n_samples": 200, "noise": 0.05},
    "spirals": {"n_samples": 300, "noise": 0.05},
}
"""Defaults of the seeded generators."""

DEFAULT_SEED: Final = 0

_TABLE_X: Final = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64)
_TABLES: Final[dict[str, list[int]]] = {
    "xor": [0, 1, 1, 0],
    "and": [0, 0, 0, 1],
    "or": [0, 1, 1, 1],
}
_SHIPPED: Final[dict[str, str]] = {"iris": "iris.csv", "digits": "digits.csv.gz"}


def _labels(values: Any) -> NDArray[np.int64]:
    return np.asarray(values, dtype=np.int64)


def _shuffled(
    rng: np.random.Generator, X: NDArray[np.float64], y: NDArray[np.int64]
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    order = rng.permutation(X.shape[0])
    return np.ascontiguousarray(X[order]), np.ascontiguousarray(y[order])


def make_moons(
    n_samples: int, noise: float, rng: np.random.Generator
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Two interleaving half circles (scikit-learn's ``make_moons`` layout).

    Class 0 is the upper moon ``(cos t, sin t)``, class 1 the lower one
    ``(1 - cos t, 0.5 - sin t)``, ``t`` evenly spaced over ``[0, pi]``; then
    Gaussian noise of standard deviation ``noise`` and a seeded shuffle.
    """
    n_outer = n_samples // 2
    n_inner = n_samples - n_outer
    t_outer = np.linspace(0.0, np.pi, n_outer)
    t_inner = np.linspace(0.0, np.pi, n_inner)
    X = np.concatenate(
        [
            np.column_stack([np.cos(t_outer), np.sin(t_outer)]),
            np.column_stack([1.0 - np.cos(t_inner), 0.5 - np.sin(t_inner)]),
        ]
    )
    y = _labels([0] * n_outer + [1] * n_inner)
    X = X + rng.normal(0.0, noise, size=X.shape)
    return _shuffled(rng, X, y)


def make_circles(
    n_samples: int, noise: float, rng: np.random.Generator, factor: float = 0.5
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """A circle of radius 1 (class 0) around one of radius ``factor`` (class 1)."""
    n_outer = n_samples // 2
    n_inner = n_samples - n_outer
    t_outer = np.linspace(0.0, 2 * np.pi, n_outer, endpoint=False)
    t_inner = np.linspace(0.0, 2 * np.pi, n_inner, endpoint=False)
    X = np.concatenate(
        [
            np.column_stack([np.cos(t_outer), np.sin(t_outer)]),
            factor * np.column_stack([np.cos(t_inner), np.sin(t_inner)]),
        ]
    )
    y = _labels([0] * n_outer + [1] * n_inner)
    X = X + rng.normal(0.0, noise, size=X.shape)
    return _shuffled(rng, X, y)


def make_spirals(
    n_samples: int, noise: float, rng: np.random.Generator, turns: float = 1.75
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Two interleaved spiral arms (TensorFlow Playground's spiral), radius up to 1.

    Arm ``k`` (its class) has points at radius ``r`` evenly spaced in ``[0, 1]``
    and angle ``2 pi turns r + k pi``.
    """
    sizes = [n_samples // 2, n_samples - n_samples // 2]
    parts = []
    for k, size in enumerate(sizes):
        r = np.linspace(0.0, 1.0, size)
        angle = 2 * np.pi * turns * r + k * np.pi
        parts.append(np.column_stack([r * np.sin(angle), r * np.cos(angle)]))
    X = np.concatenate(parts)
    y = _labels([0] * sizes[0] + [1] * sizes[1])
    X = X + rng.normal(0.0, noise, size=X.shape)
    return _shuffled(rng, X, y)


@lru_cache(maxsize=len(_SHIPPED))
def _load_shipped(name: str) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    raw = resources.files("app.datasets").joinpath("builtin_data", _SHIPPED[name]).read_bytes()
    if _SHIPPED[name].endswith(".gz"):
        raw = gzip.decompress(raw)
    table = np.loadtxt(io.StringIO(raw.decode("ascii")), delimiter=",", skiprows=1)
    X = np.ascontiguousarray(table[:, :-1], dtype=np.float64)
    y = table[:, -1].astype(np.int64)
    X.setflags(write=False)
    y.setflags(write=False)
    return X, y


def builtin_dataset(
    name: str,
    *,
    n_samples: int | None = None,
    noise: float | None = None,
    seed: int | None = None,
) -> ParsedDataset:
    """Build a built-in dataset.

    Parameters
    ----------
    name : str
        One of :data:`BUILTIN_NAMES`.
    n_samples, noise, seed : optional
        Only for the generated datasets (moons, circles, spirals); ``None`` takes
        the defaults in :data:`GENERATED` and seed 0.

    Returns
    -------
    ParsedDataset
        ``X`` float64 of shape (n_samples, n_features), ``y`` int64 labels of
        shape (n_samples,).

    Raises
    ------
    InvalidInputError
        For an unknown name, or a parameter the dataset does not take (the error's
        ``loc`` names the field).
    """
    if name not in BUILTIN_NAMES:
        raise InvalidInputError(
            ("body", "builtin"), f"unknown builtin {name!r}; one of {BUILTIN_NAMES}"
        )
    if name not in GENERATED:
        given = {"n_samples": n_samples, "noise": noise, "seed": seed}
        for field, value in given.items():
            if value is not None:
                raise InvalidInputError(
                    ("body", field),
                    f"{name} is fixed data and takes no {field}; "
                    f"{field} applies to {', '.join(GENERATED)}",
                )
        if name in _TABLES:
            X, y = _TABLE_X.copy(), _labels(_TABLES[name])
        else:
            shipped_X, shipped_y = _load_shipped(name)
            X, y = shipped_X.copy(), shipped_y.copy()
        return ParsedDataset(X=X, y=y, target_type="labels")
    defaults = GENERATED[name]
    rng = np.random.default_rng(DEFAULT_SEED if seed is None else seed)
    count = int(defaults["n_samples"]) if n_samples is None else n_samples
    sigma = defaults["noise"] if noise is None else noise
    maker = {"moons": make_moons, "circles": make_circles, "spirals": make_spirals}[name]
    X, y = maker(count, sigma, rng)
    return ParsedDataset(X=X, y=y, target_type="labels")


def dataset_from_body(body: DatasetCreateBody) -> tuple[str, ParsedDataset]:
    """The name and validated arrays of a ``POST /v1/datasets`` body, in either form."""
    form: DatasetCreate | BuiltinDatasetCreate = body.root
    if isinstance(form, DatasetCreate):
        return form.name, parse_json(form.X, form.y)
    parsed = builtin_dataset(
        form.builtin, n_samples=form.n_samples, noise=form.noise, seed=form.seed
    )
    return form.name or form.builtin, parsed


DATASET_EXAMPLES: Final[dict[str, Any]] = {
    "inline": {
        "summary": "Inline arrays (the XOR truth table)",
        "value": {"name": "xor", "X": [[0, 0], [0, 1], [1, 0], [1, 1]], "y": [[0], [1], [1], [0]]},
    },
    "builtin": {
        "summary": "A built-in dataset (two moons, 200 points, seeded)",
        "value": {"builtin": "moons", "n_samples": 200, "noise": 0.1, "seed": 0},
    },
    "builtin-fixed": {
        "summary": "A shipped dataset (Fisher's iris, 150 x 4, 3 classes)",
        "value": {"builtin": "iris"},
    },
}
"""Named examples of ``POST /v1/datasets`` for the docs page."""
