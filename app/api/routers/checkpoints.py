"""/v1/checkpoints"""

from __future__ import annotations

from fastapi import APIRouter, Response

from app.api.deps import ReadSession, Tenant
from app.api.json_out import streamed_response
from app.api.presenters import checkpoint_detail_json
from app.api.responses import errors
from app.api.schemas import CheckpointDetail
from app.services import runs as service

router = APIRouter(prefix="/v1/checkpoints", tags=["checkpoints"])


@router.get("/{checkpoint_id}", response_model=CheckpointDetail, responses=errors(401, 404))
def get_checkpoint(checkpoint_id: str, session: ReadSession, tenant: Tenant) -> Response:
    """One checkpoint with its weights (large weights are streamed)."""
    checkpoint, layers = service.get_checkpoint(
        session=session, owner=tenant, checkpoint_id=checkpoint_id
    )
    document = checkpoint_detail_json(checkpoint, layers)
    session.close()  # nothing more to read: the connection goes back before streaming
    return streamed_response(document)
