"""The JSON body of ``POST /v1/datasets``, read as a stream (:mod:`app.datasets.json_arrays`).

``X`` and ``y`` go straight into arrays, refused as soon as together they cross
``BACKPROP_MAX_DATASET_CELLS``; the small fields (``name``, or ``builtin`` and its
parameters) are validated by :class:`app.api.schemas.DatasetCreateBody`, as before.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, BinaryIO

from app.api.schemas import DatasetCreate, DatasetCreateBody
from app.datasets.builtin import dataset_from_body
from app.datasets.json_arrays import (
    ArraySpec,
    CellBudget,
    parse_object,
    refuse_early,
    validate_fields,
)
from app.datasets.options import finish
from app.datasets.parsing import (
    ParsedDataset,
    check_cells,
    dataset_from_arrays,
    packed,
)

DATASET_ARRAYS = {
    "X": ArraySpec(what="feature"),
    "y": ArraySpec(one_d=True, what="target"),
}
CELLS_MESSAGE = (
    "the dataset has more than {max_cells} values in X and y; at most {max_cells} "
    "(BACKPROP_MAX_DATASET_CELLS)"
)


@dataclass(frozen=True)
class DatasetLabels:
    """The name, tags and metadata a dataset is created with."""

    name: str
    tags: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)


def read_dataset_body(file: BinaryIO, max_cells: int) -> tuple[DatasetLabels, ParsedDataset]:
    """The labels and validated arrays of a ``POST /v1/datasets`` body, in either form.

    Raises
    ------
    InvalidInputError
        Bad arrays (with their place in the body), or more than ``max_cells`` values.
    fastapi.exceptions.RequestValidationError
        Bad small fields, as the pydantic models report them.
    """
    budget = CellBudget(max_cells, CELLS_MESSAGE)
    refuse_early(file, DATASET_ARRAYS, budget)
    body = parse_object(file, DATASET_ARRAYS, budget)
    model = validate_fields(DatasetCreateBody, body, DATASET_ARRAYS)
    tags, metadata = list(model.root.tags), dict(model.root.metadata)
    if isinstance(model.root, DatasetCreate):
        form = model.root
        arrays = body.arrays
        del body  # the packed copy replaces the parser's buffers
        parsed = dataset_from_arrays(arrays.pop("X"), arrays.pop("y"))
        finished = finish(
            parsed,
            feature_names=form.feature_names,
            target_names=form.target_names,
            standardize=form.standardize,
        )
        del parsed
        return DatasetLabels(form.name, tags, metadata), packed(finished)
    name, parsed = dataset_from_body(model)
    check_cells(parsed, max_cells)
    return DatasetLabels(name, tags, metadata), finish(parsed)
