"""The per-tenant storage quota (``BACKPROP_STORAGE_QUOTA_BYTES``), which cannot be overrun.

A tenant's usage is the bytes of the blobs it stores: each dataset's arrays and
label records (``dataset.stored_bytes``, known when it is uploaded) plus, per run,
its history chunks, checkpoints (training state and weights) and run weights
(warm start and final). Row and index overhead is not counted.

A run cannot know at creation what it will store, so it *reserves* the most it
can store (:func:`run_reservation`) and is charged that while it is queued,
running or paused; once it is finished it is charged what it actually stored
(:func:`settle`). Uploads and run creation check ``used + needed <= quota`` in
the transaction that stores the new dataset or run, after
:func:`app.services.runs.lock_active_runs`, which serializes these transactions
per tenant, so racing requests cannot overrun the quota together.

The reading work (what finished runs stored, reservations of runs created before
the quota existed) is done by :func:`settle` in a read session before the write
transaction; :func:`charge` only writes its results, sums the tenant's charges
(two index sums) and compares.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import func, or_, select, update
from sqlmodel import Session, col

import engine
from app.db.models import (
    Checkpoint,
    CheckpointState,
    Dataset,
    Network,
    Run,
    RunArrays,
    RunHistoryChunk,
    RunStorage,
)
from app.errors import StorageQuotaError
from engine.config import ENGINE_KEYS
from engine.optimizers import make_optimizer
from engine.serialization import ALIGNMENT

TERMINAL_STATUSES = ("succeeded", "failed", "cancelled")
QUOTA_SETTING = "BACKPROP_STORAGE_QUOTA_BYTES"

BLOB_PREFIX = 12
"""Magic bytes and header length of every :func:`engine.serialization.encode_arrays` blob."""
HEADER_FRAME = len('{"arrays":[],"meta":{}}')
ENTRY_FRAME = len('{"name":"","dtype":"<f8","shape":[],"offset":,"nbytes":},')
STATE_META_BOUND = 1024
"""Bytes of a checkpoint's metadata besides its layout and config: format, epoch, seed,
random generator state, optimizer counters, best value (measured: about 500)."""
HISTORY_COLUMN_BYTES = 8
"""Bytes per recorded epoch and column (int64 epochs, float64 values)."""


def _header_bound(arrays: Iterable[tuple[str, int]], largest: int, meta_bytes: int = 0) -> int:
    """Most bytes the framing of a blob of ``(name, ndim)`` arrays can take.

    ``largest`` bounds the arrays' bytes; with the padding that aligns the header's
    end and each array (less than :data:`~engine.serialization.ALIGNMENT` bytes each)
    it bounds every integer of the header (each dimension, offset and size), so each
    takes at most its number of digits.
    """
    named = list(arrays)
    padding = ALIGNMENT * (len(named) + 1)
    digits = len(str(largest + padding))
    entries = sum(ENTRY_FRAME + len(name) + (ndim + 2) * digits for name, ndim in named)
    return BLOB_PREFIX + HEADER_FRAME + entries + meta_bytes + padding


def _json_bytes(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":")))


def history_points_bound(config: engine.FitConfig) -> int:
    """Most epochs a run records (:func:`engine.history_points`; early stopping,
    cancellation and resumes record no more)."""
    return engine.history_points(config.epochs, config.history_every, config.history_max_points)


def history_columns(config: engine.FitConfig) -> list[str]:
    """The history's columns (as :class:`engine.Trainer` records them): epoch, loss and
    val_loss, each metric and its validation value, and the learning rate when a
    schedule changes it."""
    columns = ["epoch", "loss", "val_loss"]
    for name in config.metrics:
        columns += [name, f"val_{name}"]
    if config.lr_schedule is not None:
        columns.append("lr")
    return columns


def weights_bytes_bound(network: engine.Network, itemsize: int) -> int:
    """Most bytes of :func:`app.datasets.arrays.encode_weights` of ``network``'s weights."""
    arrays = [("n_layers", 1)]
    for index, layer in enumerate(network.layers):
        arrays.append((f"{index}.weights", 2))
        if layer.has_bias:
            arrays.append((f"{index}.bias", 1))
    data = 8 + network.n_parameters * itemsize
    return _header_bound(arrays, data) + data


