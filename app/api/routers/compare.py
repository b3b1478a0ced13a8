"""GET /v1/runs/compare and GET /v1/plots/compare.png (runs side by side).

Included before the runs router, so that ``/v1/runs/compare`` is not read as a run id.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from fastapi.concurrency import run_in_threadpool

from app.api.deps import ReadSession, Tenant
from app.api.responses import errors
from app.api.routers.plots import Height, Width
from app.api.schemas import RunComparison
from app.plots import render as plots
from app.services import compare as service

router = APIRouter(tags=["runs"])

Ids = Annotated[
    list[str],
    Query(
        max_length=service.MAX_COMPARED,
        description=f"Run ids, comma-separated and/or repeated (1 to {service.MAX_COMPARED}).",
    ),
]


@router.get("/v1/runs/compare", response_model=RunComparison, responses=errors(401, 404, 422))
def compare_runs(session: ReadSession, tenant: Tenant, ids: Ids) -> dict[str, Any]:
    """Runs side by side: every config field (dotted paths, the network's layers as
    ``network.layers.<i>.<field>``) with each run's value and ``differs`` marked, the
    list of differing fields, and each run's final and best results (the best epoch's
    recorded loss, val_loss and metrics when that epoch is in the history)."""
    run_ids = service.parse_ids(ids, ("query", "ids"))
    return service.compare(session=session, owner=tenant, run_ids=run_ids)


@router.get(
    "/v1/plots/compare.png",
    response_class=Response,
    responses={
        200: {
            "description": "A PNG image of the requested size.",
            "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
        },
        **errors(401, 404, 409, 422),
    },
    summary="Overlay one column of several runs (PNG)",
)
async def compare_plot(
    session: ReadSession,
    tenant: Tenant,
    runs: Ids,
    metric: Annotated[
        str, Query(max_length=64, description="loss, val_loss, a metric or val_<metric>.")
    ] = "val_loss",
    width: Width = plots.DEFAULT_WIDTH,
    height: Height = plots.DEFAULT_HEIGHT,
    log: Annotated[bool, Query(description="Logarithmic y axis.")] = False,
) -> Response:
    """The runs' recorded ``metric`` against the epoch, one line each, labeled with the
    run's name and id (each history downsampled to at most 2000 points). Runs that did
    not record it are left out; 422 when none did, 409 when none recorded an epoch."""
    run_ids = service.parse_ids(runs, ("query", "runs"))
    found = await run_in_threadpool(
        service.curves,
        session=session,
        owner=tenant,
        run_ids=run_ids,
        metric=metric,
        max_points=plots.MAX_LOSS_POINTS,
    )
    png = await plots.render(
        plots.render_compare, found, metric=metric, width=width, height=height, log=log
    )
    return Response(content=png, media_type="image/png")
