"""The FastAPI application factory.

``create_app(settings)`` builds the app; the database and the executor are
created in the lifespan (never at import time), so each test can build its own
app against its own database file.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi_offline import FastAPIOffline
from sqlalchemy.exc import SQLAlchemyError
from starlette.middleware.cors import CORSMiddleware

import engine
from app.api.deps import api_key_digests, reject_unknown_query, require_api_key
from app.api.openapi_bodies import install as install_body_schemas
from app.api.responses import errors
from app.api.routers import (
    checkpoints,
    compare,
    dashboard,
    datasets,
    evaluate,
    events,
    exports,
    health,
    networks,
    plots,
    runs,
    sweeps,
    webhooks,
)
from app.config import Settings, get_settings
from app.db.database import Database
from app.db.errors import RETRY_AFTER_SECONDS as DATABASE_RETRY_AFTER
from app.db.errors import unavailable_reason
from app.edge.body_buffer import BodyBuffer, BodyLimits
from app.edge.idempotency import Idempotency
from app.edge.idempotency import document as document_idempotency
from app.edge.limits import MAX_CONCURRENT_REQUESTS, ConcurrencyLimit
from app.edge.observability import install_observability
from app.edge.security_headers import SecurityHeaders, with_security_headers
from app.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    StorageQuotaError,
    TooManyRunsError,
    invalid_from_config_error,
)
from app.events import EventHub, StreamSettings
from app.jobs.dispatch import make_executor
from app.jobs.notifier import Notifier
from app.services.idempotency import KeyTimes

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 10
"""``Retry-After`` of a 429: the tenant's runs are counted again on the next try."""

DESCRIPTION = """
Train multi-layer perceptrons over HTTP on an exact NumPy backpropagation engine.

**XOR walkthrough** (every request body below is prefilled with it):
1. `POST /v1/networks` — copy the returned `id`.
2. `POST /v1/datasets` — copy the returned `id`.
3. `POST /v1/runs` — paste both ids; the run is queued and trains in the background.
4. `GET /v1/runs/{run_id}` until `status` is `succeeded`, then `GET .../history`,
   `GET .../weights` and `POST .../predict`.
"""


