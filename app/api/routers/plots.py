"""/v1/runs/{run_id}/plots: PNG images of a run (loss curve, decision boundary).

The routes are ``async``: the query is validated first (a bad size is a 422
before any database read), the database read runs in the request thread pool,
and the rendering in the plot pool of :mod:`app.plots.render`, so no thread waits on
another while a plot is drawn.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from fastapi.concurrency import run_in_threadpool

from app.api.deps import ReadSession, Tenant
from app.api.responses import errors
from app.plots import render as plots
from app.services import artifacts

router = APIRouter(prefix="/v1/runs", tags=["runs"])

Width = Annotated[
    int,
    Query(ge=plots.MIN_SIZE, le=plots.MAX_SIZE, description="Image width in pixels."),
]
Height = Annotated[
    int,
    Query(ge=plots.MIN_SIZE, le=plots.MAX_SIZE, description="Image height in pixels."),
]
_PNG = {"image/png": {"schema": {"type": "string", "format": "binary"}}}


def _responses(conflict: str, invalid: str) -> dict[int | str, dict[str, Any]]:
    documented = {
        200: {"description": "A PNG image of the requested size.", "content": _PNG},
        **errors(401, 404, 409, 422),
    }
    documented[409]["description"] = conflict
    documented[422]["description"] = invalid
    return documented


@router.get(
    "/{run_id}/plots/loss.png",
    response_class=Response,
    responses=_responses(
        "No epoch recorded yet.", f"width or height outside {plots.MIN_SIZE}..{plots.MAX_SIZE}."
    ),
    summary="Plot the loss history (PNG)",
)
async def loss_plot(
    run_id: str,
    session: ReadSession,
    tenant: Tenant,
    width: Width = plots.DEFAULT_WIDTH,
    height: Height = plots.DEFAULT_HEIGHT,
    log: Annotated[bool, Query(description="Logarithmic loss axis.")] = False,
) -> Response:
    """Training and validation loss against the epoch, from the recorded history
    (downsampled evenly to at most 2000 points, the last epoch kept)."""
    curve = await run_in_threadpool(
        artifacts.loss_curve,
        session=session,
        owner=tenant,
        run_id=run_id,
        max_points=plots.MAX_LOSS_POINTS,
    )
    png = await plots.render(plots.render_loss, curve, width=width, height=height, log=log)
    return Response(content=png, media_type="image/png")


@router.get(
    "/{run_id}/plots/decision-boundary.png",
    response_class=Response,
    responses=_responses(
        "The run has no weights yet, or its dataset was deleted.",
        "The run's dataset does not have 2 features, or width or height out of bounds.",
    ),
    summary="Plot the decision boundary over 2 features (PNG)",
)
async def decision_boundary_plot(
    run_id: str,
    session: ReadSession,
    tenant: Tenant,
    width: Width = plots.DEFAULT_WIDTH,
    height: Height = plots.DEFAULT_HEIGHT,
) -> Response:
    """The network's output over the plane of its 2-feature dataset, with the data
    points colored by target, like TensorFlow Playground.

    The weights are those of ``GET /v1/runs/{run_id}/weights`` (final, else the
    latest checkpoint). One output: a filled contour of its value (a sigmoid's
    probability on a 0..1 scale). Several outputs: the predicted class.
    """
    data = await run_in_threadpool(
        artifacts.boundary_data, session=session, owner=tenant, run_id=run_id
    )
    png = await plots.render(
        plots.render_decision_boundary,
        data,
        width=width,
        height=height,
    )
    return Response(content=png, media_type="image/png")
