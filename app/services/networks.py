"""Networks: create from a spec (or explicit weights), read, list, delete."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete
from sqlmodel import Session, col, select

import engine
from app.api.schemas import NetworkCreate
from app.datasets.arrays import decode_weights, encode_weights
from app.db.blob_io import insert_blob
from app.db.ids import new_id
from app.db.models import Network, NetworkArrays, Run, utcnow
from app.errors import ConflictError, InvalidInputError, NotFoundError, invalid_from_config_error
from app.services import labels
from app.services.deletes import count_runs, refuse_unless_cascade
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
    *,
    session: Session,
    owner: str,
    network_in: NetworkCreate,
    max_parameters: int,
    commit: bool = True,
) -> Network:
    """Validate ``network_in`` with the engine and store it with its initial weights
    (``commit=False``: added and flushed only, for a caller's larger transaction).

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
        tags=list(network_in.tags),
        meta=dict(network_in.metadata),
    )
    session.add(network)
    labels.add_tags(session, network, network_in.tags)
    session.flush()  # the network row first (the foreign key)
    weights = encode_weights(net.get_weights())
    insert_blob(session, NetworkArrays, {"network_id": network.id}, "weights", weights)
    if commit:
        session.commit()
    else:
        session.flush()
    return network


def get_network(*, session: Session, owner: str, network_id: str) -> Network:
    """Return ``owner``'s network or raise :class:`NotFoundError` (also for another tenant's)."""
    network = session.get(Network, network_id)
    if network is None or network.owner != owner:
        raise NotFoundError("network", network_id)
    return network


def list_networks(
    *,
    session: Session,
    owner: str,
    limit: int,
    after: str | None,
    filters: labels.ListFilters | None = None,
) -> PageResult[Network]:
    """Return one page of ``owner``'s networks, newest first, optionally filtered."""
    statement = select(Network).where(Network.owner == owner)
    statement = labels.filtered(statement, Network, owner, filters or labels.ListFilters())
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


def delete_network(*, session: Session, owner: str, network_id: str, cascade: bool = False) -> int:
    """Delete a network; with ``cascade``, also its runs (history, checkpoints, weights).

    The network's row is locked first (PostgreSQL), so a run created at the same time
    either is counted or fails to find the network. Returns the number of runs deleted.

    Raises
    ------
    ConflictError
        See :func:`app.services.deletes.refuse_unless_cascade`.
    """
    network = get_network(session=session, owner=owner, network_id=network_id)
    session.refresh(network, with_for_update=True)
    using = count_runs(session, Run.network_id == network_id)
    try:
        refuse_unless_cascade(f"network {network_id!r}", using, cascade)
    except ConflictError:
        session.rollback()
        raise
    session.exec(delete(Run).where(col(Run.network_id) == network_id))
    session.delete(network)
    session.commit()
    return using.total
