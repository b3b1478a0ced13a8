"""Database work of the workers and of the sweep: claim, lease, batched progress, the end.

Every write made on behalf of a worker is conditional on that worker still
holding the run's lease (``lease_owner``), so a worker that lost its lease (it
was too slow, or it was presumed dead and the run re-queued) can never
overwrite the progress of the worker that took over.

How a run leaves ``running`` is decided by :mod:`app.jobs.lifecycle`, inside the
conditional UPDATE that writes it: the status is a ``CASE`` on the request
stored in the row at that moment (:func:`app.jobs.lifecycle.outcome_by_request`),
never a flag a worker read seconds earlier. Lease expiries are in the
database's clock (:func:`app.db.clock.db_now`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from functools import cache
from typing import Any, cast

from sqlalchemy import Select, and_, bindparam, case, exists, func, literal, not_, null, or_, update
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, delete, select

from app.db.clock import db_now
from app.db.models import (
    Checkpoint,
    CheckpointState,
    Network,
    NetworkArrays,
    Run,
    RunArrays,
    RunHistoryChunk,
    Supervisor,
    UTCDateTime,
    utcnow,
)
from app.jobs import lifecycle
from app.jobs.lifecycle import Action, Request, Status
from app.logs import log_transition
from app.services import notifications
from app.services.checkpoints import latest_checkpoint
from app.services.history import truncate_after
from app.services.notifications import Ended


@dataclass
class PendingCheckpoint:
    """A checkpoint captured during training, written at the next flush."""

    id: str
    epoch: int
    kind: str
    loss: float | None
    val_loss: float | None
    state: bytes
    weights: bytes | memoryview


@dataclass
class Progress:
    """The run's progress fields as of the last epoch trained."""

    epoch: int
    loss: float | None
    val_loss: float | None
    best_loss: float | None
    metrics: dict[str, float | None] = field(default_factory=dict)
    best_epoch: int | None = None
    weights_epoch: int | None = None
    """The epoch the network's weights are from when it is not ``epoch`` (restore_best)."""


@dataclass
class Batch:
    """What a worker writes in one transaction."""

    progress: Progress
    chunk: RunHistoryChunk | None = None
    """The recorded epochs since the last write."""
    checkpoints: list[PendingCheckpoint] = field(default_factory=list)
    """Checkpoints captured since the last write."""
    tail: RunHistoryChunk | None = None
    """The last epoch trained, when training stopped off the ``history_every`` grid:
    stored only if the run ends (a run that continues records it on the grid)."""
    ending: PendingCheckpoint | None = None
    """The checkpoint taken where training stopped: kind ``final`` if the run ends,
    ``auto`` if it was handed back (queued or paused)."""


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
    best_epoch: int | None = None
    pause_at_epoch: int | None = None
    """The worker pauses the run at this epoch's end (a sweep's ASHA rung), or None."""


@dataclass(frozen=True)
class Swept:
    """A run the sweep moved out of ``running`` (its lease had expired)."""

    run_id: str
    status: Status
    counted: bool
    """Whether the lost claim counts as an attempt (the worker died, its supervisor lived)."""


LEASE_RELEASED: dict[str, Any] = {
    "lease_owner": None,
    "lease_supervisor": None,
    "lease_expires_at": None,
    "requested": None,
}
"""Leaving ``running`` releases the lease and clears the pending request."""


def _owned(run_id: str, owner: str) -> Any:
    return and_(
        col(Run.id) == run_id, col(Run.lease_owner) == owner, col(Run.status) == Status.RUNNING
    )


def _request(value: str | None) -> Request | None:
    return Request(value) if value else None


