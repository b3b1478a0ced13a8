"""Translation of engine errors into service errors."""

from __future__ import annotations

from collections.abc import Sequence

import engine
from app.errors import InvalidInputError


def invalid_from_config_error(
    exc: engine.ConfigError, prefix: Sequence[str | int] = ("body",)
) -> InvalidInputError:
    """Turn an :class:`engine.ConfigError` into a 422 located under ``prefix``."""
    loc = tuple(getattr(exc, "loc", ()) or ())
    reason = getattr(exc, "reason", None) or str(exc)
    return InvalidInputError((*prefix, *loc), reason)
