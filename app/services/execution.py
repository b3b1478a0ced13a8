"""Database work of the executors: claim, lease, batched progress, finish, sweep.

Every write made on behalf of a worker is conditional on that worker still
holding the run's lease (``lease_owner``), so a worker that lost its lease (it
was too slow, or it was presumed dead and the run re-queued) can never
overwrite the progress of the worker that took over.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, and_, literal, or_, update
from sqlmodel import Session, col, delete, func, select

from app.logs import log_transition
from app.models import (
    Checkpoint,
    CheckpointState,
    Network,
    NetworkArrays,
    Run,
    RunArrays,
    RunHistoryChunk,
    UTCDateTime,
    utcnow,
)
from app.services.history import truncate_after


@dataclass
class PendingCheckpoint:
    """A checkpoint captured during training, written at the next flush."""

    id: str
    epoch: int
    kind: str
    loss: float | None
    val_loss: float | None
    state: bytes
    weights: bytes


@dataclass
class Progress:
    """The run's progress fields as of the last epoch trained."""

    epoch: int
    loss: float | None
    val_loss: float | None
    best_loss: float | None
    metrics: dict[str, float | None] = field(default_factory=dict)


@dataclass
class RunContext:
    """What a worker needs to train a claimed run (plain data, no ORM objects)."""

    run_id: str
    config: dict[str, Any]
    network_spec: dict[str, Any]
    dataset_id: str | None
    validation_dataset_id: str | None
    init_weights: bytes | None
    resume_state: bytes | None
    resume_epoch: int
    best_loss: float | None


def _rowcount(result: Any) -> int:
    return int(cast(CursorResult[Any], result).rowcount)


def _owned(run_id: str, owner: str) -> Any:
    return and_(col(Run.id) == run_id, col(Run.lease_owner) == owner, col(Run.status) == "running")


def _stop_request(session: Session, run_id: str) -> str | None:
    """``"cancelled"`` when a cancel was asked (it wins), ``"paused"`` for a pause, else None."""
    cancel, pause = session.exec(
        select(Run.cancel_requested, Run.pause_requested).where(Run.id == run_id)
    ).one()
    if cancel:
        return "cancelled"
    return "paused" if pause else None


def next_queued_run_id(*, session: Session) -> str | None:
    """Return the oldest queued run's id, or None."""
    return session.exec(
        select(Run.id).where(Run.status == "queued").order_by(col(Run.id)).limit(1)
    ).first()


def claim_run(
    *, session: Session, run_id: str, owner: str, lease_seconds: float, max_attempts: int
) -> bool:
    """Atomically claim a queued run (or a running one whose lease expired).

    Returns
    -------
    bool
        False when another worker holds a live lease or the run is not claimable;
        nothing is written in that case.
    """
    now = utcnow()
    result = session.execute(
        update(Run)
        .where(
            col(Run.id) == run_id,
            col(Run.cancel_requested).is_(False),
            col(Run.attempts) < max_attempts,
            or_(
                col(Run.status) == "queued",
                and_(col(Run.status) == "running", col(Run.lease_expires_at) < now),
            ),
        )
        .values(
            status="running",
            lease_owner=owner,
            lease_expires_at=now + timedelta(seconds=lease_seconds),
            attempts=col(Run.attempts) + 1,
            started_at=func.coalesce(col(Run.started_at), literal(now, UTCDateTime())),
        )
    )
    session.commit()
    return _rowcount(result) == 1


def load_context(*, session: Session, run_id: str, owner: str) -> RunContext | None:
    """Prepare a claimed run: find its latest checkpoint and drop later history.

    Returns None when the lease was lost in the meantime.
    """
    run = session.get(Run, run_id, with_for_update=True)
    if run is None or run.lease_owner != owner or run.status != "running":
        session.rollback()
        return None
    network = session.get(Network, run.network_id)
    arrays = session.get(RunArrays, run_id)
    # Training starts from the run's warm-start weights, else the network's stored
    # initial weights (explicit ones are not in the spec, so never rebuild from it).
    init_weights = arrays.init_weights if arrays is not None else None
    if init_weights is None:
        network_arrays = session.get(NetworkArrays, run.network_id)
        init_weights = network_arrays.weights if network_arrays is not None else None
    latest = session.exec(
        select(Checkpoint)
        .where(Checkpoint.run_id == run_id)
        .order_by(col(Checkpoint.epoch).desc(), col(Checkpoint.id).desc())
        .limit(1)
    ).first()
    resume_state: bytes | None = None
    resume_epoch = 0
    if latest is not None:
        state = session.get(CheckpointState, latest.id)
        if state is not None:
            resume_state = state.state
            resume_epoch = latest.epoch
    truncate_after(session=session, run_id=run_id, epoch=resume_epoch)
    # Checkpoints after the one we resume from cannot exist (it is the latest),
    # and progress restarts at its epoch.
    run.epoch = resume_epoch
    best_loss = run.best_loss if resume_epoch > 0 else None
    if resume_epoch == 0:
        run.loss = run.val_loss = run.best_loss = None
        run.metrics = {}
    session.add(run)
    context = RunContext(
        run_id=run_id,
        config=dict(run.config),
        network_spec=dict(network.spec) if network is not None else {},
        dataset_id=run.dataset_id,
        validation_dataset_id=run.validation_dataset_id,
        init_weights=init_weights,
        resume_state=resume_state,
        resume_epoch=resume_epoch,
        best_loss=best_loss,
    )
    session.commit()
    return context


