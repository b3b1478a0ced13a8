"""POST /v1/runs/{id}/evaluate and POST /v1/networks/{id}/evaluate"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from app.api.deps import DatabaseDep, SettingsDep, Tenant
from app.api.openapi_bodies import json_body
from app.api.request_files import parse_body
from app.api.responses import errors
from app.api.schemas import EvaluationPublic, NetworkEvaluateRequest, RunEvaluateRequest
from app.config import Settings
from app.db.database import Database
from app.evaluation.scoring import evaluate, read_evaluate_body
from app.services import evaluate_sources as sources

router = APIRouter(tags=["evaluate"])

EVALUATE_ERRORS = errors(400, 401, 404, 409, 413, 422)


def _answer(
    db: Database,
    settings: Settings,
    owner: str,
    body: Any,
    X: Any,
    y: Any,
    load: Any,
) -> EvaluationPublic:
    with db.read_session() as session:
        weights = load(session)
        if X is None:
            X, y = sources.stored_data(session=session, owner=owner, dataset_id=body.dataset_id)
    result = evaluate(
        net=weights.net,
        config=weights.config,
        X=X,
        y=y,
        dataset_id=body.dataset_id,
        max_bytes=settings.max_request_memory,
    )
    return EvaluationPublic.model_validate(
        {
            "network_id": weights.network_id,
            "run_id": weights.run_id,
            "checkpoint_id": weights.checkpoint_id,
            "dataset_id": body.dataset_id,
            "epoch": weights.epoch,
            "n_samples": result.n_samples,
            "loss_name": weights.config.loss,
            "loss": result.loss,
            "metrics": result.metrics,
            "confusion_matrix": result.confusion_matrix,
            "per_class": result.per_class,
        }
    )


@router.post(
    "/v1/runs/{run_id}/evaluate",
    response_model=EvaluationPublic,
    response_model_by_alias=True,
    responses=EVALUATE_ERRORS,
    openapi_extra=json_body(RunEvaluateRequest),
)
async def evaluate_run(
    run_id: str, request: Request, db: DatabaseDep, tenant: Tenant, settings: SettingsDep
) -> EvaluationPublic:
    """The loss (the run's, with its options and reduction) and metrics of the run's
    weights (``GET /weights``'s, or ``checkpoint_id``'s) on a stored dataset or on
    ``X`` and ``y``; for classification also the confusion matrix and per-class
    precision, recall and F1, for regression MAE, RMSE and R². Nothing is trained
    or stored. 409 when the run has no weights yet."""
    body, X, y = await parse_body(
        request, read_evaluate_body, RunEvaluateRequest, settings.max_predict_rows
    )

    def load(session: Any) -> sources.Weights:
        return sources.run_weights(session=session, owner=tenant, run_id=run_id, body=body)

    return await run_in_threadpool(_answer, db, settings, tenant, body, X, y, load)


@router.post(
    "/v1/networks/{network_id}/evaluate",
    response_model=EvaluationPublic,
    response_model_by_alias=True,
    responses=EVALUATE_ERRORS,
    openapi_extra=json_body(NetworkEvaluateRequest),
)
async def evaluate_network(
    network_id: str, request: Request, db: DatabaseDep, tenant: Tenant, settings: SettingsDep
) -> EvaluationPublic:
    """The loss and metrics of the network's initial weights (epoch 0) on a stored
    dataset or on ``X`` and ``y``, as for a run; the loss is the body's ``loss``
    (default: the one that fits the output activation). Nothing is trained or stored."""
    body, X, y = await parse_body(
        request, read_evaluate_body, NetworkEvaluateRequest, settings.max_predict_rows
    )

    def load(session: Any) -> sources.Weights:
        return sources.network_weights(
            session=session, owner=tenant, network_id=network_id, body=body
        )

    return await run_in_threadpool(_answer, db, settings, tenant, body, X, y, load)
