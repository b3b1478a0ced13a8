"""/healthz"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, status

from app.api.deps import get_database
from app.api.responses import errors
from app.api.schemas import Health
from app.db.database import Database

router = APIRouter(tags=["health"])
logger = logging.getLogger(__name__)


@router.get("/healthz", response_model=Health, responses=errors(503))
def healthz(db: Annotated[Database, Depends(get_database)]) -> Health:
    """200 when the database answers, 503 otherwise."""
    try:
        db.ping()
    except Exception as exc:
        logger.warning("health check failed: %s", exc)
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "database unavailable") from exc
    return Health(status="ok", database="ok")
