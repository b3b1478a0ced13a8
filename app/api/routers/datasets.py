"""/v1/datasets"""

from __future__ import annotations

from dataclasses import replace
from pathlib import PurePath
from typing import Annotated, Literal

from fastapi import (
    APIRouter,
    BackgroundTasks,
    File,
    Form,
    Query,
    Request,
    Response,
    UploadFile,
    status,
)
from starlette.concurrency import run_in_threadpool

from app.api.deps import ReadSession, SettingsDep, Tenant, WriteSession
from app.api.json_out import array_json, object_json, streamed_response
from app.api.openapi_bodies import json_body
from app.api.presenters import dataset_public, page
from app.api.request_files import parse_body
from app.api.responses import errors, resource_links
from app.api.routers.common import DEFAULT, After, Cascade, Filters, Limit
from app.api.schemas import (
    DatasetCreateBody,
    DatasetData,
    DatasetPublic,
    DatasetStats,
    LabelsPatch,
    Page,
)
from app.config import Settings
from app.datasets.bodies import DatasetLabels, read_dataset_body
from app.datasets.builtin import DATASET_EXAMPLES
from app.datasets.files import read_dataset_file
from app.datasets.options import finish
from app.datasets.parsing import ParsedDataset, check_cells, packed, parse_csv
from app.datasets.stats import dataset_stats
from app.errors import InvalidInputError
from app.memory import release_freed_memory
from app.services import datasets as service
from app.services import labels

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])

DATASET_LINKS = resource_links(
    "dataset",
    {
        "GetDataset": "get_dataset_v1_datasets__dataset_id__get",
        "GetDatasetData": "get_dataset_data_v1_datasets__dataset_id__data_get",
        "DeleteDataset": "delete_dataset_v1_datasets__dataset_id__delete",
    },
)


def _store(
    session: WriteSession,
    reads: ReadSession,
    owner: str,
    given: DatasetLabels,
    parsed: ParsedDataset,
    storage_quota: int,
) -> DatasetPublic:
    return dataset_public(
        service.create_dataset(
            session=session,
            read_session=reads,
            owner=owner,
            name=given.name,
            parsed=parsed,
            storage_quota=storage_quota,
            tags=given.tags,
            metadata=given.metadata,
        )
    )


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=DatasetPublic,
    responses={201: {"links": DATASET_LINKS}, **errors(400, 401, 413, 422, 507)},
    openapi_extra=json_body(DatasetCreateBody, DATASET_EXAMPLES),
)
async def create_dataset(
    request: Request,
    reads: ReadSession,
    session: WriteSession,
    tenant: Tenant,
    settings: SettingsDep,
    response: Response,
    background: BackgroundTasks,
) -> DatasetPublic:
    """Upload a dataset as JSON: ``X`` rows and ``y`` (2-D, 1-D numbers or 1-D labels),
    or create a built-in one: ``{"builtin": "xor" | "and" | "or" | "moons" | "circles" |
    "spirals" | "iris" | "digits"}`` (moons, circles and spirals take ``n_samples``,
    ``noise`` and ``seed``; ``y`` is integer class labels).

    The body is read as a stream, in a worker thread: the numbers go straight into
    arrays, and a body with more than ``BACKPROP_MAX_DATASET_CELLS`` values is refused
    as soon as the limit is crossed."""
    background.add_task(release_freed_memory)  # after the answer, also after a refusal
    given, parsed = await parse_body(request, read_dataset_body, settings.max_dataset_cells)
    dataset = await run_in_threadpool(
        _store, session, reads, tenant, given, parsed, settings.storage_quota_bytes
    )
    response.headers["Location"] = f"/v1/datasets/{dataset.id}"
    return dataset


TargetForm = Annotated[
    str, Form(description="Target column name(s), comma-separated, e.g. `y` or `y1,y2`.")
]
NameForm = Annotated[str | None, Form(max_length=200)]
StandardizeForm = Annotated[
    bool,
    Form(
        description="Scale every numeric feature to mean 0, std 1 over these rows; predict "
        "applies the same scaling (and the one-hot encoding) to raw rows."
    ),
]
MissingForm = Annotated[
    Literal["error", "drop", "mean", "most_frequent"],
    Form(
        description="Empty cells: `error` (422 naming line and column), `drop` the row, or "
        "fill features with the column's `mean` (numeric) / `most_frequent` value."
    ),
]


