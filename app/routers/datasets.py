"""/v1/datasets"""

from __future__ import annotations

from pathlib import PurePath
from typing import Annotated

from fastapi import APIRouter, File, Form, Response, UploadFile, status

from app.arrays import array_to_json
from app.deps import ReadSession, SettingsDep, Tenant, WriteSession
from app.errors import InvalidInputError
from app.presenters import dataset_public, page
from app.routers.common import DEFAULT, After, Limit
from app.schemas import DatasetCreate, DatasetData, DatasetPublic, Page
from app.services import datasets as service
from app.services.dataset_parsing import check_cells, parse_csv, parse_json

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=DatasetPublic)
def create_dataset(
    dataset_in: DatasetCreate,
    session: WriteSession,
    tenant: Tenant,
    settings: SettingsDep,
    response: Response,
) -> DatasetPublic:
    """Upload a dataset as JSON: ``X`` rows and ``y`` (2-D, 1-D numbers or 1-D labels)."""
    parsed = parse_json(dataset_in.X, dataset_in.y)
    check_cells(parsed, settings.max_dataset_cells)
    dataset = service.create_dataset(
        session=session, owner=tenant, name=dataset_in.name, parsed=parsed
    )
    response.headers["Location"] = f"/v1/datasets/{dataset.id}"
    return dataset_public(dataset)


@router.post("/csv", status_code=status.HTTP_201_CREATED, response_model=DatasetPublic)
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


@router.get("", response_model=Page[DatasetPublic])
def list_datasets(
    session: ReadSession, tenant: Tenant, limit: Limit = DEFAULT, after: After = None
) -> Page[DatasetPublic]:
    """List datasets, newest first."""
    result = service.list_datasets(session=session, owner=tenant, limit=limit, after=after)
    return page(result, dataset_public)


@router.get("/{dataset_id}", response_model=DatasetPublic)
def get_dataset(dataset_id: str, session: ReadSession, tenant: Tenant) -> DatasetPublic:
    """One dataset's metadata."""
    return dataset_public(service.get_dataset(session=session, owner=tenant, dataset_id=dataset_id))


@router.get("/{dataset_id}/data", response_model=DatasetData)
def get_dataset_data(dataset_id: str, session: ReadSession, tenant: Tenant) -> DatasetData:
    """The dataset's ``X`` and ``y``."""
    service.get_dataset(session=session, owner=tenant, dataset_id=dataset_id)
    X, y = service.load_arrays(session=session, dataset_id=dataset_id)
    return DatasetData(X=array_to_json(X), y=array_to_json(y))


@router.delete("/{dataset_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_dataset(dataset_id: str, session: WriteSession, tenant: Tenant) -> Response:
    """Delete a dataset (409 while a queued or running run uses it)."""
    service.delete_dataset(session=session, owner=tenant, dataset_id=dataset_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