def renew_lease(
    *, session: Session, run_id: str, owner: str, lease_seconds: float
) -> tuple[bool, str | None]:
    """Extend the lease; return ``(still_owned, stop_request)`` (see :func:`_stop_request`)."""
    now = utcnow()
    result = session.execute(
        update(Run)
        .where(_owned(run_id, owner))
        .values(lease_expires_at=now + timedelta(seconds=lease_seconds))
    )
    if _rowcount(result) != 1:
        session.rollback()
        return False, None
    stop = _stop_request(session, run_id)
    session.commit()
    return True, stop


def _write_batch(
    session: Session,
    run_id: str,
    chunk: RunHistoryChunk | None,
    checkpoints: list[PendingCheckpoint],
    keep_auto: int,
    replace: bool,
) -> None:
    if replace:  # an earlier attempt of this batch may have been committed
        if chunk is not None:
            truncate_after(session=session, run_id=run_id, epoch=chunk.first_epoch - 1)
        if checkpoints:
            ids = [pending.id for pending in checkpoints]
            session.exec(delete(Checkpoint).where(col(Checkpoint.id).in_(ids)))
        session.flush()
    if chunk is not None:
        session.add(chunk)
    for pending in checkpoints:
        session.add(
            Checkpoint(
                id=pending.id,
                run_id=run_id,
                epoch=pending.epoch,
                kind=pending.kind,
                loss=pending.loss,
                val_loss=pending.val_loss,
                created_at=utcnow(),
            )
        )
        session.add(
            CheckpointState(checkpoint_id=pending.id, state=pending.state, weights=pending.weights)
        )
    if any(p.kind == "auto" for p in checkpoints):
        session.flush()
        stale = session.exec(
            select(Checkpoint.id)
            .where(Checkpoint.run_id == run_id, Checkpoint.kind == "auto")
            .order_by(col(Checkpoint.epoch).desc())
            .offset(keep_auto)
        ).all()
        if stale:
            session.exec(delete(Checkpoint).where(col(Checkpoint.id).in_(stale)))


def flush(
    *,
    session: Session,
    run_id: str,
    owner: str,
    lease_seconds: float,
    progress: Progress,
    chunk: RunHistoryChunk | None,
    checkpoints: list[PendingCheckpoint],
    keep_auto: int,
    replace: bool = False,
) -> tuple[bool, str | None]:
    """Write one batch (progress, history chunk, checkpoints) and renew the lease.

    ``replace`` (after a write whose outcome is unknown) first deletes the history
    from the chunk's first epoch on and the batch's checkpoints, so that a batch
    written twice is stored once.

    Returns
    -------
    tuple
        ``(still_owned, stop_request)``: ``"cancelled"``, ``"paused"`` or None;
        nothing is written when not owned.
    """
    now = utcnow()
    result = session.execute(
        update(Run)
        .where(_owned(run_id, owner))
        .values(
            epoch=progress.epoch,
            loss=progress.loss,
            val_loss=progress.val_loss,
            best_loss=progress.best_loss,
            metrics=progress.metrics,
            lease_expires_at=now + timedelta(seconds=lease_seconds),
        )
    )
    if _rowcount(result) != 1:
        session.rollback()
        return False, None
    _write_batch(session, run_id, chunk, checkpoints, keep_auto, replace)
    stop = _stop_request(session, run_id)
    session.commit()
    return True, stop