@cache
def _fairest_queued_run(excluding: bool) -> Select[tuple[str]]:
    """The statement of :func:`next_queued_run_id` (built once: building it costs more
    than running it); ``excluding``: with the expanding parameter ``exclude`` (a
    ``NOT IN`` on every queued run, so only when there is something to exclude)."""
    claimable = [col(Run.status) == Status.QUEUED]
    if excluding:
        claimable.append(col(Run.id).not_in(bindparam("exclude", expanding=True)))
    heads = (
        select(col(Run.owner).label("owner"), func.min(col(Run.id)).label("head"))
        .where(*claimable)
        .group_by(col(Run.owner))
        .subquery("heads")
    )
    other = aliased(Run)
    running = (
        select(func.count())
        .select_from(other)
        .where(other.owner == heads.c.owner, other.status == Status.RUNNING)
        .correlate(heads)
        .scalar_subquery()
    )
    latest_start = (
        select(func.max(other.started_at))
        .where(other.owner == heads.c.owner)
        .correlate(heads)
        .scalar_subquery()
    )
    return (
        select(heads.c.head)
        .order_by(running, latest_start.asc().nulls_first(), heads.c.head)
        .limit(1)
    )


def next_queued_run_id(*, session: Session, exclude: Collection[str] = ()) -> str | None:
    """Return the queued run that is fairest to claim next, or None.

    Round-robin over the tenants with queued runs, in one query:

    1. the tenant with the fewest running runs first (each tenant gets an equal
       share of the workers);
    2. ties go to the tenant whose latest run started longest ago, a tenant that
       never started one first (with one worker, tenants take turns);
    3. then the tenant whose oldest queued run is older; within the tenant, its
       oldest queued run (ids sort by creation time).

    The query reads each tenant's oldest queued run from ``ix_run_status_owner_id``
    (one pass over the queued runs' index entries, no table rows), then per tenant
    one index count of its running runs (``ix_run_owner_status``) and one index
    seek for its latest start (``ix_run_owner_started_at``): cheap with thousands
    of queued runs (``benchmarks/tenancy.py``).

    Parameters
    ----------
    session : Session
        Any session (a read is enough; the claim decides who gets the run).
    exclude : collection of str
        Run ids to pass over (ones this worker just failed to claim).
    """
    if exclude:
        result = session.execute(_fairest_queued_run(True), {"exclude": list(exclude)})
    else:
        result = session.execute(_fairest_queued_run(False))
    head: str | None = result.scalar()
    return head


def claim_run(
    *,
    session: Session,
    run_id: str,
    owner: str,
    lease_seconds: float,
    supervisor: str | None,
    commit: bool = True,
) -> bool:
    """Atomically claim a queued run (:data:`app.jobs.lifecycle.Action.CLAIM`).

    ``supervisor`` (a :class:`app.db.models.Supervisor` id, or None) is recorded with
    the lease: when the lease expires, the sweep counts the attempt only if that
    supervisor outlived it. A running run whose lease expired is not claimable:
    the sweep decides first what its expiry means.

    With ``commit=False`` the claim stays in the session's transaction (the worker
    prepares the run in it too, :func:`load_context`).

    Returns
    -------
    bool
        False when the run is not queued (another worker won, or it was paused or
        cancelled meanwhile); nothing is written in that case.
    """
    now = utcnow()
    result = session.execute(
        update(Run)
        .where(col(Run.id) == run_id, col(Run.status) == Status.QUEUED)
        .values(
            status=lifecycle.apply(lifecycle.QUEUED, Action.CLAIM).status,
            lease_owner=owner,
            lease_supervisor=supervisor,
            lease_expires_at=db_now(session, lease_seconds),
            attempts=col(Run.attempts) + 1,
            started_at=func.coalesce(col(Run.started_at), literal(now, UTCDateTime())),
        )
        .returning(col(Run.id))
    )
    claimed = result.first() is not None
    if commit:
        session.commit()
    return claimed


def load_context(*, session: Session, run_id: str, owner: str) -> RunContext | None:
    """Prepare a claimed run: find its latest checkpoint and drop later history.

    Returns None when the lease was lost in the meantime.
    """
    run = session.get(Run, run_id, with_for_update=True)
    if run is None or run.lease_owner != owner or run.status != Status.RUNNING:
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
    latest = latest_checkpoint(session, run_id)
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
    best_epoch = run.best_epoch if resume_epoch > 0 else None
    if resume_epoch == 0:
        run.loss = run.val_loss = run.best_loss = None
        run.best_epoch = None
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
        best_epoch=best_epoch,
        pause_at_epoch=run.pause_at_epoch,
    )
    session.commit()
    return context


