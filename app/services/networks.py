"""Networks: create from a spec (or explicit weights), read, list, delete."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, col, select

import engine
from app.arrays import decode_weights, encode_weights
from app.errors import ConflictError, InvalidInputError, NotFoundError
from app.ids import new_id
from app.lifecycle import UNFINISHED
from app.models import Network, NetworkArrays, Run, utcnow
from app.schemas import NetworkCreate
from app.services.errors import invalid_from_config_error
from app.services.pagination import PageResult, paginate


def spec_from_request(network_in: NetworkCreate) -> dict[str, Any]:
    """Build the engine spec dict from a request body (name excluded)."""
    spec: dict[str, Any] = {
        "input_size": network_in.input_size,
        "layers": [layer.model_dump() for layer in network_in.layers],
    }
    if network_in.init is not None:
        spec["init"] = network_in.init.model_dump(exclude_none=True)
    if network_in.weights is not None:
        spec["weights"] = [layer.model_dump() for layer in network_in.weights]
    return spec


def count_parameters(network_in: NetworkCreate) -> int:
    """Weights and biases of the network ``network_in`` describes."""
    fan_in = network_in.input_size
    total = 0
    for layer in network_in.layers:
        total += fan_in * layer.units + (layer.units if layer.bias else 0)
        fan_in = layer.units
    return total


def _check_size(network_in: NetworkCreate, max_parameters: int) -> None:
    total = count_parameters(network_in)
    if total > max_parameters:
        raise InvalidInputError(
            ("body", "layers"),
            f"the network has {total} parameters; at most {max_parameters} "
            "(BACKPROP_MAX_NETWORK_PARAMETERS)",
        )


def build_network(spec: dict[str, Any]) -> engine.Network:
    """Build an engine network from a stored spec."""
    return engine.Network.from_spec(spec)


def create_network(
    *, session: Session, owner: str, network_in: NetworkCreate, max_parameters: int
) -> Network:
    """Validate ``network_in`` with the engine and store it with its initial weights.

    Raises
    ------
    InvalidInputError
        When the network is larger than ``max_parameters``, or the engine rejects
        the spec or the explicit weights.
    """
    _check_size(network_in, max_parameters)
    try:
        net = engine.Network.from_spec(spec_from_request(network_in))
    except engine.ConfigError as exc:
        raise invalid_from_config_error(exc) from exc
    spec = dict(net.spec)
    spec.pop("weights", None)
    network = Network(
        id=new_id("network"),
        owner=owner,
        name=network_in.name,
        spec=spec,
        input_size=net.input_size,
        output_size=net.output_size,
        n_parameters=net.n_parameters,
        created_at=utcnow(),
    )
    session.add(network)
    session.add(NetworkArrays(network_id=network.id, weights=encode_weights(net.get_weights())))
    session.commit()
    return network


def get_network(*, session: Session, owner: str, network_id: str) -> Network:
    """Return ``owner``'s network or raise :class:`NotFoundError` (also for another tenant's)."""
    network = session.get(Network, network_id)
    if network is None or network.owner != owner:
        raise NotFoundError("network", network_id)
    return network


def list_networks(
    *, session: Session, owner: str, limit: int, after: str | None
) -> PageResult[Network]:
    """Return one page of ``owner``'s networks, newest first."""
    statement = select(Network).where(Network.owner == owner)
    return paginate(
        session=session, statement=statement, id_column=Network.id, limit=limit, after=after
    )


def get_initial_weights(*, session: Session, owner: str, network_id: str) -> list[dict[str, Any]]:
    """Return the network's initial weights as engine arrays."""
    get_network(session=session, owner=owner, network_id=network_id)
    arrays = session.get(NetworkArrays, network_id)
    if arrays is None:  # pragma: no cover - written with the network
        raise NotFoundError("network weights", network_id)
    return decode_weights(arrays.weights)


def delete_network(*, session: Session, owner: str, network_id: str) -> None:
    """Delete a network with its runs, history and checkpoints.

    Raises
    ------
    ConflictError
        While one of its runs is queued or running.
    """
    network = get_network(session=session, owner=owner, network_id=network_id)
    active = session.exec(
        select(Run.id).where(Run.network_id == network_id, col(Run.status).in_(UNFINISHED))
    ).first()
    if active is not None:
        raise ConflictError(
            f"network {network_id!r} is used by run {active!r}, which is queued or running; "
            "cancel it first"
        )
    session.delete(network)
    session.commit()