def state_bytes_bound(network: engine.Network, config: engine.FitConfig) -> int:
    """Most bytes of :func:`engine.serialization.encode_state` of a training state.

    Its arrays are the parameters, the optimizer's buffers (each of the parameters'
    size; named by the optimizer itself, built here for one parameter) and, with
    early stopping, the best parameters. Its metadata holds the network's layout
    and the config (bounded by their full JSON) and :data:`STATE_META_BOUND` more.
    """
    dtype = np.dtype(config.dtype)
    buffers, _ = make_optimizer(config.optimizer, 1, dtype).state()
    arrays = ["params", *(f"optimizer.{name}" for name in buffers)]
    if config.early_stopping is not None:
        arrays.append("best_params")
    meta = STATE_META_BOUND + _json_bytes(network.spec) + _json_bytes(config.to_dict())
    data = len(arrays) * network.n_parameters * dtype.itemsize
    return _header_bound(((name, 1) for name in arrays), data, meta) + data


@dataclass(frozen=True)
class Reservation:
    """The most a run can store, by kind (bytes)."""

    history_points: int
    history: int
    checkpoints: int
    checkpoint_bytes: int
    weights: int

    @property
    def total(self) -> int:
        """Everything together."""
        return self.history + self.checkpoints * self.checkpoint_bytes + self.weights

    def describe(self) -> str:
        """The figures, for a refusal."""
        return (
            f"history up to {self.history_points} points ({_size(self.history)}), "
            f"{self.checkpoints} checkpoints of up to {_size(self.checkpoint_bytes)}, "
            f"weights {_size(self.weights)}"
        )


def scheduled_checkpoints(epochs: int, checkpoint_every: int | None) -> int:
    """Checkpoints a ``checkpoint_every`` schedule writes (0 for automatic ones)."""
    return 0 if checkpoint_every is None else epochs // checkpoint_every


def run_reservation(
    *,
    network: engine.Network,
    config: engine.FitConfig,
    checkpoint_every: int | None,
    keep_auto_checkpoints: int,
    init_weights_bytes: int,
) -> Reservation:
    """The most a run can store.

    - History: at most :func:`history_points_bound` points, each 8 bytes per column,
      in chunks of at least one point each, so at most that many chunk headers
      (about 250 bytes each; the worker writes a chunk per flush, so in practice
      far fewer: the reservation is pessimistic, and only held until the run ends).
    - Checkpoints: the scheduled ones (``epochs // checkpoint_every``), at most
      ``keep_auto_checkpoints`` automatic ones (the worker prunes older ones in the
      transaction that adds one; pause and shutdown checkpoints are automatic) and
      one final one, each a training state plus the weights.
    - Weights: the warm-start weights (``init_weights_bytes``) and the final weights.
    """
    itemsize = 4 if config.dtype == "float32" else 8
    points = history_points_bound(config)
    columns = history_columns(config)
    point = HISTORY_COLUMN_BYTES * len(columns)
    per_chunk = _header_bound(((name, 1) for name in columns), points * point)
    history = points * (point + per_chunk)
    weights = weights_bytes_bound(network, itemsize)
    count = scheduled_checkpoints(config.epochs, checkpoint_every) + keep_auto_checkpoints + 1
    return Reservation(
        history_points=points,
        history=history,
        checkpoints=count,
        checkpoint_bytes=state_bytes_bound(network, config) + weights,
        weights=weights + init_weights_bytes,
    )


