"""GET /v1/runs/{run_id}/events: the run's progress as Server-Sent Events.

Included without the router-wide API-key dependency: browsers' ``EventSource``
cannot send an ``Authorization`` header, so this route (and only this one) also
accepts the key as ``?access_token=``. The header wins when both are given.

Everything that can refuse the request (401, 422, 404, 429) is a dependency, so it
answers before the stream starts; the stream's slot under the tenant's cap is held
by a dependency too, and given back however the stream ends.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials

from app.api.deps import _bearer as bearer_scheme
from app.api.deps import require_api_key
from app.api.responses import errors
from app.api.schemas import MAX_EPOCHS
from app.db.database import Database
from app.errors import InvalidInputError
from app.events import EventHub, StreamLimitError
from app.events.feed import Subscription
from app.events.hub import RunEventsResponse
from app.services import runs as service

router = APIRouter(prefix="/v1/runs", tags=["runs"])

RETRY_AFTER_SECONDS = 5
"""``Retry-After`` of a 429: a stream's slot is free as soon as its client disconnects."""
_EPOCH = re.compile(r"[0-9]{1,20}")

EVENTS_EXAMPLE = (
    "retry: 1000\n\n"
    'event: status\ndata: {"status":"running","epoch":0,"stop_reason":null,"error":null}\n\n'
    'id: 1\nevent: progress\ndata: {"epoch":1,"loss":0.31,"val_loss":null,"status":"running"}\n\n'
    ": keep-alive\n\n"
    'event: skipped\ndata: {"after_epoch":1,"until_epoch":9}\n\n'
    'id: 9\nevent: progress\ndata: {"epoch":9,"loss":0.12,"val_loss":null,"status":"running"}\n\n'
    'event: end\ndata: {"status":"succeeded","epoch":9,"stop_reason":"completed","error":null}\n\n'
)


def _responses() -> dict[int | str, dict[str, Any]]:
    documented = errors(401, 404, 422, 429)
    documented[429]["description"] = (
        "The tenant has BACKPROP_MAX_EVENT_STREAMS open event streams; "
        "retry after Retry-After seconds."
    )
    documented[200] = {
        "description": (
            "`text/event-stream`: `status` events (no id), one `progress` event per "
            "recorded epoch (`id` = the epoch; data: epoch, loss, val_loss, metrics, "
            "status), a `skipped` event (no id) before a thinned sample when the subscriber "
            "fell behind (the full record is at `GET .../history`), `: keep-alive` "
            "comments every 15 s, and a final `end` event when the run is succeeded, "
            "failed or cancelled; then the stream closes."
        ),
        "content": {"text/event-stream": {"example": EVENTS_EXAMPLE}},
    }
    return documented


async def stream_tenant(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
    access_token: Annotated[
        str | None,
        Query(
            max_length=512,
            description="The API key, for clients that cannot send headers (EventSource).",
        ),
    ] = None,
) -> str:
    """The tenant, from ``Authorization: Bearer`` or else ``?access_token=`` (401)."""
    if credentials is None and access_token:
        credentials = HTTPAuthorizationCredentials(scheme="Bearer", credentials=access_token)
    return await require_api_key(request, credentials)


async def resume_after(
    last_event_id: Annotated[
        str | None,
        Header(
            description="Resume after this epoch (sent by EventSource on reconnect): every "
            "stored epoch after it is replayed once. `0` replays the whole history."
        ),
    ] = None,
) -> int | None:
    """``Last-Event-ID`` as a plain decimal epoch (422 otherwise); None when absent or empty."""
    if not last_event_id:
        return None
    if _EPOCH.fullmatch(last_event_id) is None or int(last_event_id) > MAX_EPOCHS:
        raise InvalidInputError(
            ("header", "last-event-id"),
            f"must be a plain decimal epoch number from 0 to {MAX_EPOCHS} (ASCII digits "
            "only: the id of an event of this stream); leave the header out to start with "
            "the stored history",
        )
    return int(last_event_id)


def _check_run(db: Database, tenant: str, run_id: str) -> None:
    with db.reading() as session:
        service.get_run(session=session, owner=tenant, run_id=run_id)


async def open_stream(
    run_id: str,
    request: Request,
    tenant: Annotated[str, Depends(stream_tenant)],
    after: Annotated[int | None, Depends(resume_after)],
) -> AsyncIterator[Subscription]:
    """The tenant's run (404), then a slot under its cap (429), held until the stream ends."""
    db: Database = request.app.state.db
    await run_in_threadpool(_check_run, db, tenant, run_id)
    hub: EventHub = request.app.state.event_hub
    try:
        subscription = hub.open(tenant, run_id)
    except StreamLimitError as exc:
        raise HTTPException(
            status_code=status.HTTP_429_TOO_MANY_REQUESTS,
            detail=str(exc),
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        ) from exc
    try:
        yield subscription
    finally:
        hub.release(subscription)


@router.get("/{run_id}/events", response_class=RunEventsResponse, responses=_responses())
async def stream_run_events(
    request: Request,
    subscription: Annotated[Subscription, Depends(open_stream)],
    after: Annotated[int | None, Depends(resume_after)],
) -> RunEventsResponse:
    """Stream the run's progress; reconnect with ``Last-Event-ID`` to resume exactly."""
    hub: EventHub = request.app.state.event_hub
    return hub.response(subscription, after)
