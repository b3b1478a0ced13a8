"""Readers for JSON-shaped specs and configs that raise :class:`ConfigError` naming the field."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from engine.errors import ConfigError, Loc

#: The largest seed a network or a training config takes (a 63-bit unsigned int).
MAX_SEED = 2**63 - 1


def as_mapping(value: Any, loc: Loc) -> Mapping[str, Any]:
    """Return ``value`` if it is a JSON object, else raise."""
    if not isinstance(value, Mapping):
        raise ConfigError(loc, f"must be an object, got {type(value).__name__}")
    return value


def reject_unknown(obj: Mapping[str, Any], allowed: Sequence[str], loc: Loc) -> None:
    """Raise for keys of ``obj`` not in ``allowed`` (catches typos such as ``learning_rte``)."""
    for key in obj:
        if key not in allowed:
            choices = ", ".join(allowed)
            raise ConfigError((*loc, key), f"unknown field; expected one of: {choices}")


def get_choice(
    obj: Mapping[str, Any], key: str, choices: Sequence[str], loc: Loc, default: str | None = None
) -> str:
    """Read a string that must be one of ``choices``."""
    value = obj.get(key, default)
    if value is None:
        raise ConfigError((*loc, key), f"is required; one of: {', '.join(choices)}")
    if not isinstance(value, str) or value not in choices:
        raise ConfigError((*loc, key), f"must be one of: {', '.join(choices)}; got {value!r}")
    return value


def get_bool(obj: Mapping[str, Any], key: str, loc: Loc, default: bool) -> bool:
    """Read a boolean (JSON true/false only)."""
    value = obj.get(key, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ConfigError((*loc, key), f"must be true or false, got {value!r}")
    return value


def get_int(
    obj: Mapping[str, Any],
    key: str,
    loc: Loc,
    *,
    default: int | None = None,
    minimum: int | None = None,
    maximum: int | None = None,
    required: bool = False,
) -> int | None:
    """Read an optional integer within ``[minimum, maximum]``."""
    value = obj.get(key, default)
    if value is None:
        if required:
            raise ConfigError((*loc, key), "is required and must be an integer")
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise ConfigError((*loc, key), f"must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ConfigError((*loc, key), f"must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ConfigError((*loc, key), f"must be at most {maximum}, got {value}")
    return int(value)


def require_int(
    obj: Mapping[str, Any],
    key: str,
    loc: Loc,
    *,
    default: int | None = None,
    minimum: int | None = None,
    maximum: int | None = None,
) -> int:
    """Read an integer that must be present (or have a default)."""
    value = get_int(obj, key, loc, default=default, minimum=minimum, maximum=maximum, required=True)
    assert value is not None
    return value


def get_float(
    obj: Mapping[str, Any],
    key: str,
    loc: Loc,
    *,
    default: float,
    minimum: float | None = None,
    maximum: float | None = None,
    exclusive_minimum: bool = False,
    exclusive_maximum: bool = False,
) -> float:
    """Read a finite number within the given bounds."""
    value = obj.get(key, default)
    if value is None:
        value = default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError((*loc, key), f"must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ConfigError((*loc, key), f"must be a finite number, got {value!r}")
    if minimum is not None:
        if exclusive_minimum and value <= minimum:
            raise ConfigError((*loc, key), f"must be greater than {minimum:g}, got {value:g}")
        if not exclusive_minimum and value < minimum:
            raise ConfigError((*loc, key), f"must be at least {minimum:g}, got {value:g}")
    if maximum is not None:
        if exclusive_maximum and value >= maximum:
            raise ConfigError((*loc, key), f"must be less than {maximum:g}, got {value:g}")
        if not exclusive_maximum and value > maximum:
            raise ConfigError((*loc, key), f"must be at most {maximum:g}, got {value:g}")
    return value
