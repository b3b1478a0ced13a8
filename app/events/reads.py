"""The database reads of the event stream: each one short session, run in a thread.

The history reads decode one chunk at a time and keep only the rows they return, so
their memory is bounded by a chunk (one batched write of a worker), not by the run's
history, which a run that records every epoch makes millions of points long.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlmodel import col, func, select

from app.datasets.arrays import array_to_json
from app.db.database import Database
from app.db.models import Run, RunHistoryChunk
from app.services import history as history_service
from engine import serialization

TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
CHUNKS_PER_FETCH = 4
"""History chunks fetched from the database at a time (a server-side cursor on PostgreSQL)."""


@dataclass(frozen=True)
class RunSnapshot:
    """The run row's fields the stream reports."""

    status: str
    epoch: int
    stop_reason: str | None
    error: dict[str, Any] | None

    @property
    def terminal(self) -> bool:
        """Succeeded, failed or cancelled: nothing more will be recorded."""
        return self.status in TERMINAL

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "status": self.status,
            "epoch": self.epoch,
            "stop_reason": self.stop_reason,
            "error": self.error,
        }


def _snapshot(row: Any) -> RunSnapshot:
    error = dict(row[3]) if row[3] is not None else None
    return RunSnapshot(status=row[0], epoch=int(row[1]), stop_reason=row[2], error=error)


def read_snapshot(db: Database, run_id: str) -> RunSnapshot | None:
    """The run's row now (None when it was deleted)."""
    with db.reading() as session:
        row = session.exec(
            select(Run.status, Run.epoch, Run.stop_reason, Run.error).where(Run.id == run_id)
        ).first()
    return None if row is None else _snapshot(row)


def read_start(db: Database, run_id: str) -> tuple[RunSnapshot | None, int]:
    """The run and its last recorded epoch (where a feed starts)."""
    with db.reading() as session:
        row = session.exec(
            select(Run.status, Run.epoch, Run.stop_reason, Run.error).where(Run.id == run_id)
        ).first()
        last = session.exec(
            select(func.max(col(RunHistoryChunk.last_epoch))).where(
                RunHistoryChunk.run_id == run_id
            )
        ).one()
    return (None if row is None else _snapshot(row)), int(last or 0)


def _columns(parts: list[dict[str, NDArray[Any]]]) -> dict[str, list[Any]]:
    """Equal-length columns from decoded chunk slices (NaN, sent as null, where a chunk
    lacks a metric), as :func:`app.services.history.read_history` returns them."""
    names = list(history_service.BASE_COLUMNS)
    for part in parts:
        names.extend(name for name in part if name not in names)
    columns: dict[str, list[Any]] = {}
    for name in names:
        values = [
            part[name] if name in part else np.full(part["epoch"].shape, np.nan) for part in parts
        ]
        columns[name] = array_to_json(np.concatenate(values)) if values else []
    return columns


def read_after(db: Database, run_id: str, after: int, limit: int | None) -> dict[str, list[Any]]:
    """The recorded epochs after ``after`` (the first ``limit`` of them), as columns.

    Chunks are decoded one at a time and the reading stops at ``limit``: a page costs
    the chunks it spans, not the whole history after ``after``.
    """
    statement = (
        select(RunHistoryChunk.data)
        .where(RunHistoryChunk.run_id == run_id, col(RunHistoryChunk.last_epoch) > after)
        .order_by(col(RunHistoryChunk.first_epoch))
        .execution_options(yield_per=CHUNKS_PER_FETCH)
    )
    parts: list[dict[str, NDArray[Any]]] = []
    count = 0
    with db.reading() as session:
        for data in session.exec(statement):
            arrays = serialization.decode_arrays(data)
            keep = np.flatnonzero(arrays["epoch"] > after)
            if limit is not None:
                keep = keep[: limit - count]
            parts.append({name: values[keep] for name, values in arrays.items()})
            count += int(keep.size)
            if limit is not None and count >= limit:
                break
    return _columns(parts)


def read_sample(db: Database, run_id: str, max_points: int) -> tuple[dict[str, list[Any]], int]:
    """At most ``max_points`` evenly spaced recorded epochs (with the last), and how many
    epochs are recorded in all.

    The chunks' sizes are read first; only the chunks that hold a chosen point are
    decoded, one at a time: the memory is a chunk and the sample, whatever the history.
    """
    with db.reading() as session:
        sizes = session.exec(
            select(RunHistoryChunk.first_epoch, RunHistoryChunk.n_points)
            .where(RunHistoryChunk.run_id == run_id)
            .order_by(col(RunHistoryChunk.first_epoch))
        ).all()
        starts = np.cumsum([0] + [int(n) for _, n in sizes])
        total = int(starts[-1])
        wanted = history_service.downsample_indices(total, max_points)
        in_chunk = np.searchsorted(starts, wanted, side="right") - 1
        firsts = [int(sizes[k][0]) for k in np.unique(in_chunk)]
        statement = (
            select(RunHistoryChunk.first_epoch, RunHistoryChunk.data)
            .where(RunHistoryChunk.run_id == run_id, col(RunHistoryChunk.first_epoch).in_(firsts))
            .order_by(col(RunHistoryChunk.first_epoch))
            .execution_options(yield_per=CHUNKS_PER_FETCH)
        )
        position = {first: k for k, (first, _) in enumerate(sizes)}
        parts: list[dict[str, NDArray[Any]]] = []
        for first, data in session.exec(statement):
            k = position[int(first)]
            arrays = serialization.decode_arrays(data)
            rows = wanted[in_chunk == k] - starts[k]
            rows = rows[rows < arrays["epoch"].size]  # a chunk truncated meanwhile
            parts.append({name: values[rows] for name, values in arrays.items()})
    return _columns(parts), total
