"""A worker's hold on one claimed run: the lease, the batched writes, outage holds, the end.

:class:`RunLease` is the only part of a worker that writes the run. It is an
engine callback placed after :class:`app.jobs.progress.ProgressCallback`: at an
epoch's end it takes the buffered batch when a write is due, holds training
when the lease may have expired during a database outage, and stops the
trainer when the lease is lost, the worker shuts down, or a request is
pending. A heartbeat thread (:meth:`RunLease.kept_alive`) renews the lease
between writes when epochs are slow. :meth:`RunLease.finish` writes the last
batch with the outcome, retrying through an outage.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol, TypeVar

from sqlmodel import Session

import engine
from app.config import Settings
from app.datasets.arrays import encode_weights
from app.db.database import Database
from app.db.errors import is_unavailable, unavailable_reason
from app.jobs.lifecycle import Action, Request, Status
from app.jobs.outage import Outage
from app.jobs.progress import ENDED, ProgressCallback
from app.logs import log_transition
from app.services import execution
from app.services.execution import Batch

logger = logging.getLogger(__name__)

HEARTBEAT_TICK_SECONDS = 0.25
STOPS = ("shutdown", Request.PAUSE.value, Request.CANCEL.value)
"""Engine stop reasons of a stop at an exact checkpoint: the outcome is the request
stored when it is written (:data:`app.jobs.lifecycle.Action.STOP`)."""

T = TypeVar("T")


class StopFlag(Protocol):
    """Anything with ``is_set()``: a threading or multiprocessing Event."""

    def is_set(self) -> bool: ...


class RunLease(engine.Callback):
    """Hold a claimed run's lease and write its progress and outcome.

    Parameters
    ----------
    db : Database
        This process's database.
    run_id, owner : str
        The run and the lease holder.
    source : ProgressCallback
        Where batches come from (the callback before this one).
    settings : Settings
        Lease, flush, outage and checkpoint settings.
    lease_since : float
        ``time.monotonic()`` when the claim was sent.
    pause_at_epoch : int, optional
        Stop at this epoch's end and pause the run (a sweep trial at its ASHA rung).
    """

    def __init__(
        self,
        *,
        db: Database,
        run_id: str,
        owner: str,
        source: ProgressCallback,
        settings: Settings,
        lease_since: float,
        pause_at_epoch: int | None = None,
    ) -> None:
        self.db = db
        self.pause_at_epoch = pause_at_epoch
        self.paused_at_rung = False
        """Training stopped at ``pause_at_epoch`` (the outcome is then a pause)."""
        self.run_id = run_id
        self.owner = owner
        self.source = source
        self.lease_seconds = settings.lease_seconds
        self.flush_seconds = settings.flush_seconds
        self.outage_seconds = settings.outage_seconds
        self.keep_auto = settings.keep_auto_checkpoints
        self.outage = Outage(run_id, max_delay=self.lease_seconds / 3)
        self.lease_until = lease_since + self.lease_seconds
        """When the lease ends at the latest, by this process's clock (the time a renewal
        was sent plus the lease: the database set its expiry later than that)."""
        self.last_contact = time.monotonic()
        self.requested: Request | None = None
        """The pending request as of the latest write (a withdrawn one is None again)."""
        self.lost = False
        self.shutting_down = False
        self._lock = threading.Lock()  # one write at a time: training thread or heartbeat
        self._next_flush = time.monotonic() + self.flush_seconds

    # -- why training stops -------------------------------------------------------------

    @property
    def stop_reason(self) -> str | None:
        """Why training must stop at this epoch boundary, or None."""
        if self.lost:
            return "lease_lost"
        if self.shutting_down:
            return "shutdown"
        return None if self.requested is None else self.requested.value

    def request_shutdown(self) -> None:
        """Stop at the next epoch boundary and hand the run back (the worker exits)."""
        if not self.shutting_down:
            logger.info("run %s: stopping (shutdown)", self.run_id)
            self.shutting_down = True

    def _obey(self, owned: bool, request: Request | None, sent: float) -> None:
        """Take in a write's answer (called holding the write lock)."""
        if not owned:
            if not self.lost:
                logger.info("run %s: stopping (lease lost)", self.run_id)
            self.lost = True
            return
        self.lease_until = sent + self.lease_seconds
        if request != self.requested and request is not None:
            logger.info("run %s: stopping (%s requested)", self.run_id, request.value)
        self.requested = request

    # -- engine hook --------------------------------------------------------------------

    def on_epoch_end(
        self, trainer: engine.Trainer, epoch: int, logs: dict[str, float | None], recorded: bool
    ) -> None:
        """Write when due; hold while the lease may have expired; stop when told to."""
        if time.monotonic() >= self._next_flush:
            self.flush()
            self._next_flush = time.monotonic() + self.flush_seconds
        if self.outage.active and time.monotonic() >= self.lease_until:
            self._hold()
        reason = self.stop_reason
        if reason is None and epoch == self.pause_at_epoch:
            logger.info("run %s: pausing at epoch %d (its rung)", self.run_id, epoch)
            self.paused_at_rung = True
            reason = Request.PAUSE.value
        if reason is not None:
            trainer.stop(reason)

    def _hold(self) -> None:
        """Hold training while the lease may have expired and cannot be renewed.

        Another worker may take an expired run over, and a run must never train in
        two places: training continues only once a write renewed the lease (the run
        is still ours) or stops when the lease turns out to be lost.
        """
        logger.warning(
            "run %s: the lease may have expired during the database outage; training "
            "waits until the database answers",
            self.run_id,
            extra={"event": "run.waiting_for_database", "run_id": self.run_id},
        )
        while self.outage.active and self.stop_reason is None:
            if time.monotonic() < self.lease_until:  # the heartbeat renewed it
                return
            time.sleep(max(self.outage.wait_seconds(), 0.01))
            self.flush()

    # -- writes -------------------------------------------------------------------------

    def _write(self, batch: Batch, write: Callable[[Session, bool], T]) -> tuple[bool, T | None]:
        """Write ``batch`` with ``write(session, replace)`` in one transaction.

        Returns ``(True, what write returned)``, or ``(False, None)`` when the
        database is unavailable: the batch goes back to the source for the next
        attempt and :attr:`outage` says when that is due. Any other error raises.
        """
        replace = self.outage.ambiguous
        try:
            with self.db.writing() as session:
                result = write(session, replace)
        except Exception as error:
            if not is_unavailable(error):
                raise
            self.source.put_back(batch)
            self.outage.failed(error)
            return False, None
        self.outage.succeeded()
        self.last_contact = time.monotonic()
        return True, result

    def flush(self) -> None:
        """Write the buffered batch and renew the lease; learn of a pending request.

        During a database outage this is a no-op until the next attempt is due.
        """
        if not self.outage.due():
            return
        with self._lock:
            sent = time.monotonic()
            batch = self.source.take_batch()
            written, answer = self._write(
                batch,
                lambda session, replace: execution.flush(
                    session=session,
                    run_id=self.run_id,
                    owner=self.owner,
                    lease_seconds=self.lease_seconds,
                    batch=batch,
                    keep_auto=self.keep_auto,
                    replace=replace,
                ),
            )
            if written and answer is not None:
                self._obey(*answer, sent)

    def renew(self) -> None:
        """Renew the lease if nothing was written lately (slow epochs, or an outage).

        Called from the heartbeat thread; batches are only ever taken and written
        by the training thread.
        """
        if self.outage.active:
            if not self.outage.due():
                return
        elif time.monotonic() - self.last_contact < self.lease_seconds / 3:
            return
        with self._lock:
            sent = time.monotonic()
            try:
                with self.db.writing() as session:
                    owned, request = execution.renew_lease(
                        session=session,
                        run_id=self.run_id,
                        owner=self.owner,
                        lease_seconds=self.lease_seconds,
                    )
            except Exception as error:
                if not is_unavailable(error):
                    raise
                self.outage.failed(error)  # the outage ends with the next batch written
                return
            self.last_contact = time.monotonic()
            self._obey(owned, request, sent)

    @contextmanager
    def kept_alive(self, shutdown: StopFlag | None) -> Iterator[None]:
        """Run the heartbeat thread (renewals, and noticing ``shutdown``) meanwhile."""
        done = threading.Event()

        def beat() -> None:
            while not done.wait(HEARTBEAT_TICK_SECONDS):
                if shutdown is not None and shutdown.is_set():
                    self.request_shutdown()
                try:
                    self.renew()
                except Exception:  # a failed renewal is retried; the flush reports real trouble
                    logger.warning("run %s: lease renewal failed", self.run_id, exc_info=True)

        thread = threading.Thread(target=beat, name=f"lease-{self.run_id}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()

    # -- the end ------------------------------------------------------------------------

    def finish(self, result: engine.FitResult, network: engine.Network) -> str:
        """Write the last batch and the outcome, retrying through an outage.

        Returns
        -------
        str
            The status written (``requeued`` for queued), ``lease_lost``, or
            ``abandoned`` when the database stayed unavailable for
            ``BACKPROP_OUTAGE_SECONDS`` (the run resumes from its last stored
            checkpoint once its lease expired).
        """
        reason = result.stop_reason
        if self.lost or reason == "lease_lost":
            return self._lease_lost("another worker owns it now")
        action, stop_reason, error = _ending(result)
        deadline = time.monotonic() + self.outage_seconds
        written, status = self._write_outcome(action, stop_reason, error, network)
        while not written:
            if time.monotonic() >= deadline:
                return self._abandon_after_outage()
            time.sleep(self.outage.wait_seconds())
            written, status = self._write_outcome(action, stop_reason, error, network)
        if status is None:
            return self._lease_lost("lost before the outcome was written")
        log_transition(
            self.run_id,
            status,
            previous=Status.RUNNING,
            message=f"{reason} at epoch {result.epochs_run}",
            worker=self.owner,
            epoch=result.epochs_run,
            stop_reason=reason,
        )
        return "requeued" if status == Status.QUEUED else status.value

    def _write_outcome(
        self,
        action: Action,
        stop_reason: str | None,
        error: dict[str, str] | None,
        network: engine.Network,
    ) -> tuple[bool, Status | None]:
        batch = self.source.take_batch()
        return self._write(
            batch,
            lambda session, replace: execution.finish(
                session=session,
                run_id=self.run_id,
                owner=self.owner,
                action=action,
                batch=batch,
                keep_auto=self.keep_auto,
                stop_reason=stop_reason,
                error=error,
                final_weights=lambda: encode_weights(network.get_weights()),
                replace=replace,
                pause_here=self.paused_at_rung and action == Action.STOP,
            ),
        )

    def _lease_lost(self, why: str) -> str:
        logger.warning(
            "run %s: lease lost; %s",
            self.run_id,
            why,
            extra={"event": "run.lease_lost", "run_id": self.run_id, "worker": self.owner},
        )
        return "lease_lost"

    def _abandon_after_outage(self) -> str:
        logger.error(
            "run %s: the database stayed unavailable for %.0f s after training ended; "
            "giving the run up (it resumes from its last stored checkpoint)",
            self.run_id,
            self.outage_seconds,
            extra={"event": "run.abandoned", "run_id": self.run_id, "worker": self.owner},
        )
        return "abandoned"


def _ending(result: engine.FitResult) -> tuple[Action, str | None, dict[str, str] | None]:
    """The action that ends this attempt, its stop reason and error."""
    reason = result.stop_reason
    if reason in ENDED:
        return Action.SUCCEED, reason, None
    if reason in STOPS:
        return Action.STOP, None, None
    if reason == "diverged":
        message = result.message or "the loss diverged"
        return Action.FAIL, reason, {"code": "diverged", "message": message}
    return Action.FAIL, reason, {"code": "error", "message": f"training stopped: {reason}"}


def fail_run(db: Database, run_id: str, owner: str, exc: BaseException) -> str:
    """Mark the run failed with the exception's type and message (``failed``), or leave
    it to its lease (``abandoned``) when the database is unavailable."""
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
        return abandon(run_id, owner, error)
    if failed:
        log_transition(
            run_id,
            Status.FAILED,
            previous=Status.RUNNING,
            message="error",
            worker=owner,
            level=logging.ERROR,
        )
    return Status.FAILED.value


def abandon(run_id: str, owner: str, exc: BaseException) -> str:
    """Leave a run whose writes fail to its lease: it expires, and the run is re-queued."""
    logger.warning(
        "run %s: stopped, %s (%s); it resumes from its last stored checkpoint once the "
        "database is back and its lease expired",
        run_id,
        unavailable_reason(exc),
        type(exc).__name__,
        extra={"event": "run.abandoned", "run_id": run_id, "worker": owner},
    )
    return "abandoned"