def _validation_detail(exc: RequestValidationError) -> list[dict[str, Any]]:
    """FastAPI's error list without the echoed ``input`` (it may be huge, or NaN,
    which JSON cannot carry)."""
    return [
        {"loc": list(error.get("loc", ())), "msg": error.get("msg", ""), "type": error.get("type")}
        for error in exc.errors()
    ]


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _request_invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _validation_detail(exc)}, status_code=422)

    @app.exception_handler(NotFoundError)
    async def _not_found(_: Request, exc: NotFoundError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(ConflictError)
    async def _conflict(_: Request, exc: ConflictError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=409)

    @app.exception_handler(TooManyRunsError)
    async def _too_many(_: Request, exc: TooManyRunsError) -> JSONResponse:
        return JSONResponse(
            {"detail": str(exc)},
            status_code=429,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )

    @app.exception_handler(StorageQuotaError)
    async def _over_quota(_: Request, exc: StorageQuotaError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=507)

    @app.exception_handler(InvalidInputError)
    async def _invalid(_: Request, exc: InvalidInputError) -> JSONResponse:
        return JSONResponse({"detail": exc.to_detail()}, status_code=422)

    @app.exception_handler(SQLAlchemyError)
    async def _database_error(request: Request, exc: SQLAlchemyError) -> JSONResponse:
        reason = unavailable_reason(exc)
        if reason is None:
            raise exc  # a bug, not an outage: the server error middleware answers 500
        logger.warning(
            "%s %s: 503, %s (%s)", request.method, request.url.path, reason, type(exc).__name__
        )
        return JSONResponse(
            {"detail": f"Service unavailable: {reason}. Retry in a few seconds."},
            status_code=503,
            headers={"Retry-After": str(DATABASE_RETRY_AFTER)},
        )

    @app.exception_handler(Exception)
    async def _server_error(request: Request, _: Exception) -> PlainTextResponse:
        # Starlette's own answer, plus the security headers: a 500 is made outside
        # every middleware (by the server error middleware, which then re-raises).
        headers = with_security_headers([], request.url.path)
        return PlainTextResponse(
            "Internal Server Error",
            status_code=500,
            headers={name.decode(): value.decode() for name, value in headers},
        )

    @app.exception_handler(engine.ConfigError)
    async def _config_error(_: Request, exc: engine.ConfigError) -> JSONResponse:
        return JSONResponse({"detail": invalid_from_config_error(exc).to_detail()}, status_code=422)


def _body_limits(settings: Settings) -> BodyLimits:
    return BodyLimits(
        max_bytes=settings.max_body_bytes,
        timeout_seconds=settings.body_timeout_seconds,
        min_bytes_per_second=settings.body_min_bytes_per_second,
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the Backprop API.

    Parameters
    ----------
    settings : Settings, optional
        Defaults to :func:`app.config.get_settings` (the environment).

    Returns
    -------
    FastAPI
        The app; its lifespan opens the database and starts the executor.
    """
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = Database(settings.database_url)
        executor = make_executor(settings, db)
        executor.start()
        notifier = Notifier(settings)  # webhooks go out from API servers, whatever the executor
        notifier.start()
        app.state.db = db
        app.state.executor = executor
        app.state.notifier = notifier
        app.state.event_hub = EventHub(db, StreamSettings.from_settings(settings))
        try:
            yield
        finally:
            await app.state.event_hub.aclose()
            notifier.stop()
            executor.stop()
            db.dispose()

    app = FastAPIOffline(
        title="Backprop",
        version="0.1.0",
        summary="Training as a service for multi-layer perceptrons.",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.api_key_digests = api_key_digests(settings)
    _install_error_handlers(app)
    install_body_schemas(app)  # routes that stream their JSON body still document it
    document_idempotency(app)  # the Idempotency-Key header on every POST
    secured = [Depends(require_api_key), Depends(reject_unknown_query)]
    for router in (
        compare.router,  # before runs: /v1/runs/compare is not a run id
        networks.router,
        datasets.router,
        runs.router,
        exports.router,
        plots.router,
        checkpoints.router,
        webhooks.router,
        evaluate.router,
        sweeps.router,
    ):
        app.include_router(router, dependencies=secured, responses=errors(401, 503))
    # The event stream authenticates itself (header or ?access_token=, for EventSource).
    app.include_router(
        events.router,
        dependencies=[Depends(reject_unknown_query)],
        responses=errors(401, 503),
    )
    app.include_router(health.router, dependencies=[Depends(reject_unknown_query)])
    app.include_router(dashboard.router)  # the page is public; its API calls carry the key
    app.mount("/static", dashboard.static_files(), name="static")
    # Inside admission: a key's database work holds one of the request slots.
    app.add_middleware(
        Idempotency,
        times=KeyTimes(settings.idempotency_ttl_seconds, settings.idempotency_lock_seconds),
        max_response_bytes=settings.idempotency_max_response_bytes,
    )
    app.add_middleware(ConcurrencyLimit, limit=MAX_CONCURRENT_REQUESTS)
    # Outside admission: a request takes a slot only once its whole body has arrived.
    app.add_middleware(BodyBuffer, limits=_body_limits(settings))
    origins = settings.cors_origin_list
    if origins:  # outermost: preflights and 401/413 answers carry the CORS headers too
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key"],
            expose_headers=["Location", "Retry-After", "X-Has-More", "Idempotent-Replayed"],
            max_age=600,
        )
    # Outside CORS: preflights, 401s and 413s carry the security headers too.
    app.add_middleware(SecurityHeaders)
    # Outermost: every request is logged and timed, whatever answers it.
    install_observability(app, lambda: app.state.db)
    return app
