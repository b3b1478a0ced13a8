"""/v1/sweeps"""

from __future__ import annotations

from fastapi import APIRouter, Response, status
from sqlmodel import Session

from app.api.deps import ExecutorDep, ReadSession, SettingsDep, Tenant, WriteSession
from app.api.presenters import sweep_public
from app.api.responses import errors, resource_links
from app.api.routers.common import DEFAULT, After, Filters, Limit
from app.api.schemas import Page
from app.api.sweep_schemas import SweepCreate, SweepPublic, SweepStatus
from app.db.models import Sweep
from app.services import sweep_trials
from app.services import sweeps as service
from app.services.runs import RunLimits

router = APIRouter(prefix="/v1/sweeps", tags=["sweeps"])


def _public(session: Session, sweep: Sweep) -> SweepPublic:
    trials = sweep_trials.trials_of(
        sweep, service.trial_runs(session, sweep.id), service.rungs(session, sweep.id)
    )
    return sweep_public(sweep, trials)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=SweepPublic,
    responses={
        201: {
            "links": resource_links(
                "sweep",
                {
                    "GetSweep": "get_sweep_v1_sweeps__sweep_id__get",
                    "CancelSweep": "cancel_sweep_v1_sweeps__sweep_id__cancel_post",
                },
            )
        },
        **errors(400, 401, 404, 413, 422),
    },
)
def create_sweep(
    sweep_in: SweepCreate,
    session: WriteSession,
    tenant: Tenant,
    settings: SettingsDep,
    response: Response,
    executor: ExecutorDep,
) -> SweepPublic:
    """Start a hyperparameter sweep; its trials are runs that the server queues itself,
    at most ``parallelism`` unfinished at once. Everything is validated first."""
    sweep = service.create_sweep(
        session=session,
        owner=tenant,
        sweep_in=sweep_in,
        limits=RunLimits.from_settings(settings),
        max_network_parameters=settings.max_network_parameters,
    )
    response.headers["Location"] = f"/v1/sweeps/{sweep.id}"
    executor.drive_sweeps()  # its first trials are queued now, not at the next round
    return _public(session, sweep)


@router.get("", response_model=Page[SweepPublic], responses=errors(401, 422))
def list_sweeps(
    session: ReadSession,
    tenant: Tenant,
    filters: Filters,
    limit: Limit = DEFAULT,
    after: After = None,
    status: SweepStatus | None = None,
) -> Page[SweepPublic]:
    """List sweeps, newest first, optionally filtered by status, tags, name prefix and time."""
    result = service.list_sweeps(
        session=session, owner=tenant, limit=limit, after=after, status=status, filters=filters
    )
    return Page(
        data=[_public(session, sweep) for sweep in result.data],
        has_more=result.has_more,
        next_after=result.next_after,
    )


@router.get("/{sweep_id}", response_model=SweepPublic, responses=errors(401, 404))
def get_sweep(sweep_id: str, session: ReadSession, tenant: Tenant) -> SweepPublic:
    """One sweep with its trials and best trial."""
    return _public(session, service.get_sweep(session=session, owner=tenant, sweep_id=sweep_id))


@router.post("/{sweep_id}/cancel", response_model=SweepPublic, responses=errors(401, 404))
def cancel_sweep(sweep_id: str, session: WriteSession, tenant: Tenant) -> SweepPublic:
    """Cancel a sweep and its unfinished trials (idempotent; a finished sweep is returned
    unchanged)."""
    sweep = service.cancel_sweep(session=session, owner=tenant, sweep_id=sweep_id)
    return _public(session, sweep)
