"""/v1/networks"""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from app.deps import ReadSession, WriteSession
from app.presenters import network_public, page, weights_public
from app.routers.common import DEFAULT, After, Limit
from app.schemas import NetworkCreate, NetworkPublic, Page, WeightsPublic
from app.services import networks as service

router = APIRouter(prefix="/v1/networks", tags=["networks"])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=NetworkPublic)
def create_network(
    network_in: NetworkCreate, session: WriteSession, response: Response
) -> NetworkPublic:
    """Create a network from a layer spec (initialized from ``init``, or explicit ``weights``)."""
    network = service.create_network(session=session, network_in=network_in)
    response.headers["Location"] = f"/v1/networks/{network.id}"
    return network_public(network)


@router.get("", response_model=Page[NetworkPublic])
def list_networks(
    session: ReadSession, limit: Limit = DEFAULT, after: After = None
) -> Page[NetworkPublic]:
    """List networks, newest first."""
    return page(service.list_networks(session=session, limit=limit, after=after), network_public)


@router.get("/{network_id}", response_model=NetworkPublic)
def get_network(network_id: str, session: ReadSession) -> NetworkPublic:
    """One network."""
    return network_public(service.get_network(session=session, network_id=network_id))


@router.get("/{network_id}/weights", response_model=WeightsPublic)
def get_initial_weights(network_id: str, session: ReadSession) -> WeightsPublic:
    """The network's initial weights (epoch 0)."""
    return weights_public(0, service.get_initial_weights(session=session, network_id=network_id))


@router.delete("/{network_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_network(network_id: str, session: WriteSession) -> Response:
    """Delete a network and its runs (409 while one of them is queued or running)."""
    service.delete_network(session=session, network_id=network_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
