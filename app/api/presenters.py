"""ORM rows to response models."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from app.api.json_out import Dumps, api_dumps, array_json, extend_object, model_dumps, object_json
from app.api.schemas import (
    CheckpointDetail,
    CheckpointPublic,
    DatasetPublic,
    NetworkPublic,
    NotificationAttempt,
    NotificationPublic,
    Page,
    RunError,
    RunPublic,
    WeightsPublic,
)
from app.api.sweep_schemas import SweepPublic, TrialPublic
from app.datasets.arrays import finite_or_none, weights_to_json
from app.datasets.transforms import default_feature_names, default_target_names
from app.db.models import Checkpoint, Dataset, Network, Run, RunNotification, Sweep
from app.services.pagination import PageResult
from app.services.sweep_trials import TrialView, best_of


def network_public(network: Network) -> NetworkPublic:
    """A network's response body."""
    spec = network.spec
    return NetworkPublic(
        id=network.id,
        name=network.name,
        input_size=network.input_size,
        output_size=network.output_size,
        layers=list(spec.get("layers", [])),
        init=dict(spec.get("init", {})),
        n_parameters=network.n_parameters,
        created_at=network.created_at,
        tags=list(network.tags or []),
        metadata=dict(network.meta or {}),
    )


def dataset_public(dataset: Dataset) -> DatasetPublic:
    """A dataset's response body."""
    fields = dataset.model_dump(exclude={"owner", "meta", "feature_names", "target_names"})
    return DatasetPublic.model_validate(
        {
            **fields,
            "metadata": dict(dataset.meta or {}),
            "feature_names": dataset.feature_names or default_feature_names(dataset.n_features),
            "target_names": dataset.target_names or default_target_names(dataset.n_targets),
        }
    )


def run_public(run: Run) -> RunPublic:
    """A run's response body."""
    return RunPublic(
        id=run.id,
        name=run.name,
        tags=list(run.tags or []),
        metadata=dict(run.meta or {}),
        sweep_id=run.sweep_id,
        status=run.status,
        network_id=run.network_id,
        dataset_id=run.dataset_id,
        config=run.config,
        epoch=run.epoch,
        epochs=run.epochs,
        loss=finite_or_none(run.loss),
        val_loss=finite_or_none(run.val_loss),
        best_loss=finite_or_none(run.best_loss),
        best_epoch=run.best_epoch,
        metrics={key: finite_or_none(value) for key, value in (run.metrics or {}).items()},
        stop_reason=run.stop_reason,
        error=RunError(**run.error) if run.error else None,
        cancel_requested=run.cancel_requested,
        pause_requested=run.pause_requested,
        attempts=run.attempts,
        created_at=run.created_at,
        started_at=run.started_at,
        finished_at=run.finished_at,
    )


def checkpoint_public(checkpoint: Checkpoint) -> CheckpointPublic:
    """A checkpoint's metadata."""
    return CheckpointPublic.model_validate(checkpoint, from_attributes=True)


def checkpoint_detail(checkpoint: Checkpoint, layers: list[dict[str, Any]]) -> CheckpointDetail:
    """A checkpoint with its weights."""
    return CheckpointDetail(
        **checkpoint_public(checkpoint).model_dump(), layers=weights_to_json(layers)
    )


def weights_public(epoch: int, layers: list[dict[str, Any]]) -> WeightsPublic:
    """Weights in the API shape."""
    return WeightsPublic(epoch=epoch, layers=weights_to_json(layers))


def layers_json(layers: list[dict[str, Any]], dumps: Dumps = api_dumps) -> Iterator[bytes]:
    """The JSON of :func:`app.datasets.arrays.weights_to_json` of ``layers``, row chunk by row chunk."""
    yield b"["
    for index, layer in enumerate(layers):
        if index:
            yield b","
        yield from object_json(
            [
                ("weights", array_json(layer["weights"], dumps)),
                ("bias", array_json(layer.get("bias"), dumps)),
            ],
            dumps,
        )
    yield b"]"


def weights_json(epoch: int, layers: list[dict[str, Any]]) -> Iterator[bytes]:
    """The JSON of :func:`weights_public`, written in pieces."""
    return object_json([("epoch", api_dumps(epoch)), ("layers", layers_json(layers))])


def checkpoint_detail_json(checkpoint: Checkpoint, layers: list[dict[str, Any]]) -> Iterator[bytes]:
    """The JSON of :func:`checkpoint_detail`, written in pieces."""
    head = model_dumps(checkpoint_public(checkpoint))
    return extend_object(head, [("layers", layers_json(layers))])


def page(result: PageResult[Any], convert: Any) -> Page[Any]:
    """A list response from a page of rows."""
    return Page(
        data=[convert(row) for row in result.data],
        has_more=result.has_more,
        next_after=result.next_after,
    )


def notification_public(row: RunNotification) -> NotificationPublic:
    """A webhook notification's response body."""
    return NotificationPublic(
        id=row.id,
        run_id=row.run_id,
        sweep_id=row.sweep_id,
        event=row.event,
        url=row.url,
        status=row.status,
        attempts=row.attempts,
        attempt_log=[NotificationAttempt(**attempt) for attempt in row.attempt_log],
        created_at=row.created_at,
        next_attempt_at=row.next_attempt_at if row.status == "pending" else None,
        delivered_at=row.delivered_at,
    )


def _trial_public(trial: TrialView) -> TrialPublic:
    return TrialPublic(
        number=trial.number,
        run_id=trial.run_id,
        parameters=trial.parameters,
        status=trial.status,
        objective=trial.objective,
        epoch=trial.epoch,
        rung=trial.rung,
    )


def sweep_public(sweep: Sweep, trials: list[TrialView]) -> SweepPublic:
    """A sweep's response body from its row and its trials."""
    spec = sweep.spec
    best = best_of(sweep, trials)
    return SweepPublic(
        id=sweep.id,
        status=sweep.status,
        name=sweep.name,
        tags=list(sweep.tags or []),
        metadata=dict(sweep.meta or {}),
        method=spec["method"],
        max_trials=int(spec["max_trials"]),
        parallelism=int(spec["parallelism"]),
        objective=dict(spec["objective"]),
        parameters=dict(spec["parameters"]),
        early_stopping=spec.get("early_stopping"),
        seed=int(spec["seed"]),
        network_id=sweep.network_id,
        dataset_id=sweep.dataset_id,
        created_at=sweep.created_at,
        updated_at=sweep.updated_at,
        trials=[_trial_public(trial) for trial in trials],
        best_trial=_trial_public(best) if best is not None else None,
        error=spec.get("error"),
        notify_url=spec.get("notify_url"),
    )
