"""The JSON body of ``POST /v1/datasets``, read as a stream (:mod:`app.json_arrays`).

``X`` and ``y`` go straight into arrays, refused as soon as together they cross
``BACKPROP_MAX_DATASET_CELLS``; the small fields (``name``, or ``builtin`` and its
parameters) are validated by :class:`app.schemas.DatasetCreateBody`, as before.
"""

from __future__ import annotations

from typing import BinaryIO

from app.builtin_datasets import dataset_from_body
from app.dataset_options import finish
from app.json_arrays import ArraySpec, CellBudget, parse_object, refuse_early, validate_fields
from app.schemas import DatasetCreate, DatasetCreateBody
from app.services.dataset_parsing import (
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


def read_dataset_body(file: BinaryIO, max_cells: int) -> tuple[str, ParsedDataset]:
    """The name and validated arrays of a ``POST /v1/datasets`` body, in either form.

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
        return form.name, packed(finished)
    name, parsed = dataset_from_body(model)
    check_cells(parsed, max_cells)
    return name, finish(parsed)