# -- usage -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Usage:
    """A tenant's charges: datasets, finished runs, and reservations of unfinished ones."""

    datasets: int
    runs_stored: int
    runs_reserved: int

    @property
    def total(self) -> int:
        """Everything charged."""
        return self.datasets + self.runs_stored + self.runs_reserved


def usage(*, session: Session, owner: str) -> Usage:
    """``owner``'s charges (index sums over its datasets and runs)."""
    datasets = session.execute(
        select(func.coalesce(func.sum(Dataset.stored_bytes), 0)).where(col(Dataset.owner) == owner)
    ).scalar_one()
    stored, reserved = session.execute(
        select(
            func.coalesce(func.sum(RunStorage.stored_bytes), 0),
            func.coalesce(
                func.sum(RunStorage.reserved_bytes).filter(col(RunStorage.stored_bytes).is_(None)),
                0,
            ),
        ).where(col(RunStorage.owner) == owner)
    ).one()
    return Usage(datasets=int(datasets), runs_stored=int(stored), runs_reserved=int(reserved))


@dataclass
class Settlement:
    """Charges computed outside the write transaction, written by :func:`charge`.

    Attributes
    ----------
    stored : dict of str to int
        Finished runs not settled yet: the bytes each stored.
    reserved : dict of str to int
        Unfinished runs created before the quota (no reservation yet): their
        reservations.
    """

    stored: dict[str, int] = field(default_factory=dict)
    reserved: dict[str, int] = field(default_factory=dict)


def stored_bytes(*, session: Session, run_ids: Iterable[str]) -> dict[str, int]:
    """The bytes each run stores now: history chunks, checkpoints, run weights."""
    ids = list(run_ids)
    totals = dict.fromkeys(ids, 0)
    if not ids:
        return totals
    queries = [
        select(col(RunHistoryChunk.run_id), func.sum(func.length(RunHistoryChunk.data)))
        .where(col(RunHistoryChunk.run_id).in_(ids))
        .group_by(col(RunHistoryChunk.run_id)),
        select(
            col(Checkpoint.run_id),
            func.sum(func.length(CheckpointState.state) + func.length(CheckpointState.weights)),
        )
        .join(CheckpointState, col(CheckpointState.checkpoint_id) == col(Checkpoint.id))
        .where(col(Checkpoint.run_id).in_(ids))
        .group_by(col(Checkpoint.run_id)),
        select(
            col(RunArrays.run_id),
            func.coalesce(func.length(RunArrays.init_weights), 0)
            + func.coalesce(func.length(RunArrays.final_weights), 0),
        ).where(col(RunArrays.run_id).in_(ids)),
    ]
    for query in queries:
        for run_id, size in session.execute(query):
            totals[run_id] += int(size or 0)
    return totals


def settle(*, session: Session, owner: str, keep_auto_checkpoints: int) -> Settlement:
    """Read what :func:`charge` needs to write: stored bytes of ``owner``'s newly finished
    runs, reservations of its unfinished runs that predate the quota.

    Unsettled runs are ``owner``'s unfinished runs plus those finished since the
    last settlement (one index range of ``run_storage``). A finished run stores
    nothing more (every worker write is conditional on the run running), so its
    figure is final, and writing it later is safe.
    """
    # Only the rows to settle: an unfinished run with its reservation has nothing to
    # write, and reading all of them made each create O(unfinished runs) (a burst of
    # 200 creates read 20,000 rows).
    rows = session.execute(
        select(col(RunStorage.run_id), col(RunStorage.reserved_bytes), col(Run.status))
        .join(Run, col(Run.id) == col(RunStorage.run_id))
        .where(
            col(RunStorage.owner) == owner,
            col(RunStorage.stored_bytes).is_(None),
            or_(col(Run.status).in_(TERMINAL_STATUSES), col(RunStorage.reserved_bytes).is_(None)),
        )
    ).all()
    finished = [run_id for run_id, _, status in rows if status in TERMINAL_STATUSES]
    legacy = [
        run_id
        for run_id, reserved, status in rows
        if reserved is None and status not in TERMINAL_STATUSES
    ]
    reserved = {
        run_id: _existing_run_reservation(session, run_id, keep_auto_checkpoints)
        for run_id in legacy
    }
    return Settlement(stored=stored_bytes(session=session, run_ids=finished), reserved=reserved)


