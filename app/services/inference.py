"""Predictions of a run's network, in the engine's row blocks, written as they come.

The network runs in the blocks of :meth:`engine.Network.predict_blocks`: at most
``engine.network.PREDICT_BLOCK_BYTES`` (4 MiB) of the widest layer's activations,
one row for wider layers. Each block's outputs are written as JSON in pieces of whole
rows (:mod:`app.api.json_out`), blocks of a few rows gathered to ~32K values first;
so a request holds a few blocks and one piece, whatever the number of rows or the
network's width.

Bit for bit: the blocks are the ones ``engine.Network.predict`` runs, so the outputs
are its bits. Products of other heights could round differently: BLAS picks its
kernels by the shape of the product (docs/DECISIONS.md).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np
from numpy.typing import NDArray
from sqlmodel import Session

import engine
from app.api.json_out import CHUNK_CELLS, api_dumps, array_json, object_json
from app.api.schemas import PredictRequest
from app.datasets.json_arrays import ArraySpec, parse_object, refuse_early, validate_fields
from app.datasets.transforms import labels_of
from app.errors import InvalidInputError, NotFoundError, invalid_from_config_error
from app.services import networks as network_service
from app.services import runs as run_service


def predict_spec(max_rows: int) -> ArraySpec:
    """How ``X`` of a predict body is read: rows only, refused past ``max_rows``."""
    return ArraySpec(
        what="feature",
        max_rows=max_rows,
        rows_message="more than {max_rows} rows; at most {max_rows} per request "
        "(BACKPROP_MAX_PREDICT_ROWS)",
        placeholder=[[0.0]],
    )


def read_predict_body(file: BinaryIO, max_rows: int) -> NDArray[np.float64]:
    """``X`` of a ``POST /v1/runs/{id}/predict`` body, shape (n_samples, n_features).

    Raises
    ------
    InvalidInputError
        Ragged rows, entries that are not finite numbers, no rows, or more than
        ``max_rows`` rows (refused as soon as the row after the limit starts).
    fastapi.exceptions.RequestValidationError
        Unknown or missing fields, as :class:`app.api.schemas.PredictRequest` reports them.
    """
    specs = {"X": predict_spec(max_rows)}
    refuse_early(file, specs)
    body = parse_object(file, specs)
    validate_fields(PredictRequest, body, specs)
    X = body.arrays["X"]
    if X.rows == 0:
        raise InvalidInputError(("body", "X"), "must contain at least one row")
    return X.values


def read_raw_predict_body(file: BinaryIO, max_rows: int) -> list[Any]:
    """``X`` of a predict body whose rows may hold category names (a run on a dataset
    with categorical columns), as lists; the body size is bounded by the body limit.

    Raises
    ------
    InvalidInputError
        A body that is not a JSON object with a list of rows ``X``, no rows, or more
        than ``max_rows`` rows.
    """
    try:
        body = json.load(file, parse_constant=_refuse_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInputError(("body",), f"not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidInputError(("body",), "must be a JSON object with X")
    unknown = sorted(set(body) - {"X"})
    if unknown:
        raise InvalidInputError(("body", unknown[0]), "extra fields are not permitted")
    rows = body.get("X")
    if not isinstance(rows, list):
        raise InvalidInputError(("body", "X"), "must be a list of rows")
    if not rows:
        raise InvalidInputError(("body", "X"), "must contain at least one row")
    if len(rows) > max_rows:
        raise InvalidInputError(
            ("body", "X"),
            f"more than {max_rows} rows; at most {max_rows} per request "
            "(BACKPROP_MAX_PREDICT_ROWS)",
        )
    return rows


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a finite number")


def run_transform(*, session: Session, owner: str, run_id: str) -> dict[str, Any] | None:
    """The transform of ``owner``'s run, None when it has none or is unknown (the
    predict call that follows reports the unknown run)."""
    try:
        return run_service.get_run(session=session, owner=owner, run_id=run_id).transform
    except NotFoundError:
        return None


@dataclass(frozen=True)
class Predictor:
    """A run's network with the weights ``GET /v1/runs/{id}/weights`` returns."""

    epoch: int
    network: engine.Network
    transform: dict[str, Any] | None = None
    """The run's input transform (:mod:`app.datasets.transforms`)."""
    classify: bool = False
    """Whether the run trains with ``cross_entropy`` on named classes (predictions
    carry ``labels``)."""


