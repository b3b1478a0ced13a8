"""Upload options common to every dataset format: column names and ``standardize``.

:func:`finish` is the last step before a parsed dataset is packed and stored: it
fills in (or checks) the names, standardizes the numeric features when asked and
attaches the transform (:mod:`app.datasets.transforms`) that predict applies to raw rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from app.datasets.parsing import ParsedDataset, repeated
from app.datasets.transforms import (
    default_feature_names,
    default_target_names,
    make_transform,
    standardization,
    standardize_in_place,
)
from app.errors import InvalidInputError


def _checked_names(
    given: Sequence[str] | None, count: int, default: list[str], field: str, what: str
) -> list[str]:
    if given is None:
        return default
    names = list(given)
    if len(names) != count:
        raise InvalidInputError(
            ("body", field), f"has {len(names)} names but the dataset has {count} {what}"
        )
    twice = repeated(names)
    if twice:
        raise InvalidInputError(("body", field), f"names {twice} are given twice")
    return names


def _numeric_flags(columns: Sequence[dict[str, Any]]) -> list[bool]:
    flags: list[bool] = []
    for column in columns:
        if column["kind"] == "categorical":
            flags.extend([False] * len(column["categories"]))
        else:
            flags.append(True)
    return flags


def finish(
    parsed: ParsedDataset,
    *,
    feature_names: Sequence[str] | None = None,
    target_names: Sequence[str] | None = None,
    standardize: bool = False,
) -> ParsedDataset:
    """The dataset with names, standardized features (when asked) and its transform.

    Standardization is per numeric feature over the dataset's rows (the rows runs train
    on): ``(x - mean) / std``; one-hot and zero-variance features are left as they are.
    ``parsed.X`` is changed in place, so it must not be a packed (read-only) view.

    Raises
    ------
    InvalidInputError
        Names of the wrong count or given twice (at ``feature_names``/``target_names``).
    """
    n_features = int(parsed.X.shape[1])
    features = _checked_names(
        feature_names if feature_names is not None else parsed.feature_names,
        n_features,
        default_feature_names(n_features),
        "feature_names",
        "features",
    )
    targets = _checked_names(
        target_names if target_names is not None else parsed.target_names,
        parsed.n_targets,
        default_target_names(parsed.n_targets),
        "target_names",
        "targets",
    )
    columns = (
        list(parsed.columns)
        if parsed.columns is not None
        else [{"name": name, "kind": "numeric"} for name in features]
    )
    mean = scale = None
    X = parsed.X
    if standardize:
        if not X.flags.writeable:
            X = X.copy()
        mean, scale = standardization(X, _numeric_flags(columns))
        standardize_in_place(X, mean, scale)
    classes = None if parsed.classes is None else list(parsed.classes)
    transform = make_transform(
        columns=columns,
        feature_names=features,
        target_names=targets,
        classes=classes,
        mean=mean,
        scale=scale,
    )
    return replace(
        parsed,
        X=np.asarray(X, dtype=np.float64),
        feature_names=tuple(features),
        target_names=tuple(targets),
        transform=transform,
    )
