"""Runs side by side: their configs (differing fields marked), outcomes and curves."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlmodel import Session

from app.datasets.arrays import finite_or_none
from app.db.models import Run
from app.errors import ConflictError, InvalidInputError
from app.services import history as history_service
from app.services import networks as network_service
from app.services import runs as run_service

MAX_COMPARED = 20
COLUMN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


def parse_ids(values: list[str], loc: tuple[str, ...]) -> list[str]:
    """Run ids from repeated and/or comma-separated query values: 1..20, distinct."""
    ids = [part.strip() for value in values for part in value.split(",") if part.strip()]
    if not ids:
        raise InvalidInputError(loc, "give at least one run id")
    if len(ids) > MAX_COMPARED:
        raise InvalidInputError(loc, f"{len(ids)} runs; at most {MAX_COMPARED} at once")
    repeated = sorted({run_id for run_id in ids if ids.count(run_id) > 1})
    if repeated:
        raise InvalidInputError(loc, f"run ids must be distinct; repeated: {', '.join(repeated)}")
    if any(len(run_id) > 64 for run_id in ids):
        raise InvalidInputError(loc, "a run id has at most 64 characters")
    return ids


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as dotted paths (``optimizer.learning_rate``); lists are kept whole,
    except lists of dicts (``layers.0.units``)."""
    if isinstance(value, dict):
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat.update(flatten(item, f"{prefix}{key}."))
        return flat
    if isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
        flat = {}
        for index, item in enumerate(value):
            flat.update(flatten(item, f"{prefix}{index}."))
        return flat
    return {prefix[:-1]: value}


def _best(session: Session, run: Run) -> dict[str, Any]:
    """The best epoch and what was recorded at it (loss, val_loss, metrics)."""
    best: dict[str, Any] = {"epoch": run.best_epoch, "best_loss": finite_or_none(run.best_loss)}
    if run.best_epoch is None:
        return best
    row = history_service.read_history(
        session=session, run_id=run.id, after_epoch=run.best_epoch - 1, limit=1
    )
    if row["epoch"] and row["epoch"][0] == run.best_epoch:
        best.update({key: values[0] for key, values in row.items() if key != "epoch"})
    return best


def compare(*, session: Session, owner: str, run_ids: list[str]) -> dict[str, Any]:
    """The ``GET /v1/runs/compare`` document (404 for any unknown run)."""
    runs = [run_service.get_run(session=session, owner=owner, run_id=run_id) for run_id in run_ids]
    specs: dict[str, dict[str, Any]] = {}
    for run in runs:
        if run.network_id not in specs:
            network = network_service.get_network(
                session=session, owner=owner, network_id=run.network_id
            )
            specs[run.network_id] = {"layers": network.spec.get("layers", [])}
    flats = [{**flatten(run.config), **flatten(specs[run.network_id], "network.")} for run in runs]
    keys = sorted({key for flat in flats for key in flat})
    fields = []
    for key in keys:
        values = [flat.get(key) for flat in flats]
        fields.append(
            {"field": key, "values": values, "differs": any(v != values[0] for v in values)}
        )
    return {
        "runs": [
            {
                "id": run.id,
                "name": run.name,
                "tags": list(run.tags or []),
                "status": run.status,
                "network_id": run.network_id,
                "dataset_id": run.dataset_id,
                "epoch": run.epoch,
                "final": {
                    "epoch": run.epoch,
                    "loss": finite_or_none(run.loss),
                    "val_loss": finite_or_none(run.val_loss),
                    "metrics": {k: finite_or_none(v) for k, v in (run.metrics or {}).items()},
                },
                "best": _best(session, run),
            }
            for run in runs
        ],
        "fields": fields,
        "differing": [field["field"] for field in fields if field["differs"]],
    }


@dataclass(frozen=True)
class Curve:
    """One run's recorded values of a column."""

    label: str
    epoch: NDArray[np.int64]
    values: NDArray[np.float64]


def curves(
    *, session: Session, owner: str, run_ids: list[str], metric: str, max_points: int
) -> list[Curve]:
    """Each run's ``metric`` column (``loss``, ``val_loss``, a metric, ``val_<metric>``).

    Raises
    ------
    InvalidInputError
        A bad column name, or one no run recorded (naming the columns they have).
    ConflictError
        None of the runs has recorded an epoch yet.
    """
    if not COLUMN_NAME.match(metric):
        raise InvalidInputError(("query", "metric"), "a column name such as val_loss or accuracy")
    runs = [run_service.get_run(session=session, owner=owner, run_id=run_id) for run_id in run_ids]
    found: list[Curve] = []
    columns: set[str] = set()
    for run in runs:
        history = history_service.read_history(
            session=session, run_id=run.id, max_points=max_points
        )
        if not history["epoch"]:
            continue
        columns.update(key for key in history if key != "epoch")
        values = history.get(metric)
        if values is None:
            continue
        numbers = np.asarray([np.nan if v is None else v for v in values], np.float64)
        if not np.isfinite(numbers).any():
            continue
        label = f"{run.name} ({run.id})" if run.name else run.id
        found.append(Curve(label, np.asarray(history["epoch"], np.int64), numbers))
    if not columns:
        raise ConflictError("none of these runs has recorded an epoch yet")
    if not found:
        raise InvalidInputError(
            ("query", "metric"),
            f"no run recorded {metric!r}; recorded: {', '.join(sorted(columns))}",
        )
    return found
