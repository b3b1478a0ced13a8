"""GET /v1/runs/{run_id}/events: the run's progress as Server-Sent Events.

Included without the router-wide API-key dependency: browsers' ``EventSource``
cannot send an ``Authorization`` header, so this route (and only this one) also
accepts the key as ``?access_token=``. The header wins when both are given.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials
from starlette.responses import StreamingResponse

from app.db import Database
from app.deps import _bearer as bearer_scheme
from app.deps import require_api_key
from app.errors import InvalidInputError
from app.events import EventHub
from app.responses import errors
from app.services import runs as service

router = APIRouter(prefix="/v1/runs", tags=["runs"])

EVENTS_EXAMPLE = (
    "retry: 1000\n\n"
    'event: status\ndata: {"status":"running","epoch":0,"stop_reason":null,"error":null}\n\n'
    'id: 1\nevent: progress\ndata: {"epoch":1,"loss":0.31,"val_loss":null,"status":"running"}\n\n'
    ": keep-alive\n\n"
    'event: end\ndata: {"status":"succeeded","epoch":1,"stop_reason":"completed","error":null}\n\n'
)


async def _tenant(
    request: Request, credentials: HTTPAuthorizationCredentials | None, access_token: str | None
) -> str:
    if credentials is None and access_token:
        credentials = HTTPAuthorizationCredentials(scheme="Bearer", credentials=access_token)
    return await require_api_key(request, credentials)


def _check_run(db: Database, tenant: str, run_id: str) -> None:
    with db.reading() as session:
        service.get_run(session=session, owner=tenant, run_id=run_id)


@router.get(
    "/{run_id}/events",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": (
                "`text/event-stream`: `status` events (no id), one `progress` event per "
                "recorded epoch (`id` = the epoch; data: epoch, loss, val_loss, metrics, "
                "status), `: keep-alive` comments every ~15 s, and a final `end` event "
                "when the run is succeeded, failed or cancelled; then the stream closes."
            ),
            "content": {"text/event-stream": {"example": EVENTS_EXAMPLE}},
        },
        **errors(401, 404, 422),
    },
)
async def stream_run_events(
    run_id: str,
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
    last_event_id: Annotated[
        str | None,
        Header(description="Resume after this epoch (sent by EventSource on reconnect)."),
    ] = None,
    access_token: Annotated[
        str | None,
        Query(
            max_length=512,
            description="The API key, for clients that cannot send headers (EventSource).",
        ),
    ] = None,
) -> StreamingResponse:
    """Stream the run's progress; reconnect with ``Last-Event-ID`` to resume exactly."""
    tenant = await _tenant(request, credentials, access_token)
    after = 0
    if last_event_id:
        if not last_event_id.strip().isdigit():
            raise InvalidInputError(
                ("header", "last-event-id"), "must be an epoch number (a previous event's id)"
            )
        after = int(last_event_id)
    db: Database = request.app.state.db
    await run_in_threadpool(_check_run, db, tenant, run_id)
    hub: EventHub = request.app.state.event_hub
    return StreamingResponse(
        hub.stream(run_id, after),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
