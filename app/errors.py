"""Domain exceptions raised by services and translated to HTTP by :mod:`app.main`,
and the translation of engine errors into them."""

from __future__ import annotations

from collections.abc import Sequence

import engine

Loc = tuple[str | int, ...]


class ServiceError(Exception):
    """Base class of the errors a client can cause."""


class NotFoundError(ServiceError):
    """An id names nothing (HTTP 404).

    Parameters
    ----------
    kind : str
        What was looked up (``"network"``, ``"run"``, ...).
    id : str
        The unknown id.
    """

    def __init__(self, kind: str, id: str) -> None:
        self.kind = kind
        self.id = id
        super().__init__(f"{kind} {id!r} not found")


class ConflictError(ServiceError):
    """The request conflicts with the current state of a resource (HTTP 409)."""


class TooManyRunsError(ServiceError):
    """The tenant has as many queued and running runs as it may (HTTP 429 with Retry-After)."""


class StorageQuotaError(ServiceError):
    """Storing this would take the tenant over its storage quota (HTTP 507)."""


class InvalidInputError(ServiceError):
    """Invalid input, reported like FastAPI's request validation errors (HTTP 422).

    Parameters
    ----------
    loc : sequence of str or int
        Where the error is, starting with ``"body"``, ``"query"`` or ``"path"``.
    msg : str
        The reason, for a human.
    """

    def __init__(self, loc: Sequence[str | int], msg: str) -> None:
        self.loc: Loc = tuple(loc)
        self.msg = msg
        super().__init__(f"{'.'.join(str(part) for part in self.loc)}: {msg}")

    def to_detail(self) -> list[dict[str, object]]:
        """Return FastAPI's ``detail`` list for this error."""
        return [{"loc": list(self.loc), "msg": self.msg, "type": "value_error"}]


def invalid_from_config_error(
    exc: engine.ConfigError, prefix: Sequence[str | int] = ("body",)
) -> InvalidInputError:
    """Turn an :class:`engine.ConfigError` into a 422 located under ``prefix``."""
    loc = tuple(getattr(exc, "loc", ()) or ())
    reason = getattr(exc, "reason", None) or str(exc)
    return InvalidInputError((*prefix, *loc), reason)