def _store_upload(
    reads: ReadSession,
    session: WriteSession,
    tenant: str,
    settings: Settings,
    response: Response,
    parsed: ParsedDataset,
    standardize: bool,
    name: str | None,
    filename: str | None,
) -> DatasetPublic:
    finished = finish(parsed, standardize=standardize)
    if finished.blob is None or finished.X is not parsed.X:
        # Not read straight into its container (.npy is; standardize scales it in place).
        finished = packed(replace(finished, blob=None))
    else:
        finished.X.setflags(write=False)
        finished.y.setflags(write=False)
    del parsed
    check_cells(finished, settings.max_dataset_cells)
    stem = PurePath(filename or "dataset").name.split(".")[0]
    dataset_name = name or stem or "dataset"
    if len(dataset_name) > 200:
        raise InvalidInputError(("body", "name"), "at most 200 characters")
    given = DatasetLabels(dataset_name)
    dataset = _store(session, reads, tenant, given, finished, settings.storage_quota_bytes)
    response.headers["Location"] = f"/v1/datasets/{dataset.id}"
    return dataset


@router.post(
    "/csv",
    status_code=status.HTTP_201_CREATED,
    response_model=DatasetPublic,
    responses={201: {"links": DATASET_LINKS}, **errors(400, 401, 413, 422, 507)},
)
def upload_csv(
    reads: ReadSession,
    session: WriteSession,
    tenant: Tenant,
    settings: SettingsDep,
    response: Response,
    background: BackgroundTasks,
    file: Annotated[UploadFile, File(description="CSV with a header row.")],
    target: TargetForm,
    name: NameForm = None,
    standardize: StandardizeForm = False,
    missing: MissingForm = "error",
) -> DatasetPublic:
    """Upload a dataset as a CSV file; every non-target column is a feature.

    A column of text is categorical: a feature is one-hot encoded (`column=value`), a
    target becomes class labels with `classes`."""
    background.add_task(release_freed_memory)
    content = file.file.read()
    parsed = parse_csv(content, target.split(","), settings.max_dataset_cells, missing)
    del content
    return _store_upload(
        reads, session, tenant, settings, response, parsed, standardize, name, file.filename
    )


@router.post(
    "/file",
    status_code=status.HTTP_201_CREATED,
    response_model=DatasetPublic,
    responses={201: {"links": DATASET_LINKS}, **errors(400, 401, 413, 422, 507)},
)
def upload_file(
    reads: ReadSession,
    session: WriteSession,
    tenant: Tenant,
    settings: SettingsDep,
    response: Response,
    background: BackgroundTasks,
    file: Annotated[
        UploadFile,
        File(
            description="`.npy` (2-D; target = column indices), `.npz` (arrays X and y), "
            "`.parquet`, `.arrow`/`.feather` (columns by name), `.csv` or `.csv.gz`; "
            "the format comes from the file name."
        ),
    ],
    target: Annotated[
        str | None,
        Form(
            description="Target column(s), comma-separated: names, or indices for .npy; "
            "not used for .npz."
        ),
    ] = None,
    name: NameForm = None,
    standardize: StandardizeForm = False,
    missing: MissingForm = "error",
) -> DatasetPublic:
    """Upload a dataset file in a binary or compressed format, parsed straight into
    arrays (NumPy files are read with `allow_pickle=False`; object arrays are refused
    from their header, before any data is read)."""
    background.add_task(release_freed_memory)
    parsed = read_dataset_file(
        file.file,
        file.filename,
        target=target,
        max_cells=settings.max_dataset_cells,
        max_bytes=settings.max_body_bytes,
        missing=missing,
    )
    return _store_upload(
        reads, session, tenant, settings, response, parsed, standardize, name, file.filename
    )


