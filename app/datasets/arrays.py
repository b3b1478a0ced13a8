"""Conversions between engine arrays, stored blobs and JSON.

Blobs are :func:`engine.serialization.encode_arrays` output (dtype + shape header
and raw bytes); nothing here uses pickle.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from app.datasets import blobs
from engine import serialization

LayerArrays = Mapping[str, Any]


def encode_weights(layers: Sequence[LayerArrays]) -> memoryview:
    """Encode ``[{"weights": W, "bias": b | None}, ...]`` as one blob.

    Parameters
    ----------
    layers : sequence of mappings
        One entry per layer; ``weights`` of shape (fan_in, units), ``bias`` of
        shape (units,) or None.
    """
    arrays: dict[str, NDArray[Any]] = {"n_layers": np.asarray([len(layers)], dtype=np.int64)}
    for index, layer in enumerate(layers):
        arrays[f"{index}.weights"] = np.asarray(layer["weights"])
        if layer.get("bias") is not None:
            arrays[f"{index}.bias"] = np.asarray(layer["bias"])
    return blobs.encode_arrays(arrays)


def decode_weights(blob: serialization.Blob) -> list[dict[str, NDArray[Any] | None]]:
    """Inverse of :func:`encode_weights`; the arrays are views of a writable buffer (the
    caller's own, :func:`app.db.blob_io.read_blob`), copies of ``bytes``."""
    arrays = serialization.decode_arrays(blob, copy=isinstance(blob, bytes))
    n_layers = int(arrays["n_layers"][0])
    return [
        {"weights": arrays[f"{index}.weights"], "bias": arrays.get(f"{index}.bias")}
        for index in range(n_layers)
    ]


def finite_or_none(value: Any) -> float | None:
    """Return ``value`` as a float, or None when missing or not finite (JSON has no NaN)."""
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def array_to_json(array: NDArray[Any]) -> Any:
    """Convert an array to nested lists, with non-finite floats as None."""
    if array.dtype.kind in "iub":
        return array.tolist()
    values = np.asarray(array, dtype=np.float64)
    if np.isfinite(values).all():
        return values.tolist()
    obj = values.astype(object)
    obj[~np.isfinite(values)] = None
    return obj.tolist()


def weights_to_json(layers: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Convert engine weights to the API shape ``[{"weights": [[...]], "bias": [...]}]``."""
    return [
        {
            "weights": array_to_json(np.asarray(layer["weights"])),
            "bias": None if layer.get("bias") is None else array_to_json(np.asarray(layer["bias"])),
        }
        for layer in layers
    ]


def clean_metrics(logs: Mapping[str, Any], exclude: Iterable[str] = ()) -> dict[str, float | None]:
    """Return the numeric entries of ``logs`` (minus ``exclude``) as JSON-safe floats."""
    skip = set(exclude)
    return {
        key: finite_or_none(value)
        for key, value in logs.items()
        if key not in skip and (value is None or isinstance(value, int | float | np.number))
    }
