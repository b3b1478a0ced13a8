"""Run history stored in chunks: one row per batched write.

A chunk holds equal-length columns for its recorded epochs: ``epoch`` (int64)
and float64 ``loss``, ``val_loss`` and metrics, with NaN for a missing value.
Reading decodes the chunks it needs and slices; a resumed run first truncates
everything after its checkpoint so that every epoch is stored exactly once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlmodel import Session, col, delete, select

from app.datasets.arrays import array_to_json
from app.db.models import RunHistoryChunk
from engine import serialization

BASE_COLUMNS = ("epoch", "loss", "val_loss")


def _as_float(values: Sequence[Any]) -> NDArray[np.float64]:
    return np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)


def make_chunk(run_id: str, columns: Mapping[str, Sequence[Any]]) -> RunHistoryChunk | None:
    """Build a chunk row from buffered columns, or None when nothing was recorded.

    Parameters
    ----------
    run_id : str
        The run.
    columns : mapping of str to sequence
        ``epoch`` (ints, ascending) and the logged values (floats or None).
    """
    epochs = np.asarray(columns["epoch"], dtype=np.int64)
    if epochs.size == 0:
        return None
    arrays: dict[str, NDArray[Any]] = {"epoch": epochs}
    for name, values in columns.items():
        if name != "epoch":
            arrays[name] = _as_float(values)
    return RunHistoryChunk(
        run_id=run_id,
        first_epoch=int(epochs[0]),
        last_epoch=int(epochs[-1]),
        n_points=int(epochs.size),
        data=serialization.encode_arrays(arrays),
    )


def _concat(chunks: Sequence[dict[str, NDArray[Any]]]) -> dict[str, NDArray[Any]]:
    names: list[str] = list(BASE_COLUMNS)
    for chunk in chunks:
        names.extend(name for name in chunk if name not in names)
    out: dict[str, NDArray[Any]] = {}
    for name in names:
        parts = [
            chunk[name] if name in chunk else np.full(chunk["epoch"].shape, np.nan)
            for chunk in chunks
        ]
        if parts:
            out[name] = np.concatenate(parts)
        else:
            out[name] = np.zeros(0, dtype=np.int64 if name == "epoch" else np.float64)
    return out


def downsample_indices(n: int, max_points: int) -> NDArray[np.intp]:
    """Indices of at most ``max_points`` evenly spaced points that keep the first and last."""
    if n <= max_points:
        return np.arange(n)
    if max_points == 1:
        return np.asarray([n - 1])
    return np.unique(np.linspace(0, n - 1, max_points).round().astype(np.intp))


def read_history(
    *,
    session: Session,
    run_id: str,
    after_epoch: int | None = None,
    limit: int | None = None,
    max_points: int | None = None,
) -> dict[str, list[Any]]:
    """Return the run's history as JSON-ready columns.

    Parameters
    ----------
    session : Session
        Open session.
    run_id : str
        The run (must exist).
    after_epoch : int, optional
        Only epochs greater than this.
    limit : int, optional
        At most this many points (the first ones after ``after_epoch``).
    max_points : int, optional
        Downsample evenly to at most this many points, always keeping the last.
    """
    statement = (
        select(RunHistoryChunk.data, RunHistoryChunk.n_points)
        .where(RunHistoryChunk.run_id == run_id)
        .order_by(col(RunHistoryChunk.first_epoch))
    )
    if after_epoch is not None:
        statement = statement.where(RunHistoryChunk.last_epoch > after_epoch)
    decoded: list[dict[str, NDArray[Any]]] = []
    count = 0
    for data, n_points in session.exec(statement):
        decoded.append(serialization.decode_arrays(data))
        count += n_points
        if limit is not None and after_epoch is None and count >= limit:
            break
    columns = _concat(decoded)
    keep = slice(None)
    if after_epoch is not None:
        start = int(np.searchsorted(columns["epoch"], after_epoch, side="right"))
        keep = slice(start, None)
    columns = {name: values[keep] for name, values in columns.items()}
    if limit is not None:
        columns = {name: values[:limit] for name, values in columns.items()}
    if max_points is not None:
        index = downsample_indices(int(columns["epoch"].size), max_points)
        columns = {name: values[index] for name, values in columns.items()}
    return {name: array_to_json(values) for name, values in columns.items()}


def truncate_after(*, session: Session, run_id: str, epoch: int) -> None:
    """Delete recorded epochs greater than ``epoch`` (no commit).

    Used when a run resumes from a checkpoint at ``epoch``: the epochs after it
    are trained again and recorded again.
    """
    session.exec(
        delete(RunHistoryChunk).where(
            col(RunHistoryChunk.run_id) == run_id, col(RunHistoryChunk.first_epoch) > epoch
        )
    )
    straddling = session.exec(
        select(RunHistoryChunk).where(
            RunHistoryChunk.run_id == run_id,
            RunHistoryChunk.first_epoch <= epoch,
            RunHistoryChunk.last_epoch > epoch,
        )
    ).all()
    for chunk in straddling:
        arrays = serialization.decode_arrays(chunk.data)
        mask = arrays["epoch"] <= epoch
        kept = {name: np.ascontiguousarray(values[mask]) for name, values in arrays.items()}
        chunk.data = serialization.encode_arrays(kept)
        chunk.n_points = int(mask.sum())
        chunk.last_epoch = int(kept["epoch"][-1])
        session.add(chunk)
