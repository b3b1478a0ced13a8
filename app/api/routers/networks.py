"""/v1/networks"""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from app.api.deps import ReadSession, SettingsDep, Tenant, WriteSession
from app.api.presenters import network_public, page, weights_public
from app.api.responses import errors, resource_links
from app.api.routers.common import DEFAULT, After, Cascade, Filters, Limit
from app.api.schemas import LabelsPatch, NetworkCreate, NetworkPublic, Page, WeightsPublic
from app.services import labels
from app.services import networks as service

router = APIRouter(prefix="/v1/networks", tags=["networks"])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=NetworkPublic,
    responses={
        201: {
            "links": resource_links(
                "network",
                {
                    "GetNetwork": "get_network_v1_networks__network_id__get",
                    "GetInitialWeights": "get_initial_weights_v1_networks__network_id__weights_get",
                    "DeleteNetwork": "delete_network_v1_networks__network_id__delete",
                },
            )
        },
        **errors(400, 401, 413, 422),
    },
)
def create_network(
    network_in: NetworkCreate,
    session: WriteSession,
    tenant: Tenant,
    settings: SettingsDep,
    response: Response,
) -> NetworkPublic:
    """Create a network from a layer spec (initialized from ``init``, or explicit ``weights``)."""
    network = service.create_network(
        session=session,
        owner=tenant,
        network_in=network_in,
        max_parameters=settings.max_network_parameters,
    )
    response.headers["Location"] = f"/v1/networks/{network.id}"
    return network_public(network)


@router.get("", response_model=Page[NetworkPublic], responses=errors(401, 422))
def list_networks(
    session: ReadSession,
    tenant: Tenant,
    filters: Filters,
    limit: Limit = DEFAULT,
    after: After = None,
) -> Page[NetworkPublic]:
    """List networks, newest first, optionally filtered by tags, name prefix and time."""
    result = service.list_networks(
        session=session, owner=tenant, limit=limit, after=after, filters=filters
    )
    return page(result, network_public)


@router.patch(
    "/{network_id}", response_model=NetworkPublic, responses=errors(400, 401, 404, 413, 422)
)
def patch_network(
    network_id: str, patch_in: LabelsPatch, session: WriteSession, tenant: Tenant
) -> NetworkPublic:
    """Rename, retag or replace the metadata of a network (only these fields)."""
    network = service.get_network(session=session, owner=tenant, network_id=network_id)
    return network_public(labels.patch(session=session, row=network, patch_in=patch_in))


@router.get("/{network_id}", response_model=NetworkPublic, responses=errors(401, 404))
def get_network(network_id: str, session: ReadSession, tenant: Tenant) -> NetworkPublic:
    """One network."""
    return network_public(service.get_network(session=session, owner=tenant, network_id=network_id))


@router.get("/{network_id}/weights", response_model=WeightsPublic, responses=errors(401, 404))
def get_initial_weights(network_id: str, session: ReadSession, tenant: Tenant) -> WeightsPublic:
    """The network's initial weights (epoch 0)."""
    layers = service.get_initial_weights(session=session, owner=tenant, network_id=network_id)
    return weights_public(0, layers)


@router.delete(
    "/{network_id}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(401, 404, 409)
)
def delete_network(
    network_id: str, session: WriteSession, tenant: Tenant, cascade: Cascade = False
) -> Response:
    """Delete a network. 409 with their count while runs use it, unless
    ``?cascade=true``, which deletes those runs too (their history, checkpoints and
    weights); 409 even then while one of them is queued, running or paused."""
    service.delete_network(session=session, owner=tenant, network_id=network_id, cascade=cascade)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
