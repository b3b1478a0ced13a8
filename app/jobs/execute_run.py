"""``execute_run(run_id)``: claim a run, train it, write its outcome.

This is the only caller of :func:`engine.fit`. It is called by every executor (the
local process pool now, Celery workers later) with nothing but an id; it opens
its own database connections in the calling process.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

from sqlmodel import Session

import engine
from app.arrays import decode_weights, encode_weights
from app.config import Settings, get_settings
from app.db import Database
from app.db_errors import is_unavailable, unavailable_reason
from app.jobs.progress import ProgressCallback
from app.logs import log_transition
from app.models import RunHistoryChunk
from app.services import datasets as dataset_service
from app.services import execution
from app.services.execution import PendingCheckpoint
from app.services.runs import targets_for_loss
from engine import serialization
from engine.config import ENGINE_KEYS

logger = logging.getLogger(__name__)

HEARTBEAT_TICK_SECONDS = 0.25


class StopFlag(Protocol):
    """Anything with ``is_set()``: a threading or multiprocessing Event."""

    def is_set(self) -> bool: ...


@dataclass(frozen=True)
class Outcome:
    """What happened to a run in :func:`execute_run` (for logs and tests)."""

    run_id: str
    result: str


@lru_cache(maxsize=4)
def _database(url: str, pid: int) -> Database:
    """One :class:`Database` per URL per process (the pid key stops fork inheritance)."""
    return Database(url)


def default_owner() -> str:
    """A lease owner id unique to this process."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def execute_run(
    run_id: str,
    *,
    settings: Settings | None = None,
    db: Database | None = None,
    owner: str | None = None,
    shutdown: StopFlag | None = None,
) -> Outcome:
    """Claim and train one run.

    Parameters
    ----------
    run_id : str
        The run to execute.
    settings : Settings, optional
        Defaults to :func:`app.config.get_settings`.
    db : Database, optional
        Defaults to a per-process database for ``settings.database_url``.
    owner : str, optional
        Lease owner id; defaults to host:pid:random.
    shutdown : Event-like, optional
        When set, training stops at the next epoch boundary, writes a checkpoint
        and hands the run back to the queue.

    Returns
    -------
    Outcome
        ``skipped`` (another worker holds it, or it is not claimable), the final
        status, ``requeued``, ``lease_lost``, ``unavailable`` (the database could
        not be reached to claim it) or ``abandoned`` (the database stayed
        unavailable; the run is re-queued when its lease expires).
    """
    settings = settings or get_settings()
    db = db or _database(settings.database_url, os.getpid())
    owner = owner or default_owner()
    claim_sent = time.monotonic()
    try:
        context = _claim(db, settings, run_id, owner)
    except Exception as exc:
        if not is_unavailable(exc):
            raise
        logger.warning(
            "run %s: cannot be claimed now (%s); it stays where it is and is tried again",
            run_id,
            unavailable_reason(exc),
            extra={"event": "run.database_unavailable", "run_id": run_id},
        )
        return Outcome(run_id, "unavailable")
    if isinstance(context, Outcome):
        return context
    log_transition(
        run_id,
        "running",
        message=f"claimed by {owner} from epoch {context.resume_epoch}",
        worker=owner,
        epoch=context.resume_epoch,
    )
    try:
        return _train(db, settings, context, owner, shutdown, claim_sent)
    except Exception as exc:
        if is_unavailable(exc):
            return _abandon(run_id, owner, exc)
        logger.exception("run %s: failed with an exception", run_id, extra={"run_id": run_id})
        return _fail(db, run_id, owner, exc)


def _claim(
    db: Database, settings: Settings, run_id: str, owner: str
) -> execution.RunContext | Outcome:
    """Take the run's lease and read what training it needs, or say why not."""
    with db.writing() as session:
        claimed = execution.claim_run(
            session=session,
            run_id=run_id,
            owner=owner,
            lease_seconds=settings.lease_seconds,
            max_attempts=settings.max_attempts,
        )
    if not claimed:
        logger.debug("run %s: not claimable, skipped", run_id)
        return Outcome(run_id, "skipped")
    with db.writing() as session:
        context = execution.load_context(session=session, run_id=run_id, owner=owner)
    return Outcome(run_id, "lease_lost") if context is None else context


def _abandon(run_id: str, owner: str, exc: BaseException) -> Outcome:
    """Leave a run whose writes fail to its lease: it expires, and the run is re-queued."""
    logger.warning(
        "run %s: stopped, %s (%s); it resumes from its last stored checkpoint once the "
        "database is back and its lease expired",
        run_id,
        unavailable_reason(exc),
        type(exc).__name__,
        extra={"event": "run.abandoned", "run_id": run_id, "worker": owner},
    )
    return Outcome(run_id, "abandoned")


def _fail(db: Database, run_id: str, owner: str, exc: BaseException) -> Outcome:
    """Mark the run failed with the exception's type and message."""
    try:
        with db.writing() as session:
            failed = execution.fail(
                session=session,
                run_id=run_id,
                owner=owner,
                code="error",
                message=f"{type(exc).__name__}: {exc}",
            )
    except Exception as error:
        if not is_unavailable(error):
            raise
        return _abandon(run_id, owner, error)
    if failed:
        log_transition(
            run_id,
            "failed",
            previous="running",
            message="error",
            worker=owner,
            level=logging.ERROR,
        )
    return Outcome(run_id, "failed")


def _monitor(config: dict[str, Any]) -> str:
    early = config.get("early_stopping")
    if early and early.get("monitor"):
        return str(early["monitor"])
    return "val_loss" if config.get("validation") else "loss"


