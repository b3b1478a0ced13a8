"""``execute_run(run_id)``: claim a run, train it, write its outcome.

This is the only caller of :func:`engine.fit`. It is called by every executor (the
local process pool and Celery workers) with nothing but an id; it opens its own
database connections in the calling process. Training runs under a
:class:`app.jobs.lease.RunLease`, which does every write after the claim.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sqlmodel import Session

import engine
from app.config import Settings, get_settings
from app.datasets.arrays import decode_weights
from app.db.database import Database
from app.db.errors import is_unavailable, unavailable_reason
from app.jobs.dataset_cache import Arrays, DatasetCache, process_cache
from app.jobs.lease import RunLease, StopFlag, abandon, fail_run
from app.jobs.lifecycle import Status
from app.jobs.progress import ProgressCallback
from app.logs import log_transition
from app.services import datasets as dataset_service
from app.services import execution
from app.services.runs import targets_for_loss
from engine import serialization
from engine.config import ENGINE_KEYS

logger = logging.getLogger(__name__)


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
    supervisor: str | None = None,
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
    supervisor : str, optional
        The id of the process supervising this worker (:mod:`app.jobs.supervisor`),
        recorded with the lease: if the lease expires while the supervisor lives,
        the attempt counts; if both died, it does not.
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
        context = _claim(db, settings, run_id, owner, supervisor)
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
        Status.RUNNING,
        message=f"claimed by {owner} from epoch {context.resume_epoch}",
        worker=owner,
        epoch=context.resume_epoch,
    )
    try:
        lease = _lease(db, settings, context, owner, claim_sent)
        cache = process_cache(settings.dataset_cache_bytes)
        return Outcome(run_id, _train(lease, context, shutdown, cache))
    except Exception as exc:
        if is_unavailable(exc):
            return Outcome(run_id, abandon(run_id, owner, exc))
        logger.exception("run %s: failed with an exception", run_id, extra={"run_id": run_id})
        return Outcome(run_id, fail_run(db, run_id, owner, exc))


def _claim(
    db: Database, settings: Settings, run_id: str, owner: str, supervisor: str | None
) -> execution.RunContext | Outcome:
    """Take the run's lease and read what training it needs, or say why not.

    One write transaction: the claim commits with the run prepared (its history after
    the resumed checkpoint dropped), or not at all, and a run costs one lock less.
    """
    with db.writing() as session:
        claimed = execution.claim_run(
            session=session,
            run_id=run_id,
            owner=owner,
            lease_seconds=settings.lease_seconds,
            supervisor=supervisor,
            commit=False,
        )
        if not claimed:
            session.rollback()
            logger.debug("run %s: not claimable, skipped", run_id)
            return Outcome(run_id, "skipped")
        context = execution.load_context(session=session, run_id=run_id, owner=owner)
    return Outcome(run_id, "lease_lost") if context is None else context


def _monitor(config: dict[str, Any]) -> str:
    early = config.get("early_stopping")
    if early and early.get("monitor"):
        return str(early["monitor"])
    return "val_loss" if config.get("validation") else "loss"


def _network(context: execution.RunContext) -> engine.Network:
    net = engine.Network.from_spec(context.network_spec)
    if context.init_weights is not None:
        net.set_weights(decode_weights(context.init_weights))
    return net


def _lease(
    db: Database,
    settings: Settings,
    context: execution.RunContext,
    owner: str,
    claim_sent: float,
) -> RunLease:
    """The lease of the claimed run, with the progress callback it writes from."""
    progress = ProgressCallback(
        run_id=context.run_id,
        network=_network(context),
        checkpoint_every=context.config.get("checkpoint_every"),
        monitor=_monitor(context.config),
        best_loss=context.best_loss,
        best_epoch=context.best_epoch,
        start_epoch=context.resume_epoch,
        auto_checkpoint_seconds=settings.auto_checkpoint_seconds,
        keep_auto_checkpoints=settings.keep_auto_checkpoints,
    )
    return RunLease(
        db=db,
        run_id=context.run_id,
        owner=owner,
        source=progress,
        settings=settings,
        lease_since=claim_sent,
        pause_at_epoch=context.pause_at_epoch,
    )


def _arrays(session: Session, cache: DatasetCache, dataset_id: str) -> Arrays:
    """A dataset's decoded arrays, from this worker's cache when it has them."""
    sha256 = dataset_service.dataset_sha256(session=session, dataset_id=dataset_id)
    hits = cache.hits
    arrays = cache.get(
        sha256,
        lambda: dataset_service.load_arrays(session=session, dataset_id=dataset_id, copy=False),
    )
    how = "from the worker's cache" if cache.hits > hits else "decoded"
    logger.info("dataset %s (%s): %s", dataset_id, sha256[:12], how)
    return arrays


def _train(
    lease: RunLease,
    context: execution.RunContext,
    shutdown: StopFlag | None,
    cache: DatasetCache,
) -> str:
    """Train the claimed run under ``lease`` and write how it ended."""
    config = {key: context.config[key] for key in ENGINE_KEYS if key in context.config}
    if context.dataset_id is None:
        raise RuntimeError("the run's dataset was deleted")
    with lease.db.reading() as session:
        X, y = _arrays(session, cache, context.dataset_id)
        validation_data = None
        if context.validation_dataset_id is not None:
            validation_data = _arrays(session, cache, context.validation_dataset_id)
    loss = str(config["loss"])
    y = targets_for_loss(loss, y)
    if validation_data is not None:
        validation_data = (validation_data[0], targets_for_loss(loss, validation_data[1]))
    initial_state = (
        serialization.decode_state(context.resume_state) if context.resume_state else None
    )
    net = lease.source.network
    # benchmarks/data.py times claim (the run's started_at) to this line.
    logger.info("run %s: training starts", context.run_id)
    with lease.kept_alive(shutdown):
        result = engine.fit(
            net,
            X,
            y,
            config,
            callbacks=[lease.source, lease],
            validation_data=validation_data,
            initial_state=initial_state,
        )
    return lease.finish(result, net)
