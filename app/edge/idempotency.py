"""ASGI middleware: ``Idempotency-Key`` on every ``POST`` (the one home of it).

A client that cannot tell whether its POST arrived (a timeout, a dropped
connection, a 503) sends it again with the same ``Idempotency-Key``; the server
then runs it at most once per tenant and key:

- a new key: the request runs; its response is stored (bounded by
  ``BACKPROP_IDEMPOTENCY_MAX_RESPONSE_BYTES``) and remembered for
  ``BACKPROP_IDEMPOTENCY_TTL_SECONDS`` (24 h);
- the same key with the same request (method, path, query, media type, body;
  a multipart boundary excepted, :mod:`app.edge.request_hash`): the stored response is
  replayed, same status, body and ids, with ``Idempotent-Replayed: true``;
- the same key with another request: 422 at ``["header", "Idempotency-Key"]``;
- the same key while the first request is still running: 409 with
  ``Retry-After: 1`` (nothing waits on the server; the retry gets the replay).

Only answers that say what the request did are stored: success and 4xx, except
the transient 408, 409 and 429. A 5xx, one of those, a response that was cut
off, or one too large to store releases the key, so a retry runs the request
again. The body's hash is computed while the body streams in
(:class:`app.edge.body_buffer.BodyBuffer`); this middleware sits inside it and inside
the admission limit, and finds the tenant the way the API-key dependency does.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

import anyio
from fastapi import FastAPI
from pydantic import BaseModel
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.deps import bearer_token, tenant_for_token
from app.api.request_body import SCOPE_KEY, BufferedBody
from app.api.responses import ErrorMessage, ValidationErrorBody
from app.db.database import Database
from app.db.errors import RETRY_AFTER_SECONDS, unavailable_reason
from app.edge.request_hash import IDEMPOTENCY_HEADER, header, request_fingerprint
from app.services import idempotency as keys

logger = logging.getLogger(__name__)

MAX_KEY_LENGTH = 255
REPLAYED_HEADER = "Idempotent-Replayed"
KEPT_HEADERS = frozenset({"content-type", "location"})
"""Response headers stored with a key and replayed."""
TRANSIENT = frozenset({408, 409, 429})
LOC = ["header", "Idempotency-Key"]


def _key_problem(key: str) -> str | None:
    if not key:
        return "must not be empty"
    if len(key) > MAX_KEY_LENGTH:
        return f"{len(key)} characters; at most {MAX_KEY_LENGTH}"
    if any(not 0x21 <= ord(char) <= 0x7E for char in key):
        return "only printable ASCII without spaces is allowed (e.g. a UUID)"
    return None


async def _answer(
    send: Send, status: int, body: bytes, headers: list[tuple[str, str]] | None = None
) -> None:
    raw = [
        (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers or []
    ]
    if not any(name == b"content-type" for name, _ in raw):
        raw.append((b"content-type", b"application/json"))
    raw.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def _invalid(send: Send, msg: str) -> None:
    detail = [{"loc": LOC, "msg": msg, "type": "value_error"}]
    await _answer(send, 422, json.dumps({"detail": detail}).encode())


@dataclass
class _Capture:
    """Forwards the response and keeps a bounded copy of it."""

    send: Send
    max_bytes: int
    status: int = 0
    headers: list[tuple[str, str]] = field(default_factory=list)
    chunks: list[bytes] = field(default_factory=list)
    size: int = 0
    complete: bool = False
    too_large: bool = False

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = int(message["status"])
            for name, value in message.get("headers") or ():
                text = bytes(name).decode("latin-1").lower()
                if text in KEPT_HEADERS:
                    self.headers.append((text, bytes(value).decode("latin-1")))
        elif message["type"] == "http.response.body":
            chunk = bytes(message.get("body", b""))
            self.size += len(chunk)
            if self.size > self.max_bytes:
                self.too_large = True
                self.chunks = []
            elif chunk:
                self.chunks.append(chunk)
            if not message.get("more_body", False):
                self.complete = True
        await self.send(message)

    @property
    def storable(self) -> bool:
        ok = self.status < 500 and self.status not in TRANSIENT
        return self.complete and ok and not self.too_large


class Idempotency:
    """ASGI middleware implementing ``Idempotency-Key`` for ``POST`` requests.

    Parameters
    ----------
    app : ASGI app
        The wrapped application.
    times : KeyTimes
        ``BACKPROP_IDEMPOTENCY_TTL_SECONDS`` and ``BACKPROP_IDEMPOTENCY_LOCK_SECONDS``.
    max_response_bytes : int
        ``BACKPROP_IDEMPOTENCY_MAX_RESPONSE_BYTES``.
    """

    def __init__(self, app: ASGIApp, times: keys.KeyTimes, max_response_bytes: int) -> None:
        self.app = app
        self.times = times
        self.max_response_bytes = max_response_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        key = header(scope, IDEMPOTENCY_HEADER) if scope["type"] == "http" else None
        if key is None or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        state = scope["app"].state
        tenant = tenant_for_token(
            state.api_key_digests, bearer_token(header(scope, b"authorization"))
        )
        if tenant is None:  # the API-key dependency answers 401
            await self.app(scope, receive, send)
            return
        key = key.strip()
        problem = _key_problem(key)
        if problem is not None:
            await _invalid(send, problem)
            return
        body = scope.get(SCOPE_KEY)
        digest = body.sha256 if isinstance(body, BufferedBody) else None
        fingerprint = request_fingerprint(scope, digest)
        db: Database = state.db
        try:
            outcome = await run_in_threadpool(self._begin, db, tenant, key, fingerprint)
        except SQLAlchemyError as exc:
            await _unavailable(send, exc)
            return
        if isinstance(outcome, keys.Replay):
            headers = [*outcome.headers, (REPLAYED_HEADER, "true")]
            await _answer(send, outcome.status_code, outcome.body, headers)
        elif isinstance(outcome, keys.Mismatch):
            await _invalid(
                send,
                "this key was already used for a different request (method, path or body); "
                "use a new key for a new request",
            )
        elif isinstance(outcome, keys.InFlight):
            detail = "a request with this Idempotency-Key is still being processed; retry shortly"
            await _answer(
                send, 409, json.dumps({"detail": detail}).encode(), [("Retry-After", "1")]
            )
        else:
            await self._run(scope, receive, send, db, tenant, key)

    def _begin(self, db: Database, tenant: str, key: str, fingerprint: str) -> keys.Outcome:
        with db.writing() as session:
            return keys.begin(
                session=session, owner=tenant, key=key, request_hash=fingerprint, times=self.times
            )

    async def _run(
        self, scope: Scope, receive: Receive, send: Send, db: Database, tenant: str, key: str
    ) -> None:
        capture = _Capture(send, self.max_response_bytes)
        try:
            await self.app(scope, receive, capture)
        finally:
            with anyio.CancelScope(shield=True):  # a client that left still settles the key
                await run_in_threadpool(_settle, db, tenant, key, capture)


def _settle(db: Database, tenant: str, key: str, capture: _Capture) -> None:
    """Store the captured response for ``key``, or release the key."""
    try:
        with db.writing() as session:
            if capture.storable:
                keys.complete(
                    session=session,
                    owner=tenant,
                    key=key,
                    status_code=capture.status,
                    headers=capture.headers,
                    body=b"".join(capture.chunks),
                )
            else:
                if capture.too_large:
                    logger.warning("idempotency key %r: response too large to store", key)
                keys.release(session=session, owner=tenant, key=key)
    except SQLAlchemyError as exc:  # the key stays held until BACKPROP_IDEMPOTENCY_LOCK_SECONDS
        logger.warning("idempotency key %r: could not record the outcome (%s)", key, exc)


async def _unavailable(send: Send, exc: SQLAlchemyError) -> None:
    reason = unavailable_reason(exc)
    if reason is None:
        raise exc
    detail = f"Service unavailable: {reason}. Retry in a few seconds."
    await _answer(
        send,
        503,
        json.dumps({"detail": detail}).encode(),
        [("Retry-After", str(RETRY_AFTER_SECONDS))],
    )


HEADER_DOC = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "Any unique string (e.g. a UUID, at most 255 printable ASCII characters) "
    "per logical request. Sent again with the same request within 24 h, the first response "
    "is replayed (same status, body and ids; header `Idempotent-Replayed: true`); with "
    "another request: 422; while the first is still running: 409 with `Retry-After`.",
    "schema": {"type": "string", "maxLength": MAX_KEY_LENGTH},
    "example": "5f0c7b6e-3c1a-4d8e-9b7a-2f4e6d1c0a9b",
}


def _component(schema: dict[str, Any], model: type[BaseModel]) -> dict[str, str]:
    """A ``$ref`` to ``model`` in ``schema``'s components (added when missing)."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    if model.__name__ not in components:
        body = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, definition in body.pop("$defs", {}).items():
            components.setdefault(name, definition)
        components[model.__name__] = body
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _document_operation(schema: dict[str, Any], operation: dict[str, Any]) -> None:
    operation.setdefault("parameters", []).append(dict(HEADER_DOC))
    responses = operation.setdefault("responses", {})
    if "422" not in responses:
        responses["422"] = {
            "description": "Invalid input (here: a malformed Idempotency-Key, or one used for "
            "another request).",
            "content": {"application/json": {"schema": _component(schema, ValidationErrorBody)}},
        }
    if "409" not in responses:
        responses["409"] = {
            "description": "A request with this Idempotency-Key is still being processed; "
            "retry after Retry-After seconds.",
            "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds."}},
            "content": {"application/json": {"schema": _component(schema, ErrorMessage)}},
        }


def document(app: FastAPI) -> None:
    """Document the ``Idempotency-Key`` header, and the 409/422 it can cause, on every
    ``POST`` operation of ``app.openapi()``."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            for path in schema.get("paths", {}).values():
                operation = path.get("post")
                if operation is not None:
                    _document_operation(schema, operation)
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]