def load_predictor(*, session: Session, owner: str, run_id: str) -> Predictor:
    """The run's network and weights.

    Raises
    ------
    NotFoundError
        Unknown run (or another tenant's).
    ConflictError
        When the run has no weights yet.
    """
    run = run_service.get_run(session=session, owner=owner, run_id=run_id)
    epoch, layers = run_service.get_weights(session=session, owner=owner, run_id=run_id)
    network = network_service.get_network(session=session, owner=owner, network_id=run.network_id)
    net = network_service.build_network(network.spec)
    net.set_weights(layers)
    return Predictor(
        epoch=epoch,
        network=net,
        transform=run.transform,
        classify=run.config.get("loss") == "cross_entropy"
        and bool(run.transform and run.transform.get("classes")),
    )


def checked_input(net: engine.Network, X: NDArray[Any]) -> NDArray[Any]:
    """``X`` as the network takes it.

    Raises
    ------
    InvalidInputError
        When the rows are not the network's input width (at ``["body", "X"]``).
    """
    try:
        return net.check_input(X)
    except engine.ConfigError as exc:
        raise invalid_from_config_error(exc) from exc


def output_blocks(net: engine.Network, X: NDArray[Any]) -> Iterator[NDArray[Any]]:
    """``net.predict(X)`` for checked ``X``, one engine block of rows at a time."""
    for _, A in net.predict_blocks(X):
        yield A


def reduced_outputs(
    net: engine.Network, X: NDArray[Any], reduce: Callable[[NDArray[Any]], NDArray[Any]]
) -> NDArray[Any]:
    """``reduce`` applied to the outputs of each block, concatenated (plots keep one
    value per row, never the full outputs of a wide network)."""
    parts = [reduce(block) for block in output_blocks(net, X)]
    return np.concatenate(parts) if parts else np.zeros(0)


def prediction_json(predictor: Predictor, X: NDArray[Any]) -> Iterator[bytes]:
    """The ``PredictResponse`` JSON of ``X`` (checked with :func:`checked_input`),
    computed and written one block at a time."""
    net = predictor.network
    labels: list[Any] = []

    def predictions() -> Iterator[bytes]:
        yield b"["
        for index, outputs in enumerate(gathered(output_blocks(net, X), CHUNK_CELLS)):
            if index:
                yield b","
            yield from list_items(array_json(np.asarray(outputs, dtype=np.float64)))
            if predictor.classify:
                labels.extend(labels_of(predictor.transform or {}, outputs))
        yield b"]"

    members: list[tuple[str, bytes | Iterator[bytes]]] = [
        ("epoch", api_dumps(predictor.epoch)),
        ("predictions", predictions()),
    ]
    if predictor.classify:

        def labels_json() -> Iterator[bytes]:
            yield api_dumps(labels)  # filled while the predictions were written

        members.append(("labels", labels_json()))
    return object_json(members)


def gathered(blocks: Iterator[NDArray[Any]], cells: int) -> Iterator[NDArray[Any]]:
    """Consecutive ``blocks`` joined into arrays of at least ``cells`` values (the last
    may have fewer): a wide network's blocks of a few rows are written as few pieces."""
    pending: list[NDArray[Any]] = []
    size = 0
    for block in blocks:
        pending.append(block)
        size += block.size
        if size >= cells:
            yield pending[0] if len(pending) == 1 else np.concatenate(pending)
            pending, size = [], 0
    if pending:
        yield pending[0] if len(pending) == 1 else np.concatenate(pending)


def list_items(pieces: Iterator[bytes]) -> Iterator[bytes]:
    """The pieces of a JSON list (as :func:`app.api.json_out.array_json` writes it)
    without its opening and closing brackets."""
    previous = next(pieces)[1:]
    for piece in pieces:
        if previous:
            yield previous
        previous = piece
    if previous[:-1]:
        yield previous[:-1]
