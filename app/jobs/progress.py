"""The engine callback that reports a run's progress to the database in batches."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from sqlmodel import Session

import engine
from app.arrays import clean_metrics, encode_weights, finite_or_none
from app.db import Database
from app.db_errors import is_unavailable
from app.ids import new_id
from app.jobs.outage import Outage
from app.models import RunHistoryChunk
from app.services import execution
from app.services.execution import PendingCheckpoint, Progress
from app.services.history import make_chunk
from engine import serialization

logger = logging.getLogger(__name__)

BASE_LOGS = ("loss", "val_loss")

T = TypeVar("T")

BatchWriter = Callable[[Session, RunHistoryChunk | None, list[PendingCheckpoint], bool], T]
"""Writes a taken batch (chunk, checkpoints, replace) in an open write session."""


class ProgressCallback(engine.Callback):
    """Buffer checkpoints, hand on the trainer's history; write about every ``flush_seconds``.

    The per-epoch work is one comparison and one clock read: the history is the
    trainer's own (``trainer.history``), sliced at each write, so it is not
    recorded twice. The database is written by time, never per epoch. Each write
    also renews the lease and reads the cancel and pause flags; :meth:`request_stop` (called
    from the heartbeat thread or by a write that found the lease lost) makes the
    trainer stop at the next epoch boundary.

    Parameters
    ----------
    db : Database
        This process's database.
    run_id, owner : str
        The run and the lease holder.
    network : engine.Network
        The network being trained (for checkpoint weights).
    checkpoint_every : int or None
        Scheduled checkpoints every N epochs; None = automatic, time-based.
    monitor : str
        The logged value whose minimum is ``best_loss``.
    best_loss : float or None
        Best value so far (when resuming).
    start_epoch : int
        The epoch training starts after (the resume point).
    """

    def __init__(
        self,
        *,
        db: Database,
        run_id: str,
        owner: str,
        network: engine.Network,
        checkpoint_every: int | None,
        monitor: str,
        best_loss: float | None,
        start_epoch: int,
        lease_seconds: float,
        flush_seconds: float,
        auto_checkpoint_seconds: float,
        keep_auto_checkpoints: int,
        lease_since: float | None = None,
    ) -> None:
        self.db = db
        self.run_id = run_id
        self.owner = owner
        self.network = network
        self.checkpoint_every = checkpoint_every
        self.monitor = monitor
        self.best = math.inf if best_loss is None else best_loss
        self.lease_seconds = lease_seconds
        self.flush_seconds = flush_seconds
        self.auto_seconds = auto_checkpoint_seconds
        self.keep_auto = keep_auto_checkpoints
        self.stop_request: str | None = None
        self.lease_lost = False
        self.last_contact = time.monotonic()
        self.epoch = start_epoch
        self.last_checkpoint_epoch = start_epoch
        self.start_epoch = start_epoch
        self.logs: dict[str, float | None] = {}
        self.final_state: bytes | None = None
        self._trainer: engine.Trainer | None = None
        self._taken = 0  # entries of trainer.history already handed to take_batch
        self._tail: dict[str, list[Any]] | None = None  # the last epoch, when not recorded
        self._checkpoints: list[PendingCheckpoint] = []
        self._lock = threading.Lock()
        self.outage = Outage(run_id, max_delay=lease_seconds / 3)
        now = time.monotonic()
        self.lease_until = (now if lease_since is None else lease_since) + lease_seconds
        """When the lease ends at the latest, by this process's clock (the time a renewal
        was sent plus the lease: the database set its expiry later than that)."""
        self._next_flush = now + flush_seconds
        self._next_auto = now + auto_checkpoint_seconds

    # -- called from other threads ---------------------------------------------------

    def request_stop(self, reason: str) -> None:
        """Ask the trainer to stop at the next epoch boundary (first reason wins)."""
        if self.stop_request is None:
            logger.info("run %s: stopping (%s)", self.run_id, reason)
            self.stop_request = reason

    # -- engine hooks -------------------------------------------------------------------

    def on_train_begin(self, trainer: engine.Trainer) -> None:
        """Remember the trainer: its history is read at each write."""
        self._trainer = trainer
        self._taken = len(trainer.history["epoch"])

    def on_epoch_end(
        self, trainer: engine.Trainer, epoch: int, logs: dict[str, float | None], recorded: bool
    ) -> None:
        """Track progress; checkpoint and flush when due."""
        self.epoch = epoch
        self.logs = logs
        value = logs.get(self.monitor)
        if value is not None and value < self.best:
            self.best = value
        now = time.monotonic()
        every = self.checkpoint_every
        if every is not None:
            if epoch % every == 0:
                self._capture(trainer, epoch, "scheduled")
        elif now >= self._next_auto:
            self._capture(trainer, epoch, "auto")
            self._next_auto = now + self.auto_seconds
        if now >= self._next_flush:
            self.flush()
            self._next_flush = time.monotonic() + self.flush_seconds
        if self.outage.active and time.monotonic() >= self.lease_until:
            self._wait_for_database()
        if self.stop_request is not None:
            trainer.stop(self.stop_request)

    def _wait_for_database(self) -> None:
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
        while self.outage.active and self.stop_request is None:
            if time.monotonic() < self.lease_until:  # the heartbeat renewed it
                return
            time.sleep(max(self.outage.wait_seconds(), 0.01))
            self.flush()

    def on_train_end(self, trainer: engine.Trainer, result: engine.FitResult) -> None:
        """Capture the last epoch (always in the history) and the final checkpoint."""
        self.epoch = result.epochs_run
        history = result.history
        recorded = trainer.history["epoch"]
        last_recorded = recorded[-1] if recorded else self.start_epoch
        # A paused run is not over: its last epoch is recorded only when it is on the
        # history_every grid, so the history equals an uninterrupted run's.
        paused = result.stop_reason == "paused"
        if not paused and history.get("epoch") and history["epoch"][-1] > last_recorded:
            self._tail = {key: [column[-1]] for key, column in history.items()}
        if result.final_logs:
            self.logs = dict(result.final_logs)
        if result.best_value is not None and math.isfinite(result.best_value):
            self.best = min(self.best, result.best_value)
        if result.stop_reason in ("diverged", "lease_lost"):
            return
        if self.last_checkpoint_epoch != result.epochs_run:
            kind = "auto" if result.stop_reason in ("shutdown", "paused") else "final"
            self._capture(trainer, result.epochs_run, kind)

    # -- internals ----------------------------------------------------------------------

    def _new_history(self) -> dict[str, list[Any]]:
        """The trainer's history entries not handed over yet, then the tail."""
        columns: dict[str, list[Any]] = {}
        trainer = self._trainer
        if trainer is not None:
            end = len(trainer.history["epoch"])
            if end > self._taken:
                columns = {
                    key: column[self._taken : end] for key, column in trainer.history.items()
                }
                self._taken = end
        if self._tail is not None:
            tail, self._tail = self._tail, None
            if not columns:
                return tail
            for key, column in columns.items():
                column.extend(tail.get(key, [None]))
        return columns

    def _capture(self, trainer: engine.Trainer, epoch: int, kind: str) -> None:
        state = trainer.state(include_history=False)
        self._checkpoints.append(
            PendingCheckpoint(
                id=new_id("checkpoint"),
                epoch=epoch,
                kind=kind,
                loss=finite_or_none(self.logs.get("loss")),
                val_loss=finite_or_none(self.logs.get("val_loss")),
                state=serialization.encode_state(state),
                weights=encode_weights(self.network.get_weights()),
            )
        )
        self.last_checkpoint_epoch = epoch

    def progress(self) -> Progress:
        """The run's progress fields as of the last epoch seen."""
        return Progress(
            epoch=self.epoch,
            loss=finite_or_none(self.logs.get("loss")),
            val_loss=finite_or_none(self.logs.get("val_loss")),
            best_loss=finite_or_none(self.best),
            metrics=clean_metrics(self.logs, exclude=BASE_LOGS),
        )

    def take_batch(self) -> tuple[Any, list[PendingCheckpoint]]:
        """Hand over the buffered history chunk and checkpoints (buffers reset)."""
        columns = self._new_history()
        chunk = make_chunk(self.run_id, columns) if columns else None
        checkpoints, self._checkpoints = self._checkpoints, []
        return chunk, checkpoints

    def write(self, batch_writer: BatchWriter[T]) -> tuple[bool, T | None]:
        """Take the buffered batch and write it with ``batch_writer`` in one transaction.

        Returns
        -------
        tuple
            ``(True, what batch_writer returned)``, or ``(False, None)`` when the
            database is unavailable: the batch is then kept for the next attempt
            and :attr:`outage` says when that is due.

        Raises
        ------
        Exception
            Any error that is not an outage of the database.
        """
        taken, tail = self._taken, self._tail
        replace = self.outage.ambiguous
        sent = time.monotonic()
        chunk, checkpoints = self.take_batch()
        try:
            with self._lock, self.db.writing() as session:
                result = batch_writer(session, chunk, checkpoints, replace)
        except Exception as error:
            if not is_unavailable(error):
                raise
            self._taken, self._tail = taken, tail
            self._keep(checkpoints)
            self.outage.failed(error)
            return False, None
        self.outage.succeeded()
        self.last_contact = time.monotonic()
        self.lease_until = sent + self.lease_seconds
        return True, result

    def _keep(self, checkpoints: list[PendingCheckpoint]) -> None:
        """Put unwritten checkpoints back, keeping only the newest ``keep_auto`` automatic ones."""
        kept = checkpoints + self._checkpoints
        autos = [pending for pending in kept if pending.kind == "auto"]
        dropped = {id(pending) for pending in autos[: max(0, len(autos) - self.keep_auto)]}
        self._checkpoints = [pending for pending in kept if id(pending) not in dropped]

    def flush(self) -> None:
        """Write the buffered batch; stop training when the lease is gone or cancel is asked.

        During a database outage this is a no-op until the next attempt is due.
        """
        if not self.outage.due():
            return

        def write_progress(
            session: Session,
            chunk: RunHistoryChunk | None,
            checkpoints: list[PendingCheckpoint],
            replace: bool,
        ) -> tuple[bool, str | None]:
            return execution.flush(
                session=session,
                run_id=self.run_id,
                owner=self.owner,
                lease_seconds=self.lease_seconds,
                progress=self.progress(),
                chunk=chunk,
                checkpoints=checkpoints,
                keep_auto=self.keep_auto,
                replace=replace,
            )

        _, answer = self.write(write_progress)
        if answer is not None:
            self._obey(*answer)

    def heartbeat(self) -> None:
        """Renew the lease if nothing was written lately (slow epochs, or an outage).

        Called from the heartbeat thread; the batch itself is only ever taken and
        written by the training thread (:meth:`flush`).
        """
        if self.outage.active:
            if not self.outage.due():
                return
        elif time.monotonic() - self.last_contact < self.lease_seconds / 3:
            return
        sent = time.monotonic()
        try:
            with self._lock, self.db.writing() as session:
                answer = execution.renew_lease(
                    session=session,
                    run_id=self.run_id,
                    owner=self.owner,
                    lease_seconds=self.lease_seconds,
                )
        except Exception as error:
            if not is_unavailable(error):
                raise
            self.outage.failed(error)
            return
        self.last_contact = time.monotonic()
        if answer[0]:
            self.lease_until = sent + self.lease_seconds
        self._obey(*answer)

    def _obey(self, owned: bool, stop: str | None) -> None:
        """Stop training when the lease was lost, or a cancel or pause was asked."""
        if not owned:
            self.lease_lost = True
            self.request_stop("lease_lost")
        elif stop is not None:  # "cancelled" or "paused"
            self.request_stop(stop)
