"""Which weights and data an evaluate request means (the database reads of evaluate)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from numpy.typing import NDArray
from sqlmodel import Session

import engine
from app.api.schemas import NetworkEvaluateRequest, RunEvaluateRequest
from app.errors import InvalidInputError
from app.evaluation.scoring import fit_config
from app.services import datasets as dataset_service
from app.services import networks as network_service
from app.services import runs as run_service
from engine.data import suggest_loss


@dataclass(frozen=True)
class Weights:
    """A network with the weights to evaluate, and what they are."""

    net: engine.Network
    network_id: str
    epoch: int
    config: engine.FitConfig
    run_id: str | None = None
    checkpoint_id: str | None = None


def _network(session: Session, owner: str, network_id: str) -> engine.Network:
    network = network_service.get_network(session=session, owner=owner, network_id=network_id)
    return network_service.build_network(network.spec)


def run_weights(*, session: Session, owner: str, run_id: str, body: RunEvaluateRequest) -> Weights:
    """The run's weights (``GET /weights``'s, or the checkpoint's) and its loss settings.

    Raises
    ------
    NotFoundError
        Unknown run or checkpoint (or another tenant's).
    InvalidInputError
        A checkpoint of another run.
    ConflictError
        The run has no weights yet.
    """
    run = run_service.get_run(session=session, owner=owner, run_id=run_id)
    if body.checkpoint_id is not None:
        checkpoint, layers = run_service.get_checkpoint(
            session=session, owner=owner, checkpoint_id=body.checkpoint_id
        )
        if checkpoint.run_id != run_id:
            raise InvalidInputError(
                ("body", "checkpoint_id"),
                f"checkpoint {body.checkpoint_id!r} belongs to run {checkpoint.run_id!r}, "
                f"not {run_id!r}",
            )
        epoch = checkpoint.epoch
    else:
        epoch, layers = run_service.get_weights(session=session, owner=owner, run_id=run_id)
    net = _network(session, owner, run.network_id)
    net.set_weights(layers)
    return Weights(
        net=net,
        network_id=run.network_id,
        epoch=epoch,
        config=fit_config(run.config),
        run_id=run_id,
        checkpoint_id=body.checkpoint_id,
    )


def network_weights(
    *, session: Session, owner: str, network_id: str, body: NetworkEvaluateRequest
) -> Weights:
    """The network's initial weights and the body's loss (or the one its output suggests)."""
    net = _network(session, owner, network_id)
    net.set_weights(
        network_service.get_initial_weights(session=session, owner=owner, network_id=network_id)
    )
    loss = body.loss or suggest_loss(net.output_activation)
    settings: dict[str, Any] = {"loss": loss, "reduction": body.reduction}
    if body.loss_options is not None:
        settings["loss_options"] = body.loss_options.model_dump(exclude_none=True)
    config = fit_config(settings)
    try:
        engine.check_compatible(net, config)
    except engine.ConfigError as exc:
        raise InvalidInputError(("body", *exc.loc), exc.reason) from exc
    return Weights(net=net, network_id=network_id, epoch=0, config=config)


def stored_data(
    *, session: Session, owner: str, dataset_id: str
) -> tuple[NDArray[Any], NDArray[Any]]:
    """``X`` and ``y`` of ``owner``'s dataset (404 otherwise)."""
    dataset_service.get_dataset(session=session, owner=owner, dataset_id=dataset_id)
    return dataset_service.load_arrays(session=session, dataset_id=dataset_id)
