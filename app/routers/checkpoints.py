"""/v1/checkpoints"""

from __future__ import annotations

from fastapi import APIRouter

from app.deps import ReadSession, Tenant
from app.presenters import checkpoint_detail
from app.responses import errors
from app.schemas import CheckpointDetail
from app.services import runs as service

router = APIRouter(prefix="/v1/checkpoints", tags=["checkpoints"])


@router.get("/{checkpoint_id}", response_model=CheckpointDetail, responses=errors(401, 404))
def get_checkpoint(checkpoint_id: str, session: ReadSession, tenant: Tenant) -> CheckpointDetail:
    """One checkpoint with its weights."""
    checkpoint, layers = service.get_checkpoint(
        session=session, owner=tenant, checkpoint_id=checkpoint_id
    )
    return checkpoint_detail(checkpoint, layers)
