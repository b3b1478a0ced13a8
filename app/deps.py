"""FastAPI dependencies: sessions, executor, settings, authentication."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel import Session

from app.config import Settings
from app.db import Database
from app.jobs.dispatch import Executor


def get_app_settings(request: Request) -> Settings:
    """The settings the app was created with."""
    settings: Settings = request.app.state.settings
    return settings


def get_database(request: Request) -> Database:
    """The app's database (created in the lifespan)."""
    db: Database = request.app.state.db
    return db


def get_read_session(db: Annotated[Database, Depends(get_database)]) -> Iterator[Session]:
    """A session for reads (deferred transactions: never waits for writers)."""
    with db.read_session() as session:
        yield session


def get_write_session(db: Annotated[Database, Depends(get_database)]) -> Iterator[Session]:
    """A session for writes (``BEGIN IMMEDIATE`` on SQLite)."""
    with db.write_session() as session:
        yield session


def get_executor(request: Request) -> Executor:
    """The executor that runs queued runs."""
    executor: Executor = request.app.state.executor
    return executor


ReadSession = Annotated[Session, Depends(get_read_session)]
WriteSession = Annotated[Session, Depends(get_write_session)]
ExecutorDep = Annotated[Executor, Depends(get_executor)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]

_bearer = HTTPBearer(auto_error=False, description="One of BACKPROP_API_KEYS, when set.")


def require_api_key(
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Reject requests without a valid bearer token when ``BACKPROP_API_KEYS`` is set."""
    keys = settings.api_key_list
    if not keys:
        return
    token = credentials.credentials if credentials is not None else ""
    if not any(secrets.compare_digest(token.encode(), key.encode()) for key in keys):
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="missing or invalid bearer token (Authorization: Bearer <api key>)",
            headers={"WWW-Authenticate": "Bearer"},
        )
