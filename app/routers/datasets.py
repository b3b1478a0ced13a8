"""/v1/datasets"""

from __future__ import annotations

from pathlib import PurePath
from typing import Annotated

from fastapi import APIRouter, Body, File, Form, Response, UploadFile, status

from app.arrays import array_to_json
from app.builtin_datasets import DATASET_EXAMPLES, dataset_from_body
from app.deps import ReadSession, SettingsDep, Tenant, WriteSession
from app.errors import InvalidInputError
from app.presenters import dataset_public, page
from app.responses import errors, resource_links
from app.routers.common import DEFAULT, After, Limit
from app.schemas import DatasetCreateBody, DatasetData, DatasetPublic, Page
from app.services import datasets as service
from app.services.dataset_parsing import check_cells, parse_csv

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])

DATASET_LINKS = resource_links(
    "dataset",
    {
        "GetDataset": "get_dataset_v1_datasets__dataset_id__get",
        "GetDatasetData": "get_dataset_data_v1_datasets__dataset_id__data_get",
        "DeleteDataset": "delete_dataset_v1_datasets__dataset_id__delete",
    },
)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=DatasetPublic,
    responses={201: {"links": DATASET_LINKS}, **errors(400, 401, 413, 422)},
)
def create_dataset(
    dataset_in: Annotated[DatasetCreateBody, Body(openapi_examples=DATASET_EXAMPLES)],
    session: WriteSession,
    tenant: Tenant,
    settings: SettingsDep,
    response: Response,
) -> DatasetPublic:
    """Upload a dataset as JSON: ``X`` rows and ``y`` (2-D, 1-D numbers or 1-D labels),
    or create a built-in one: ``{"builtin": "xor" | "and" | "or" | "moons" | "circles" |
    "spirals" | "iris" | "digits"}`` (moons, circles and spirals take ``n_samples``,
    ``noise`` and ``seed``; ``y`` is integer class labels)."""
    name, parsed = dataset_from_body(dataset_in)
    check_cells(parsed, settings.max_dataset_cells)
    dataset = service.create_dataset(session=session, owner=tenant, name=name, parsed=parsed)
    response.headers["Location"] = f"/v1/datasets/{dataset.id}"
    return dataset_public(dataset)


@router.post(
    "/csv",
    status_code=status.HTTP_201_CREATED,
    response_model=DatasetPublic,
    responses={201: {"links": DATASET_LINKS}, **errors(400, 401, 413, 422)},
)
def upload_csv(
    session: WriteSession,
    tenant: Tenant,
    settings: SettingsDep,
    response: Response,
    file: Annotated[UploadFile, File(description="CSV with a header row.")],
    target: Annotated[
        str, Form(description="Target column name(s), comma-separated, e.g. `y` or `y1,y2`.")
    ],
    name: Annotated[str | None, Form(max_length=200)] = None,
) -> DatasetPublic:
    """Upload a dataset as a CSV file; every non-target column is a feature."""
    content = file.file.read()
    parsed = parse_csv(content, target.split(","), settings.max_dataset_cells)
    check_cells(parsed, settings.max_dataset_cells)
    dataset_name = name or PurePath(file.filename or "dataset.csv").stem or "dataset"
    if len(dataset_name) > 200:
        raise InvalidInputError(("body", "name"), "at most 200 characters")
    dataset = service.create_dataset(
        session=session, owner=tenant, name=dataset_name, parsed=parsed
    )
    response.headers["Location"] = f"/v1/datasets/{dataset.id}"
    return dataset_public(dataset)


@router.get("", response_model=Page[DatasetPublic], responses=errors(401, 422))
def list_datasets(
    session: ReadSession, tenant: Tenant, limit: Limit = DEFAULT, after: After = None
) -> Page[DatasetPublic]:
    """List datasets, newest first."""
    result = service.list_datasets(session=session, owner=tenant, limit=limit, after=after)
    return page(result, dataset_public)


@router.get("/{dataset_id}", response_model=DatasetPublic, responses=errors(401, 404))
def get_dataset(dataset_id: str, session: ReadSession, tenant: Tenant) -> DatasetPublic:
    """One dataset's metadata."""
    return dataset_public(service.get_dataset(session=session, owner=tenant, dataset_id=dataset_id))


@router.get("/{dataset_id}/data", response_model=DatasetData, responses=errors(401, 404))
def get_dataset_data(dataset_id: str, session: ReadSession, tenant: Tenant) -> DatasetData:
    """The dataset's ``X`` and ``y``."""
    service.get_dataset(session=session, owner=tenant, dataset_id=dataset_id)
    X, y = service.load_arrays(session=session, dataset_id=dataset_id)
    return DatasetData(X=array_to_json(X), y=array_to_json(y))


@router.delete(
    "/{dataset_id}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(401, 404, 409)
)
def delete_dataset(dataset_id: str, session: WriteSession, tenant: Tenant) -> Response:
    """Delete a dataset (409 while a queued or running run uses it)."""
    service.delete_dataset(session=session, owner=tenant, dataset_id=dataset_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