def renew_lease(
    *, session: Session, run_id: str, owner: str, lease_seconds: float
) -> tuple[bool, Request | None]:
    """Extend the lease; return ``(still_owned, pending request)``."""
    row = session.execute(
        update(Run)
        .where(_owned(run_id, owner))
        .values(lease_expires_at=db_now(session, lease_seconds))
        .returning(col(Run.requested))
    ).first()
    if row is None:
        session.rollback()
        return False, None
    session.commit()
    return True, _request(row[0])


def _progress_values(progress: Progress) -> dict[str, Any]:
    return {
        "epoch": progress.epoch,
        "loss": progress.loss,
        "val_loss": progress.val_loss,
        "best_loss": progress.best_loss,
        "best_epoch": progress.best_epoch,
        "metrics": progress.metrics,
    }


def _write_batch(
    session: Session, run_id: str, batch: Batch, keep_auto: int, replace_: bool, ended: bool
) -> None:
    """Insert the batch's history and checkpoints (the run row is already updated).

    ``ended``: the run just finished, so its tail epoch is stored and its ending
    checkpoint is the final one.
    """
    chunks = [batch.chunk, batch.tail if ended else None]
    checkpoints = list(batch.checkpoints)
    if batch.ending is not None:
        checkpoints.append(replace(batch.ending, kind="final" if ended else "auto"))
    stored = [chunk for chunk in chunks if chunk is not None]
    if replace_:  # an earlier attempt of this batch may have been committed
        first = min((chunk.first_epoch for chunk in (batch.chunk, batch.tail) if chunk), default=0)
        if first:
            truncate_after(session=session, run_id=run_id, epoch=first - 1)
        if checkpoints:
            ids = [pending.id for pending in checkpoints]
            session.exec(delete(Checkpoint).where(col(Checkpoint.id).in_(ids)))
        session.flush()
    session.add_all(stored)
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
            CheckpointState(
                checkpoint_id=pending.id,
                state=pending.state,
                weights=cast(bytes, pending.weights),  # drivers store any buffer as bytes
            )
        )
    if any(pending.kind == "auto" for pending in checkpoints):
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
    batch: Batch,
    keep_auto: int,
    replace: bool = False,
) -> tuple[bool, Request | None]:
    """Write one batch (progress, history chunk, checkpoints) and renew the lease.

    ``replace`` (after a write whose outcome is unknown) first deletes the history
    from the chunk's first epoch on and the batch's checkpoints, so that a batch
    written twice is stored once.

    Returns
    -------
    tuple
        ``(still_owned, pending request)``; nothing is written when not owned.
    """
    row = session.execute(
        update(Run)
        .where(_owned(run_id, owner))
        .values(
            **_progress_values(batch.progress),
            lease_expires_at=db_now(session, lease_seconds),
        )
        .returning(col(Run.requested))
    ).first()
    if row is None:
        session.rollback()
        return False, None
    _write_batch(session, run_id, batch, keep_auto, replace, ended=False)
    session.commit()
    return True, _request(row[0])


def _by_request(outcomes: Mapping[Request | None, Status], value: Callable[[Status], Any]) -> Any:
    """``value(outcome)`` as SQL: a ``CASE`` on the stored request when outcomes differ."""
    if len(set(outcomes.values())) == 1:
        return value(next(iter(outcomes.values())))
    whens = {request.value: value(status) for request, status in outcomes.items() if request}
    return case(whens, value=col(Run.requested), else_=value(outcomes[None]))


def _departure(action: Action, stop_reason: str | None, now: Any) -> dict[str, Any]:
    """The columns an ``action`` out of ``running`` writes, each decided by the request
    stored in the row (see :func:`app.jobs.lifecycle.outcome_by_request`)."""
    outcomes = lifecycle.outcome_by_request(action)

    def reason(status: Status) -> Any:
        if status == Status.CANCELLED:
            return lifecycle.CANCELLED_STOP_REASON
        return stop_reason if status in lifecycle.TERMINAL else null()

    def attempts(status: Status) -> Any:
        handed_back = status in lifecycle.HANDED_BACK and action == Action.STOP
        return col(Run.attempts) - 1 if handed_back else col(Run.attempts)

    return {
        "status": _by_request(outcomes, lambda status: status.value),
        "stop_reason": _by_request(outcomes, reason),
        "finished_at": _by_request(
            outcomes, lambda status: now if status in lifecycle.TERMINAL else null()
        ),
        "attempts": _by_request(outcomes, attempts),
        **LEASE_RELEASED,
    }


