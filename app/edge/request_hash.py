"""The fingerprint of a request, for ``Idempotency-Key`` (:mod:`app.edge.idempotency`).

Two requests are "the same request" when their method, path, query, media type
and body are equal. A multipart body differs between two sends of the same form
only by its boundary (clients draw a new one per request), so the boundary is
left out: every occurrence of it in the body is hashed as a fixed marker, and
the ``boundary`` parameter is dropped from the media type. The body is hashed as
it streams in (:class:`BodyHasher`), so nothing is buffered for it.
"""

from __future__ import annotations

import hashlib

from starlette.types import Scope

IDEMPOTENCY_HEADER = b"idempotency-key"
_MARKER = b"\x00backprop-boundary\x00"


def header(scope: Scope, name: bytes) -> str | None:
    """The first value of header ``name`` (lower case) in ``scope``, or None."""
    for key, value in scope.get("headers") or ():
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def _media_type(scope: Scope) -> tuple[str, bytes | None]:
    """The request's media type without its parameters, and its multipart boundary."""
    content_type = header(scope, b"content-type") or ""
    media, _, params = content_type.partition(";")
    boundary: bytes | None = None
    for param in params.split(";"):
        name, _, value = param.strip().partition("=")
        if name.lower() == "boundary" and value:
            boundary = value.strip('"').encode("latin-1")
    return media.strip().lower(), boundary


class BodyHasher:
    """SHA-256 of a request body fed in chunks, blind to its multipart boundary.

    Parameters
    ----------
    scope : Scope
        The request (its ``Content-Type`` names the boundary, if any).
    """

    def __init__(self, scope: Scope) -> None:
        media, boundary = _media_type(scope)
        self._boundary = b"--" + boundary if boundary else None
        self._carry = b""
        self._hash = hashlib.sha256()
        self.media_type = media

    def update(self, chunk: bytes) -> None:
        """Hash the next ``chunk`` of the body."""
        if self._boundary is None:
            self._hash.update(chunk)
            return
        parts = (self._carry + chunk).split(self._boundary)
        for part in parts[:-1]:
            self._hash.update(part)
            self._hash.update(_MARKER)
        last = parts[-1]
        keep = len(self._boundary) - 1  # a boundary split across chunks starts here at most
        cut = max(0, len(last) - keep)
        self._hash.update(last[:cut])
        self._carry = last[cut:]

    def hexdigest(self) -> str:
        """The digest of everything fed (call once, at the end)."""
        self._hash.update(self._carry)
        self._carry = b""
        return self._hash.hexdigest()


def request_fingerprint(scope: Scope, body_sha256: str | None) -> str:
    """SHA-256 over the method, path, query, media type and body digest of a request.

    Parameters
    ----------
    scope : Scope
        The request.
    body_sha256 : str or None
        :meth:`BodyHasher.hexdigest` of its body; None when it has none.
    """
    media, _ = _media_type(scope)
    parts = [
        scope.get("method", ""),
        scope.get("path", ""),
        bytes(scope.get("query_string", b"")).decode("latin-1"),
        media,
        body_sha256 or hashlib.sha256(b"").hexdigest(),
    ]
    return hashlib.sha256("\n".join(parts).encode("utf-8")).hexdigest()
