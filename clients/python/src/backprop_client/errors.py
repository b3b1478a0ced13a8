"""The errors a :class:`~backprop_client.Client` raises, one class per kind of answer."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from backprop_client.models import Run, Sweep


class BackpropError(Exception):
    """An error answer from the server (or no answer at all).

    Attributes
    ----------
    status_code : int or None
        The HTTP status; None when the server was not reached.
    detail : Any
        The server's ``detail``: a string, or for 422 a list of
        ``{"loc", "msg", "type"}`` entries.
    """

    def __init__(self, message: str, *, status_code: int | None = None, detail: Any = None):
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.detail = detail


class NotFound(BackpropError):  # noqa: N818 (the names of the HTTP statuses)
    """404: an id names nothing."""


class Conflict(BackpropError):  # noqa: N818 (the names of the HTTP statuses)
    """409: the request conflicts with the resource's state (e.g. deleting a busy dataset)."""


class InvalidRequest(BackpropError):  # noqa: N818 (the names of the HTTP statuses)
    """422: invalid input; :attr:`detail` is the list of errors, each naming its field."""

    detail: list[dict[str, Any]]

    @property
    def fields(self) -> list[str]:
        """Dotted locations of the errors, e.g. ``["body.layers.1.activation"]``."""
        return [".".join(str(part) for part in error.get("loc", ())) for error in self.detail]


class PayloadTooLarge(BackpropError):  # noqa: N818 (the names of the HTTP statuses)
    """413: the request body is over the server's limit."""


class Unauthorized(BackpropError):  # noqa: N818 (the names of the HTTP statuses)
    """401: a missing or wrong API key."""


class StorageQuotaExceeded(BackpropError):  # noqa: N818 (what happened)
    """507: storing this would take the tenant over its storage quota (the detail says by how
    much); delete datasets or networks, or wait for unfinished runs to end."""


class RetryLater(BackpropError):  # noqa: N818 (what the caller should do)
    """An answer that says when to try again: :attr:`retry_after` seconds (or None)."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        detail: Any = None,
        retry_after: float | None = None,
    ):
        super().__init__(message, status_code=status_code, detail=detail)
        self.retry_after = retry_after


class RateLimited(RetryLater):
    """429: too many requests or active runs; retry after :attr:`retry_after` seconds."""


class ServerError(BackpropError):
    """5xx: the server failed."""


class ServiceUnavailable(RetryLater, ServerError):  # noqa: N818 (the names of the HTTP statuses)
    """503: the server's database is unavailable for now; retry after :attr:`retry_after` s."""


class BackpropConnectionError(BackpropError):
    """The server could not be reached (refused, timed out, DNS, ...)."""


class WaitTimeout(BackpropError, TimeoutError):  # noqa: N818
    """:meth:`Client.wait` gave up before the run ended; :attr:`run` is its last state."""

    def __init__(self, message: str, run: Run):
        super().__init__(message)
        self.run = run


class SweepWaitTimeout(BackpropError, TimeoutError):  # noqa: N818
    """:meth:`Client.wait_sweep` gave up before the sweep ended; :attr:`sweep` is its last
    state."""

    def __init__(self, message: str, sweep: Sweep):
        super().__init__(message)
        self.sweep = sweep


_ERRORS: dict[int, type[BackpropError]] = {
    401: Unauthorized,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    422: InvalidRequest,
    429: RateLimited,
    507: StorageQuotaExceeded,
}


def describe_detail(detail: Any) -> str:
    """The server's ``detail`` as one line for a human."""
    if isinstance(detail, list):
        parts = []
        for error in detail:
            if isinstance(error, dict):
                loc = ".".join(str(part) for part in error.get("loc", ()))
                parts.append(f"{loc}: {error.get('msg', '')}" if loc else str(error.get("msg")))
            else:
                parts.append(str(error))
        return "; ".join(parts)
    return str(detail)


def retry_after_seconds(value: str | None) -> float | None:
    """A ``Retry-After`` header in seconds (None when absent or not a number)."""
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None


def error_from_response(response: httpx.Response) -> BackpropError:
    """The typed error for a non-2xx response (its body must have been read)."""
    try:
        body = response.json()
        detail = body.get("detail", body) if isinstance(body, dict) else body
    except ValueError:
        detail = response.text[:500] or response.reason_phrase
    status = response.status_code
    message = f"{status} {response.reason_phrase}: {describe_detail(detail)}"
    if status in (429, 503):
        retry_later = RateLimited if status == 429 else ServiceUnavailable
        return retry_later(
            message,
            status_code=status,
            detail=detail,
            retry_after=retry_after_seconds(response.headers.get("retry-after")),
        )
    if status == 422 and not isinstance(detail, list):
        detail = [{"loc": [], "msg": str(detail), "type": "value_error"}]
    cls = _ERRORS.get(status, ServerError if status >= 500 else BackpropError)
    return cls(message, status_code=status, detail=detail)