def finish(
    *,
    session: Session,
    run_id: str,
    owner: str,
    status: str,
    stop_reason: str | None,
    error: dict[str, str] | None,
    progress: Progress,
    chunk: RunHistoryChunk | None,
    checkpoints: list[PendingCheckpoint],
    keep_auto: int,
    final_weights: bytes | None,
    replace: bool = False,
) -> bool:
    """Write the last batch and the outcome in one transaction; release the lease.

    ``replace`` as in :func:`flush`.

    ``status`` ``queued`` hands the run back (graceful shutdown): the attempt
    does not count and the next worker resumes from the last checkpoint.
    ``paused`` (a pause request) is the same, except that the run waits for
    ``POST /resume`` instead of a worker.
    """
    now = utcnow()
    values: dict[str, Any] = {
        "status": status,
        "epoch": progress.epoch,
        "loss": progress.loss,
        "val_loss": progress.val_loss,
        "best_loss": progress.best_loss,
        "metrics": progress.metrics,
        "lease_owner": None,
        "lease_expires_at": None,
    }
    if status in ("queued", "paused"):
        values["attempts"] = col(Run.attempts) - 1
        values["pause_requested"] = False
    else:
        values.update(stop_reason=stop_reason, error=error, finished_at=now)
    result = session.execute(update(Run).where(_owned(run_id, owner)).values(**values))
    if _rowcount(result) != 1:
        session.rollback()
        return False
    _write_batch(session, run_id, chunk, checkpoints, keep_auto, replace)
    if final_weights is not None:
        arrays = session.get(RunArrays, run_id) or RunArrays(run_id=run_id)
        arrays.final_weights = final_weights
        arrays.final_epoch = progress.epoch
        session.add(arrays)
    session.commit()
    return True


def fail(*, session: Session, run_id: str, owner: str, code: str, message: str) -> bool:
    """Mark a run failed with ``{"code", "message"}``; conditional on the lease."""
    result = session.execute(
        update(Run)
        .where(_owned(run_id, owner))
        .values(
            status="failed",
            stop_reason="error",
            error={"code": code, "message": message},
            finished_at=utcnow(),
            lease_owner=None,
            lease_expires_at=None,
        )
    )
    session.commit()
    return _rowcount(result) == 1


def has_expired_leases(*, session: Session, now: datetime | None = None) -> bool:
    """Cheap read: is any running run's lease expired?"""
    moment = now or utcnow()
    return (
        session.exec(
            select(Run.id)
            .where(Run.status == "running", col(Run.lease_expires_at) < moment)
            .limit(1)
        ).first()
        is not None
    )


def sweep_expired(*, session: Session, max_attempts: int) -> list[str]:
    """Deal with runs whose worker stopped renewing its lease.

    Runs with ``cancel_requested`` become cancelled; runs that used up
    ``max_attempts`` fail with ``worker_lost``; the others go back to ``queued``
    (they resume from their latest checkpoint). Each UPDATE re-checks the expiry
    and reports the rows it changed (``RETURNING``), so concurrent sweepers (two
    API servers on PostgreSQL) never re-queue a run that a worker claimed meanwhile.

    Returns
    -------
    list of str
        Ids of the re-queued runs.
    """
    now = utcnow()
    expired = and_(col(Run.status) == "running", col(Run.lease_expires_at) < now)
    released = {"lease_owner": None, "lease_expires_at": None}
    cancelled = session.execute(
        update(Run)
        .where(expired, col(Run.cancel_requested).is_(True))
        .values(status="cancelled", stop_reason="cancelled", finished_at=now, **released)
        .returning(col(Run.id))
    ).all()
    paused = session.execute(
        update(Run)
        .where(expired, col(Run.pause_requested).is_(True))
        .values(status="paused", pause_requested=False, **released)
        .returning(col(Run.id))
    ).all()
    failed = session.execute(
        update(Run)
        .where(expired, col(Run.attempts) >= max_attempts)
        .values(
            status="failed",
            stop_reason="error",
            error={
                "code": "worker_lost",
                "message": f"the worker running this run stopped responding "
                f"{max_attempts} time(s); giving up",
            },
            finished_at=now,
            **released,
        )
        .returning(col(Run.id))
    ).all()
    requeued = session.execute(
        update(Run).where(expired).values(status="queued", **released).returning(col(Run.id))
    ).all()
    session.commit()
    for (run_id,) in cancelled:
        log_transition(run_id, "cancelled", previous="running", message="worker lost; cancel")
    for (run_id,) in paused:
        log_transition(run_id, "paused", previous="running", message="worker lost; pause")
    for (run_id,) in failed:
        log_transition(
            run_id, "failed", previous="running", message="worker_lost", level=logging.WARNING
        )
    for (run_id,) in requeued:
        log_transition(
            run_id,
            "queued",
            previous="running",
            message="lease expired; re-queued",
            level=logging.WARNING,
        )
    return [run_id for (run_id,) in requeued]


def queued_run_ids(*, session: Session, limit: int) -> list[str]:
    """The oldest ``limit`` queued runs' ids."""
    return list(
        session.exec(
            select(Run.id).where(Run.status == "queued").order_by(col(Run.id)).limit(limit)
        ).all()
    )