def finish(
    *,
    session: Session,
    run_id: str,
    owner: str,
    action: Action,
    batch: Batch,
    keep_auto: int,
    stop_reason: str | None = None,
    error: dict[str, str] | None = None,
    final_weights: Callable[[], bytes | memoryview] | None = None,
    replace: bool = False,
    pause_here: bool = False,
) -> Status | None:
    """Write the last batch and the run's outcome in one transaction; release the lease.

    Parameters
    ----------
    action : Action
        ``STOP`` (training stopped at the batch's ending checkpoint: on shutdown or
        for a request), ``SUCCEED`` or ``FAIL``. For ``STOP`` the outcome is the
        request stored now: cancelled, paused, or queued when none is (a shutdown,
        or a pause withdrawn since the worker read it); a hand-back does not count
        as an attempt.
    stop_reason, error : optional
        For ``SUCCEED`` (the engine's reason) and ``FAIL`` (``error`` is
        ``{"code", "message"}``).
    final_weights : callable, optional
        Encodes the weights to store when the run ended (not when handed back).
    replace : bool
        As in :func:`flush`.
    pause_here : bool
        The worker stopped at the run's ``pause_at_epoch`` (a sweep's rung): the stop is
        a pause request of its own, stored first unless a request is pending (a cancel
        still wins), so ``STOP`` leaves the run paused there.

    Returns
    -------
    Status or None
        The status written, or None when the lease was lost (nothing written).
    """
    if pause_here:
        session.execute(
            update(Run)
            .where(_owned(run_id, owner), col(Run.requested).is_(None))
            .values(requested=Request.PAUSE)
        )
    values = _departure(action, stop_reason, literal(utcnow(), UTCDateTime()))
    if error is not None:
        values["error"] = error
    row = session.execute(
        update(Run)
        .where(_owned(run_id, owner))
        .values(**_progress_values(batch.progress), **values)
        .returning(col(Run.status), col(Run.owner), col(Run.config))
    ).first()
    if row is None:
        session.rollback()
        return None
    status = Status(row[0])
    ended = status in lifecycle.TERMINAL
    _write_batch(session, run_id, batch, keep_auto, replace, ended=ended)
    if ended:  # owner is the lease holder; the run's owner is its tenant
        notifications.enqueue(session, [Ended(run_id, row[1], status, row[2])])
    if ended and final_weights is not None:
        arrays = session.get(RunArrays, run_id) or RunArrays(run_id=run_id)
        arrays.final_weights = cast(bytes, final_weights())  # stored as bytes are
        weights_epoch = batch.progress.weights_epoch
        arrays.final_epoch = batch.progress.epoch if weights_epoch is None else weights_epoch
        session.add(arrays)
    session.commit()
    return status


def fail(*, session: Session, run_id: str, owner: str, code: str, message: str) -> bool:
    """Mark a run failed with ``{"code", "message"}``; conditional on the lease."""
    values = _departure(Action.FAIL, "error", literal(utcnow(), UTCDateTime()))
    result = session.execute(
        update(Run)
        .where(_owned(run_id, owner))
        .values(**values, error={"code": code, "message": message})
        .returning(col(Run.status), col(Run.owner), col(Run.config))
    )
    row = result.first()
    failed = row is not None
    if row is not None:
        notifications.enqueue(session, [Ended(run_id, row[1], row[0], row[2])])
    session.commit()
    return failed


def _expired(session: Session) -> Any:
    return and_(col(Run.status) == Status.RUNNING, col(Run.lease_expires_at) < db_now(session))


def has_expired_leases(*, session: Session) -> bool:
    """Cheap read: is any running run's lease expired?"""
    return session.exec(select(Run.id).where(_expired(session)).limit(1)).first() is not None


