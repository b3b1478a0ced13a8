"""What the export and plot endpoints read: a run's trained model, loss curve and data.

Every read goes through the run, network, dataset and history services, so the
same ownership checks and 404/409 rules apply as for ``GET /v1/runs/{id}/weights``.
The results are plain arrays: building files and rendering images happens
outside the database session (:mod:`app.exports.formats`, :mod:`app.plots.render`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlmodel import Session

from app.errors import ConflictError, InvalidInputError
from app.services import datasets as dataset_service
from app.services import history as history_service
from app.services import networks as network_service
from app.services import runs as run_service


@dataclass(frozen=True)
class TrainedModel:
    """A run's current weights with everything needed to rebuild its network.

    ``layers`` are the arrays ``GET /v1/runs/{id}/weights`` serves:
    ``[{"weights": (fan_in, units), "bias": (units,) | None}, ...]`` in the
    run's ``dtype``.
    """

    run_id: str
    network_id: str
    epoch: int
    dtype: str
    spec: dict[str, Any]
    layers: list[dict[str, Any]]
    transform: dict[str, Any] | None = None
    """The run's input transform (:mod:`app.datasets.transforms`), None = identity."""
    restored_best: bool = False
    """The weights are the best epoch's, restored at the end (``restore_best``)."""


@dataclass(frozen=True)
class LossCurve:
    """A run's recorded loss history (float arrays, NaN where nothing was recorded)."""

    run_id: str
    status: str
    epoch: NDArray[np.int64]
    loss: NDArray[np.float64]
    val_loss: NDArray[np.float64]
    best_epoch: int | None = None


@dataclass(frozen=True)
class BoundaryData:
    """A run's model and the 2-feature data it trains on."""

    model: TrainedModel
    dataset_id: str
    X: NDArray[Any]
    y: NDArray[Any]


def trained_model(*, session: Session, owner: str, run_id: str) -> TrainedModel:
    """Return the run's weights (final, else latest checkpoint) and network spec.

    Raises
    ------
    NotFoundError
        Unknown run (or another tenant's).
    ConflictError
        When the run has no weights yet.
    """
    run = run_service.get_run(session=session, owner=owner, run_id=run_id)
    epoch, layers = run_service.get_weights(session=session, owner=owner, run_id=run_id)
    network = network_service.get_network(session=session, owner=owner, network_id=run.network_id)
    return TrainedModel(
        run_id=run.id,
        network_id=network.id,
        epoch=epoch,
        dtype=str(run.config.get("dtype") or "float64"),
        spec=dict(network.spec),
        layers=layers,
        transform=run.transform,
        restored_best=run.best_epoch == epoch != run.epoch,
    )


def _floats(values: list[Any]) -> NDArray[np.float64]:
    return np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)


def loss_curve(*, session: Session, owner: str, run_id: str, max_points: int) -> LossCurve:
    """Return the run's ``loss`` and ``val_loss`` history, evenly downsampled to ``max_points``.

    Raises
    ------
    NotFoundError
        Unknown run (or another tenant's).
    ConflictError
        When no epoch has been recorded yet.
    """
    run = run_service.get_run(session=session, owner=owner, run_id=run_id)
    columns = history_service.read_history(session=session, run_id=run_id, max_points=max_points)
    if not columns["epoch"]:
        raise ConflictError(f"run {run_id!r} ({run.status}) has no history yet: no epoch recorded")
    return LossCurve(
        run_id=run.id,
        status=run.status,
        epoch=np.asarray(columns["epoch"], dtype=np.int64),
        loss=_floats(columns["loss"]),
        val_loss=_floats(columns["val_loss"]),
        best_epoch=run.best_epoch,
    )


def boundary_data(*, session: Session, owner: str, run_id: str) -> BoundaryData:
    """Return the run's model and training data for a decision-boundary plot.

    Raises
    ------
    NotFoundError
        Unknown run (or another tenant's).
    InvalidInputError
        When the run's dataset does not have exactly 2 features (checked first:
        waiting does not change it).
    ConflictError
        When the run has no weights yet, or its dataset was deleted.
    """
    run = run_service.get_run(session=session, owner=owner, run_id=run_id)
    if run.dataset_id is None:
        raise ConflictError(f"run {run_id!r}: its dataset was deleted, nothing to plot over")
    dataset = dataset_service.get_dataset(session=session, owner=owner, dataset_id=run.dataset_id)
    if dataset.n_features != 2:
        raise InvalidInputError(
            ("path", "run_id"),
            f"the decision boundary is drawn over 2 features; dataset {dataset.id!r} of run "
            f"{run_id!r} has {dataset.n_features}",
        )
    model = trained_model(session=session, owner=owner, run_id=run_id)
    X, y = dataset_service.load_arrays(session=session, dataset_id=dataset.id)
    return BoundaryData(model=model, dataset_id=dataset.id, X=X, y=y)
