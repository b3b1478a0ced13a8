"""/v1/runs"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response, status
from starlette.concurrency import run_in_threadpool

from app.api.deps import DatabaseDep, ExecutorDep, ReadSession, SettingsDep, Tenant, WriteSession
from app.api.json_out import streamed_response
from app.api.openapi_bodies import json_body
from app.api.presenters import checkpoint_public, page, run_public, weights_json
from app.api.request_files import parse_body
from app.api.responses import errors, run_links
from app.api.routers.common import DB_INT_MAX, DEFAULT, After, Filters, Limit
from app.api.schemas import (
    CheckpointPublic,
    LabelsPatch,
    Page,
    PredictRequest,
    PredictResponse,
    RunCreate,
    RunPublic,
    RunStatus,
    WeightsPublic,
)
from app.datasets.transforms import apply_transform, is_categorical
from app.db.database import Database
from app.errors import InvalidInputError
from app.services import history as history_service
from app.services import inference, labels
from app.services import runs as service
from app.services.run_order import SORT_DESCRIPTION, parse_sort

router = APIRouter(prefix="/v1/runs", tags=["runs"])

HISTORY_EXAMPLE = {"epoch": [1, 2, 3], "loss": [0.31, 0.29, 0.27], "val_loss": [None, None, None]}


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=RunPublic,
    responses={202: {"links": run_links()}, **errors(400, 401, 404, 413, 422, 429, 507)},
)
def create_run(
    run_in: RunCreate,
    reads: ReadSession,
    session: WriteSession,
    tenant: Tenant,
    settings: SettingsDep,
    executor: ExecutorDep,
    response: Response,
) -> RunPublic:
    """Queue a training run; everything is validated first, so a bad run is never stored.

    429 (with ``Retry-After``) when the tenant already has ``BACKPROP_MAX_ACTIVE_RUNS``
    queued or running runs; 507 when the most the run can store does not fit the
    tenant's ``BACKPROP_STORAGE_QUOTA_BYTES``.
    """
    run = service.create_run(
        session=session,
        read_session=reads,
        owner=tenant,
        run_in=run_in,
        limits=service.RunLimits.from_settings(settings),
    )
    executor.submit(run.id)
    response.headers["Location"] = f"/v1/runs/{run.id}"
    return run_public(run)


RunAfter = Annotated[
    str | None,
    Query(
        max_length=512,
        description="The next_after of the previous page (of a list with the same sort).",
    ),
]


@router.get("", response_model=Page[RunPublic], responses=errors(401, 422))
def list_runs(
    session: ReadSession,
    tenant: Tenant,
    filters: Filters,
    limit: Limit = DEFAULT,
    after: RunAfter = None,
    status: RunStatus | None = None,
    network_id: Annotated[str | None, Query(max_length=64)] = None,
    dataset_id: Annotated[str | None, Query(max_length=64)] = None,
    sweep_id: Annotated[str | None, Query(max_length=64)] = None,
    sort: Annotated[str, Query(max_length=80, description=SORT_DESCRIPTION)] = "-created_at",
) -> Page[RunPublic]:
    """List runs (newest first by default), optionally filtered and sorted; pages stay
    exact under every sort (keyset on the sort value and the id)."""
    result = service.list_runs(
        session=session,
        owner=tenant,
        limit=limit,
        after=after,
        status=status,
        network_id=network_id,
        dataset_id=dataset_id,
        sweep_id=sweep_id,
        filters=filters,
        order=parse_sort(sort),
    )
    return page(result, run_public)


def _read_run(db: Database, owner: str, run_id: str) -> RunPublic:
    with db.read_session() as session:
        return run_public(service.get_run(session=session, owner=owner, run_id=run_id))


@router.get("/{run_id}", response_model=RunPublic, responses=errors(401, 404))
async def get_run(run_id: str, db: DatabaseDep, tenant: Tenant) -> RunPublic:
    """One run: status, progress and outcome."""
    # The route clients poll: one worker-thread hop for the query (dependencies and
    # serialization stay on the event loop), so it stays fast while training saturates the CPU.
    return await run_in_threadpool(_read_run, db, tenant, run_id)


@router.patch("/{run_id}", response_model=RunPublic, responses=errors(400, 401, 404, 413, 422))
def patch_run(
    run_id: str, patch_in: LabelsPatch, session: WriteSession, tenant: Tenant
) -> RunPublic:
    """Rename, retag or replace the metadata of a run (only these fields; any state)."""
    run = service.get_run(session=session, owner=tenant, run_id=run_id)
    return run_public(labels.patch(session=session, row=run, patch_in=patch_in))


@router.delete("/{run_id}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(401, 404, 409))
def delete_run(
    run_id: str,
    session: WriteSession,
    tenant: Tenant,
    force: Annotated[
        bool, Query(description="Cancel a queued, running or paused run first, then delete it.")
    ] = False,
) -> Response:
    """Delete a run with its history, checkpoints and weights (its storage is freed).

    409 while it is queued, running or paused, unless ``?force=true``."""
    service.delete_run(session=session, owner=tenant, run_id=run_id, force=force)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/{run_id}/history",
    responses={
        200: {
            "content": {"application/json": {"example": HISTORY_EXAMPLE}},
            "headers": {
                "X-Has-More": {
                    "schema": {"type": "string", "enum": ["true", "false"]},
                    "description": "true when more points follow this page.",
                }
            },
        },
        **errors(401, 404, 422),
    },
)
def get_history(
    run_id: str,
    session: ReadSession,
    tenant: Tenant,
    settings: SettingsDep,
    response: Response,
    after_epoch: Annotated[
        int | None, Query(ge=0, le=DB_INT_MAX, description="Only later epochs.")
    ] = None,
    limit: Annotated[
        int | None,
        Query(ge=1, description="At most this many points (default and cap: the server's limit)."),
    ] = None,
    max_points: Annotated[
        int | None, Query(ge=1, description="Downsample evenly; the last point is kept.")
    ] = None,
) -> dict[str, list[Any]]:
    """Recorded epochs as equal-length columns: ``epoch``, ``loss``, ``val_loss``, metrics.

    One response holds at most ``BACKPROP_MAX_HISTORY_POINTS`` points: a larger
    ``limit`` or ``max_points`` is a 422. ``max_points`` downsamples the whole range
    (after ``after_epoch``, within ``limit``); without either, the first
    ``BACKPROP_MAX_HISTORY_POINTS`` points are returned. ``X-Has-More: true`` says
    that more follow: page on with ``after_epoch`` = the last epoch returned.
    """
    cap = settings.max_history_points
    for name, value in (("limit", limit), ("max_points", max_points)):
        if value is not None and value > cap:
            raise InvalidInputError(
                ("query", name), f"at most {cap} points per response (BACKPROP_MAX_HISTORY_POINTS)"
            )
    service.get_run(session=session, owner=tenant, run_id=run_id)
    # max_points bounds the response by itself (and downsamples the whole range);
    # otherwise the page is limit points, by default the cap.
    page_size = limit if limit is not None else (cap if max_points is None else None)
    if page_size is None:
        # Downsample the arrays before they become JSON lists (1,000,000 epochs -> 1,000).
        response.headers["X-Has-More"] = "false"
        return history_service.read_history(
            session=session, run_id=run_id, after_epoch=after_epoch, max_points=max_points
        )
    columns = history_service.read_history(
        session=session, run_id=run_id, after_epoch=after_epoch, limit=page_size + 1
    )
    has_more = page_size is not None and len(columns["epoch"]) > page_size
    if page_size is not None:
        columns = {name: values[:page_size] for name, values in columns.items()}
    if max_points is not None:
        index = history_service.downsample_indices(len(columns["epoch"]), max_points)
        columns = {name: [values[i] for i in index] for name, values in columns.items()}
    response.headers["X-Has-More"] = "true" if has_more else "false"
    return columns


@router.post("/{run_id}/cancel", response_model=RunPublic, responses=errors(401, 404))
def cancel_run(run_id: str, session: WriteSession, tenant: Tenant) -> RunPublic:
    """Cancel: a queued run at once, a running one at its next epoch boundary. Idempotent."""
    return run_public(service.cancel_run(session=session, owner=tenant, run_id=run_id))


@router.post("/{run_id}/pause", response_model=RunPublic, responses=errors(401, 404, 409))
def pause_run(run_id: str, session: WriteSession, tenant: Tenant) -> RunPublic:
    """Pause: a queued run at once (``paused``); a running one at its next epoch
    boundary, after an exact checkpoint (``pause_requested`` until then). Idempotent;
    409 for a finished run or one with a cancel pending. ``paused`` is not terminal:
    ``POST .../resume``."""
    return run_public(service.pause_run(session=session, owner=tenant, run_id=run_id))


@router.post("/{run_id}/resume", response_model=RunPublic, responses=errors(401, 404, 409, 429))
def resume_run(
    run_id: str,
    session: WriteSession,
    tenant: Tenant,
    settings: SettingsDep,
    executor: ExecutorDep,
) -> RunPublic:
    """Resume a paused run: ``queued`` again, then it continues from its pause
    checkpoint exactly (the final weights equal an uninterrupted run's); a pending
    pause is withdrawn. Idempotent; 409 for a finished run or one with a cancel
    pending; 429 (with ``Retry-After``, the run stays paused) when the
    tenant already has ``BACKPROP_MAX_ACTIVE_RUNS`` queued or running runs."""
    run, dispatch = service.resume_run(
        session=session, owner=tenant, run_id=run_id, max_active_runs=settings.max_active_runs
    )
    if dispatch:
        executor.submit(run.id)
    return run_public(run)


@router.get(
    "/{run_id}/checkpoints", response_model=Page[CheckpointPublic], responses=errors(401, 404, 422)
)
def list_checkpoints(
    run_id: str, session: ReadSession, tenant: Tenant, limit: Limit = DEFAULT, after: After = None
) -> Page[CheckpointPublic]:
    """The run's checkpoints, newest first."""
    result = service.list_checkpoints(
        session=session, owner=tenant, run_id=run_id, limit=limit, after=after
    )
    return page(result, checkpoint_public)


@router.get("/{run_id}/weights", response_model=WeightsPublic, responses=errors(401, 404, 409))
def get_weights(run_id: str, session: ReadSession, tenant: Tenant) -> Response:
    """Final weights of a finished run, else its latest checkpoint (409 if none);
    large weights are streamed, layer by layer and row by row."""
    epoch, layers = service.get_weights(session=session, owner=tenant, run_id=run_id)
    session.close()  # nothing more to read: the connection goes back before streaming
    return streamed_response(weights_json(epoch, layers))


def _prediction(session: ReadSession, owner: str, run_id: str, X: Any) -> Response:
    predictor = inference.load_predictor(session=session, owner=owner, run_id=run_id)
    session.close()
    if predictor.transform is not None:
        X = apply_transform(predictor.transform, X)
    parts = inference.prediction_json(predictor, inference.checked_input(predictor.network, X))
    del predictor, X  # the parts hold what they need; freed once written
    return streamed_response(parts)


@router.post(
    "/{run_id}/predict",
    response_model=PredictResponse,
    responses=errors(400, 401, 404, 409, 413, 422),
    openapi_extra=json_body(PredictRequest),
)
async def predict(
    run_id: str, request: Request, session: ReadSession, tenant: Tenant, settings: SettingsDep
) -> Response:
    """Outputs of the network with the weights ``GET /weights`` returns.

    The body is read as a stream in a worker thread (more than
    ``BACKPROP_MAX_PREDICT_ROWS`` rows are refused at once); the network runs in
    blocks of rows of at most 4 MiB of activations, and a large answer is streamed.

    A run on a dataset with a transform takes raw rows (category names for categorical
    columns, unscaled numbers) and applies it; a `cross_entropy` run's answer has
    `labels`, the predicted class of each row."""
    transform = await run_in_threadpool(
        inference.run_transform, session=session, owner=tenant, run_id=run_id
    )
    read = (
        inference.read_raw_predict_body
        if is_categorical(transform)
        else inference.read_predict_body
    )
    X = await parse_body(request, read, settings.max_predict_rows)
    return await run_in_threadpool(_prediction, session, tenant, run_id, X)