def _holder_outlived_lease() -> Any:
    """The lease holder's supervisor beat after the lease expired: it outlived its worker."""
    return exists().where(
        col(Supervisor.id) == col(Run.lease_supervisor),
        col(Supervisor.beat_at) > col(Run.lease_expires_at),
    )


def _holder_supervisor_live(session: Session) -> Any:
    return exists().where(
        col(Supervisor.id) == col(Run.lease_supervisor),
        col(Supervisor.expires_at) >= db_now(session),
    )


def _sweep(session: Session, action: Action, where: Any, attempts: Any) -> list[tuple[str, str]]:
    values = _departure(action, "error", literal(utcnow(), UTCDateTime()))
    values["attempts"] = attempts
    rows = session.execute(
        update(Run)
        .where(where)
        .values(**values)
        .returning(col(Run.id), col(Run.status), col(Run.owner), col(Run.config))
    ).all()
    notifications.enqueue(
        session,
        [Ended(str(run_id), owner, status, config) for run_id, status, owner, config in rows],
    )
    return [(str(run_id), str(status)) for run_id, status, _, _ in rows]


def sweep_expired(*, session: Session, max_attempts: int) -> list[Swept]:
    """Deal with runs whose worker stopped renewing its lease.

    The attempt counts only when the worker died while its supervisor lived (the
    run's own fault): the supervisor beat after the lease expired, or the lease
    has no supervisor. When the supervisor died too (``kill -9`` of the whole
    service, a lost machine), the claim is given back (``attempts - 1``). A lease
    whose supervisor has neither beaten since nor missed its own expiry is left
    for a later round. Then :mod:`app.jobs.lifecycle` decides from the stored request:
    a pending cancel → cancelled; a counted loss with ``max_attempts`` used →
    failed (``worker_lost``); a pending pause → paused; else → queued (it resumes
    from its latest checkpoint). Each UPDATE re-checks the expiry and reports the
    rows it changed (``RETURNING``), so concurrent sweepers (two API servers on
    PostgreSQL) never move a run that a worker claimed or renewed meanwhile.

    Returns
    -------
    list of Swept
        The runs moved, with their new status.
    """
    counted = or_(col(Run.lease_supervisor).is_(None), _holder_outlived_lease())
    decided = and_(_expired(session), or_(counted, not_(_holder_supervisor_live(session))))
    given_up = _sweep(
        session,
        Action.GIVE_UP,
        and_(decided, counted, col(Run.attempts) >= max_attempts),
        col(Run.attempts),
    )
    failed = [run_id for run_id, status in given_up if status == Status.FAILED]
    if failed:
        session.execute(
            update(Run)
            .where(col(Run.id).in_(failed))
            .values(
                error={
                    "code": "worker_lost",
                    "message": f"the worker running this run stopped responding "
                    f"{max_attempts} time(s); giving up",
                }
            )
        )
    lost_counted = _sweep(session, Action.LOSE, and_(decided, counted), col(Run.attempts))
    lost_free = _sweep(session, Action.LOSE, and_(decided, not_(counted)), col(Run.attempts) - 1)
    session.commit()
    swept = [Swept(run_id, Status(status), True) for run_id, status in given_up + lost_counted]
    swept += [Swept(run_id, Status(status), False) for run_id, status in lost_free]
    for item in swept:
        _log_swept(item)
    return swept


def _log_swept(item: Swept) -> None:
    why = "worker lost" if item.counted else "worker and its supervisor lost (not an attempt)"
    if item.status == Status.FAILED:
        log_transition(
            item.run_id,
            item.status,
            previous=Status.RUNNING,
            message="worker_lost",
            level=logging.WARNING,
        )
    elif item.status == Status.QUEUED:
        log_transition(
            item.run_id,
            item.status,
            previous=Status.RUNNING,
            message=f"lease expired, {why}; re-queued",
            level=logging.WARNING,
        )
    else:
        log_transition(
            item.run_id, item.status, previous=Status.RUNNING, message=f"{why}; {item.status}"
        )


def queued_run_ids(*, session: Session, limit: int) -> list[str]:
    """The oldest ``limit`` queued runs' ids."""
    return list(
        session.exec(
            select(Run.id).where(Run.status == Status.QUEUED).order_by(col(Run.id)).limit(limit)
        ).all()
    )