@router.get("", response_model=Page[DatasetPublic], responses=errors(401, 422))
def list_datasets(
    session: ReadSession,
    tenant: Tenant,
    filters: Filters,
    limit: Limit = DEFAULT,
    after: After = None,
) -> Page[DatasetPublic]:
    """List datasets, newest first, optionally filtered by tags, name prefix and time."""
    result = service.list_datasets(
        session=session, owner=tenant, limit=limit, after=after, filters=filters
    )
    return page(result, dataset_public)


@router.patch(
    "/{dataset_id}", response_model=DatasetPublic, responses=errors(400, 401, 404, 413, 422)
)
def patch_dataset(
    dataset_id: str, patch_in: LabelsPatch, session: WriteSession, tenant: Tenant
) -> DatasetPublic:
    """Rename, retag or replace the metadata of a dataset (only these fields)."""
    dataset = service.get_dataset(session=session, owner=tenant, dataset_id=dataset_id)
    return dataset_public(labels.patch(session=session, row=dataset, patch_in=patch_in))


@router.get("/{dataset_id}", response_model=DatasetPublic, responses=errors(401, 404))
def get_dataset(dataset_id: str, session: ReadSession, tenant: Tenant) -> DatasetPublic:
    """One dataset's metadata."""
    return dataset_public(service.get_dataset(session=session, owner=tenant, dataset_id=dataset_id))


MAX_DATA_LIMIT = 50_000
"""Rows a ``GET /data`` page may have."""
HAS_MORE = {
    "X-Has-More": {"description": "true when rows follow this page", "schema": {"type": "string"}},
    "X-Total-Count": {"description": "rows in the dataset", "schema": {"type": "integer"}},
}


@router.get(
    "/{dataset_id}/data",
    response_model=DatasetData,
    responses={200: {"headers": HAS_MORE}, **errors(401, 404, 422)},
)
def get_dataset_data(
    dataset_id: str,
    session: ReadSession,
    tenant: Tenant,
    offset: Annotated[int, Query(ge=0, description="First row of the page.")] = 0,
    limit: Annotated[
        int, Query(ge=1, le=MAX_DATA_LIMIT, description=f"Rows, at most {MAX_DATA_LIMIT}.")
    ] = 100,
) -> Response:
    """One page of the dataset's ``X`` and ``y`` as stored (encoded, standardized),
    ``limit`` rows from ``offset``; ``X-Has-More`` says whether rows follow and
    ``X-Total-Count`` how many there are. A large page is streamed, row by row."""
    dataset = service.get_dataset(session=session, owner=tenant, dataset_id=dataset_id)
    X, y = service.load_arrays(session=session, dataset_id=dataset_id)
    session.close()  # nothing more to read: the connection goes back before streaming
    page_X, page_y = X[offset : offset + limit], y[offset : offset + limit]
    response = streamed_response(
        object_json([("X", array_json(page_X)), ("y", array_json(page_y))])
    )
    response.headers["X-Has-More"] = "true" if offset + limit < dataset.n_samples else "false"
    response.headers["X-Total-Count"] = str(dataset.n_samples)
    return response


@router.get("/{dataset_id}/stats", response_model=DatasetStats, responses=errors(401, 404, 422))
def get_dataset_stats(dataset_id: str, session: ReadSession, tenant: Tenant) -> DatasetStats:
    """Per column (features, then targets) of the stored arrays: count, missing (0: empty
    cells were refused, dropped or imputed at upload), min, max, mean and std
    (population); class counts for a labels target (by class name when it has them)."""
    dataset = service.get_dataset(session=session, owner=tenant, dataset_id=dataset_id)
    X, y = service.load_arrays(session=session, dataset_id=dataset_id)
    session.close()
    return dataset_stats(dataset_public(dataset), X, y)


@router.delete(
    "/{dataset_id}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(401, 404, 409)
)
def delete_dataset(
    dataset_id: str, session: WriteSession, tenant: Tenant, cascade: Cascade = False
) -> Response:
    """Delete a dataset. 409 with their count while runs train or validate on it,
    unless ``?cascade=true``, which deletes those runs too; 409 even then while one
    of them is queued, running or paused."""
    service.delete_dataset(session=session, owner=tenant, dataset_id=dataset_id, cascade=cascade)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