def _heartbeat(
    callback: ProgressCallback, shutdown: StopFlag | None, done: threading.Event
) -> None:
    while not done.wait(HEARTBEAT_TICK_SECONDS):
        if shutdown is not None and shutdown.is_set():
            callback.request_stop("shutdown")
        try:
            callback.heartbeat()
        except Exception:  # a failed renewal is retried; the flush reports real trouble
            logger.warning("run %s: lease renewal failed", callback.run_id, exc_info=True)


def _train(
    db: Database,
    settings: Settings,
    context: execution.RunContext,
    owner: str,
    shutdown: StopFlag | None,
    claim_sent: float,
) -> Outcome:
    run_id = context.run_id
    config = {key: context.config[key] for key in ENGINE_KEYS if key in context.config}
    if context.dataset_id is None:
        raise RuntimeError("the run's dataset was deleted")
    with db.reading() as session:
        X, y = dataset_service.load_arrays(session=session, dataset_id=context.dataset_id)
        validation_data = None
        if context.validation_dataset_id is not None:
            validation_data = dataset_service.load_arrays(
                session=session, dataset_id=context.validation_dataset_id
            )
    loss = str(config["loss"])
    y = targets_for_loss(loss, y)
    if validation_data is not None:
        validation_data = (validation_data[0], targets_for_loss(loss, validation_data[1]))
    net = engine.Network.from_spec(context.network_spec)
    if context.init_weights is not None:
        net.set_weights(decode_weights(context.init_weights))
    initial_state = (
        serialization.decode_state(context.resume_state) if context.resume_state else None
    )
    callback = ProgressCallback(
        db=db,
        run_id=run_id,
        owner=owner,
        network=net,
        checkpoint_every=context.config.get("checkpoint_every"),
        monitor=_monitor(context.config),
        best_loss=context.best_loss,
        start_epoch=context.resume_epoch,
        lease_seconds=settings.lease_seconds,
        flush_seconds=settings.flush_seconds,
        auto_checkpoint_seconds=settings.auto_checkpoint_seconds,
        keep_auto_checkpoints=settings.keep_auto_checkpoints,
        lease_since=claim_sent,
    )
    done = threading.Event()
    beat = threading.Thread(
        target=_heartbeat, args=(callback, shutdown, done), name=f"lease-{run_id}", daemon=True
    )
    beat.start()
    try:
        result = engine.fit(
            net,
            X,
            y,
            config,
            callbacks=[callback],
            validation_data=validation_data,
            initial_state=initial_state,
        )
    finally:
        done.set()
        beat.join()
    return _finish(db, settings, callback, result, net, owner)


def _finish(
    db: Database,
    settings: Settings,
    callback: ProgressCallback,
    result: engine.FitResult,
    net: engine.Network,
    owner: str,
) -> Outcome:
    run_id = callback.run_id
    reason = result.stop_reason
    if callback.lease_lost or reason == "lease_lost":
        logger.warning(
            "run %s: lease lost; another worker owns it now",
            run_id,
            extra={"event": "run.lease_lost", "run_id": run_id, "worker": owner},
        )
        return Outcome(run_id, "lease_lost")
    error: dict[str, str] | None = None
    if reason in ("completed", "early_stopping"):
        status = "succeeded"
    elif reason == "cancelled":
        status = "cancelled"
    elif reason == "shutdown":
        status = "queued"
    elif reason == "paused":  # POST /pause: exact checkpoint at this epoch, wait for /resume
        status = "paused"
    elif reason == "diverged":
        status = "failed"
        error = {"code": "diverged", "message": result.message or "the loss diverged"}
    else:
        status = "failed"
        error = {"code": "error", "message": f"training stopped: {reason}"}
    handed_back = status in ("queued", "paused")
    final_weights = None if handed_back else encode_weights(net.get_weights())

    def write_outcome(
        session: Session,
        chunk: RunHistoryChunk | None,
        checkpoints: list[PendingCheckpoint],
        replace: bool,
    ) -> bool:
        return execution.finish(
            session=session,
            run_id=run_id,
            owner=owner,
            status=status,
            stop_reason=None if handed_back else reason,
            error=error,
            progress=callback.progress(),
            chunk=chunk,
            checkpoints=checkpoints,
            keep_auto=settings.keep_auto_checkpoints,
            final_weights=final_weights,
            replace=replace,
        )

    deadline = time.monotonic() + settings.outage_seconds
    stored, written = callback.write(write_outcome)
    while not stored:
        if time.monotonic() >= deadline:
            logger.error(
                "run %s: the database stayed unavailable for %.0f s after training ended; "
                "giving the run up (it resumes from its last stored checkpoint)",
                run_id,
                settings.outage_seconds,
                extra={"event": "run.abandoned", "run_id": run_id, "worker": owner},
            )
            return Outcome(run_id, "abandoned")
        time.sleep(callback.outage.wait_seconds())
        stored, written = callback.write(write_outcome)
    if not written:
        logger.warning(
            "run %s: lease lost before the outcome was written",
            run_id,
            extra={"event": "run.lease_lost", "run_id": run_id, "worker": owner},
        )
        return Outcome(run_id, "lease_lost")
    log_transition(
        run_id,
        status,
        previous="running",
        message=f"{reason} at epoch {result.epochs_run}",
        worker=owner,
        epoch=result.epochs_run,
        stop_reason=reason,
    )
    return Outcome(run_id, "requeued" if status == "queued" else status)