def _existing_run_reservation(session: Session, run_id: str, keep_auto: int) -> int:
    """The reservation of a run created before the quota: its bound, or what it stores if more."""
    run = session.get(Run, run_id)
    network = session.get(Network, run.network_id) if run is not None else None
    if run is None or network is None:
        return 0
    config = engine.FitConfig.from_dict(
        {key: value for key, value in run.config.items() if key in ENGINE_KEYS}
    )
    init = session.execute(
        select(func.coalesce(func.length(RunArrays.init_weights), 0)).where(
            col(RunArrays.run_id) == run_id
        )
    ).scalar()
    bound = run_reservation(
        network=engine.Network.from_spec(network.spec),
        config=config,
        checkpoint_every=run.config.get("checkpoint_every"),
        keep_auto_checkpoints=keep_auto,
        init_weights_bytes=int(init or 0),
    ).total
    return max(bound, stored_bytes(session=session, run_ids=[run_id])[run_id])


def charge(
    *,
    session: Session,
    owner: str,
    needed: int,
    quota: int | None,
    settlement: Settlement,
    what: str,
    advice: str = "",
) -> Usage | None:
    """Write ``settlement``; refuse unless ``owner``'s usage plus ``needed`` fits ``quota``.

    Call it in the write transaction that stores what needs the bytes, after
    :func:`app.services.runs.lock_active_runs`. On refusal the settlement is
    committed (it is true whatever happens next) and nothing else is written.

    Returns
    -------
    Usage or None
        The usage before ``needed`` (None when there is no quota).

    Raises
    ------
    StorageQuotaError
        When ``used + needed > quota``, with the figures and the setting's name.
    """
    if quota is None:
        return None
    _write_settlement(session, settlement)
    used = usage(session=session, owner=owner)
    if used.total + needed > quota:
        session.commit()
        raise StorageQuotaError(
            f"storage quota: {what} needs {_size(needed)}, and this tenant stores "
            f"{_size(used.total)} (datasets {_size(used.datasets)}, finished runs "
            f"{_size(used.runs_stored)}, reserved by unfinished runs "
            f"{_size(used.runs_reserved)}) of at most {_size(quota)} per tenant "
            f"({QUOTA_SETTING}): delete datasets or networks (their runs go with them), "
            f"or wait for unfinished runs to end{advice}"
        )
    return used


def _write_settlement(session: Session, settlement: Settlement) -> None:
    for run_id, size in settlement.stored.items():
        session.execute(
            update(RunStorage)
            .where(col(RunStorage.run_id) == run_id, col(RunStorage.stored_bytes).is_(None))
            .values(stored_bytes=size)
        )
    for run_id, size in settlement.reserved.items():
        session.execute(
            update(RunStorage)
            .where(col(RunStorage.run_id) == run_id, col(RunStorage.reserved_bytes).is_(None))
            .values(reserved_bytes=size)
        )


def _size(n: int) -> str:
    """``n`` bytes, exactly, with a binary-unit reading for people."""
    if n < 1024:
        return f"{n} bytes"
    exponent = min(int(math.log(n, 1024)), 4)
    unit = ("KiB", "MiB", "GiB", "TiB")[exponent - 1]
    return f"{n} bytes ({n / 1024**exponent:.1f} {unit})"


def reserve(*, session: Session, run_id: str, owner: str, reservation: int) -> None:
    """Add the new run's charge row (in the transaction that inserts the run)."""
    session.add(RunStorage(run_id=run_id, owner=owner, reserved_bytes=reservation))
