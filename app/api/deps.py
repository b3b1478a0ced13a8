"""FastAPI dependencies: sessions, executor, settings, authentication."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator, Sequence
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from fastapi import Depends, HTTPException, Request, status
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel import Session

from app.config import Settings
from app.db.database import Database
from app.db.models import DEFAULT_OWNER
from app.jobs.dispatch import Executor


async def get_app_settings(request: Request) -> Settings:
    """The settings the app was created with."""
    settings: Settings = request.app.state.settings
    return settings


async def get_database(request: Request) -> Database:
    """The app's database (created in the lifespan)."""
    db: Database = request.app.state.db
    return db


# The session dependencies are async on purpose: their teardown (session.close(),
# which hands the connection back to the pool) then runs on the event loop. As sync
# generators their teardown needed a thread-pool slot, and under load (200 pollers)
# every slot was taken by routes waiting for a pooled connection that finished
# requests still held while they waited for a slot: a deadlock until the pool timeout.
# Creating a Session takes no connection; closing one is a rollback at most.


async def get_read_session(
    db: Annotated[Database, Depends(get_database)],
) -> AsyncIterator[Session]:
    """A session for reads (deferred transactions: never waits for writers)."""
    session = db.read_session()
    try:
        yield session
    finally:
        session.close()


async def get_write_session(
    db: Annotated[Database, Depends(get_database)],
) -> AsyncIterator[Session]:
    """A session for writes (``BEGIN IMMEDIATE`` on SQLite)."""
    session = db.write_session()
    try:
        yield session
    finally:
        session.close()


async def get_executor(request: Request) -> Executor:
    """The executor that runs queued runs."""
    executor: Executor = request.app.state.executor
    return executor


ReadSession = Annotated[Session, Depends(get_read_session)]
WriteSession = Annotated[Session, Depends(get_write_session, scope="function")]
"""Closed as soon as the endpoint's response is made (``scope="function"``), not after it
is sent and the request's background tasks have run: a handler that reads after its
commit has begun another ``IMMEDIATE`` transaction, and SQLite's write lock was held
meanwhile (a new sweep's first step, a background task, waited 32 s for it)."""
ExecutorDep = Annotated[Executor, Depends(get_executor)]
DatabaseDep = Annotated[Database, Depends(get_database)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]

_bearer = HTTPBearer(
    auto_error=False,
    description="`Authorization: Bearer <key>` with one of BACKPROP_API_KEYS, when it is set.",
)
_TENANT_HASH_KEY = b"backprop tenant id v1"


def key_digest(token: str) -> bytes:
    """A keyed hash (HMAC-SHA256) of a bearer token: what is compared and stored, never the key."""
    return hmac.new(_TENANT_HASH_KEY, token.encode("utf-8"), hashlib.sha256).digest()


def tenant_id(digest: bytes) -> str:
    """The owner stored on a tenant's rows, derived from :func:`key_digest` of its key."""
    return "t_" + digest.hex()[:32]


def api_key_digests(settings: Settings) -> list[bytes]:
    """Digests of the configured keys (computed once per app)."""
    return [key_digest(key) for key in settings.api_key_list]


def tenant_for_token(digests: list[bytes], token: str | None) -> str | None:
    """The tenant of bearer ``token``, or None when it matches no configured key.

    With no keys configured every request belongs to the default tenant.
    Otherwise the token's digest is compared with every key's digest in constant
    time (fixed-length digests, no early exit).
    """
    if not digests:
        return DEFAULT_OWNER
    presented = key_digest(token or "")
    matched = False
    for digest in digests:
        matched |= hmac.compare_digest(presented, digest)
    return tenant_id(presented) if matched else None


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header value, else None."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


async def require_api_key(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """Authenticate the request and return its tenant (:func:`tenant_for_token`);
    a miss answers 401."""
    digests: list[bytes] = request.app.state.api_key_digests
    tenant = tenant_for_token(digests, credentials.credentials if credentials else None)
    if tenant is None:
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="missing or invalid bearer token (Authorization: Bearer <api key>)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return tenant


def _is_list(annotation: Any) -> bool:
    """``list[str]``, ``list[str] | None``, ...: a query parameter that may repeat."""
    origin = get_origin(annotation)
    if origin in (Union, UnionType):
        return any(_is_list(arg) for arg in get_args(annotation) if arg is not type(None))
    return origin in (list, tuple, set, frozenset, Sequence)


def _dependant_query_names(dependant: Dependant) -> dict[str, bool]:
    """Each query parameter's name -> whether it may be given more than once."""
    names = {param.alias: _is_list(param.field_info.annotation) for param in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _dependant_query_names(sub)
    return names


def _query_names(route: APIRoute) -> dict[str, bool]:
    names: dict[str, bool] | None = getattr(route, "_backprop_query_names", None)
    if names is None:
        names = _dependant_query_names(route.dependant)
        route._backprop_query_names = names  # type: ignore[attr-defined]
    return names


async def reject_unknown_query(request: Request) -> None:
    """Answer 422 for query parameters the route does not declare (a typo such as
    ``?limt=5`` is an error, as unknown body fields are), and for a single-valued one
    given more than once (``?status=queued&status=running`` would silently use one)."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):  # pragma: no cover - always set for routes
        return
    allowed = _query_names(route)
    params = request.query_params
    errors = [
        {"loc": ("query", name), "msg": "unknown query parameter", "type": "extra_forbidden"}
        for name in params
        if name not in allowed
    ] + [
        {
            "loc": ("query", name),
            "msg": "given more than once; this parameter takes one value",
            "type": "value_error",
        }
        for name in params
        if allowed.get(name) is False and len(params.getlist(name)) > 1
    ]
    if errors:
        raise RequestValidationError(errors)


Tenant = Annotated[str, Depends(require_api_key)]
"""The requesting tenant (the owner of what it creates and the only owner it can see)."""


def valid_run(run_id: str, session: ReadSession, tenant: Tenant) -> str:
    """The path's ``run_id`` once the tenant's run exists (else the service's 404)."""
    from app.services import runs as run_service

    run_service.get_run(session=session, owner=tenant, run_id=run_id)
    return run_id


ValidRunId = Annotated[str, Depends(valid_run)]
