"""The Celery executor of ``backprop serve`` (``BACKPROP_BROKER_URL=redis://…``).

``submit`` publishes ``backprop.execute_run(run_id)``; ``backprop worker``
processes on any machine train. The server keeps a supervisor thread that makes
the database, not the broker, the source of truth:

- **Expired leases.** A run whose worker stopped renewing its lease (``kill -9``,
  a lost machine, a pool process that died) is re-queued, or failed after
  ``BACKPROP_MAX_ATTEMPTS`` claims, or cancelled if a cancel was asked, and a new
  message is sent for a re-queued run at once. Recovery takes at most
  ``BACKPROP_LEASE_SECONDS`` + ``BACKPROP_POLL_SECONDS``, never kombu's restore cycle.
- **Lost messages.** A run that stays ``queued`` across two supervisor rounds while
  the broker queue is empty has no message (the broker lost it, or publishing
  failed while Redis was down): it is re-dispatched. A duplicate message is
  harmless: the second delivery finds the run claimed and drops itself.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any

from app.config import Settings
from app.db.database import Database
from app.jobs.celery_app import QUEUE, TASK_NAME, make_celery
from app.jobs.sweep_driver import SweepDriver
from app.jobs.sweeper import LeaseSweeper
from app.logs import log_transition
from app.services import execution

logger = logging.getLogger(__name__)

ORPHAN_SCAN_LIMIT = 500


class CeleryExecutor:
    """Dispatch runs to Celery workers through the broker.

    Parameters
    ----------
    settings : Settings
        ``broker_url`` and the lease/poll settings of the supervisor.
    db : Database
        The server's database (sweeping expired leases, finding orphans).
    """

    def __init__(self, *, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db
        self.app = make_celery(settings)
        self._halt = threading.Event()
        self._supervisor: threading.Thread | None = None
        self._connection: Any = None
        self._suspects: set[str] = set()
        self.sweeper = LeaseSweeper(
            db=db,
            lease_seconds=settings.lease_seconds,
            max_attempts=settings.max_attempts,
            requeued=self.submit,
        )
        self.sweeps = SweepDriver(db=db, settings=settings, submit=self.submit)
        self.broker_queue_length: int | None = None
        """Messages waiting in the broker queue at the last supervisor round."""

    def start(self) -> None:
        """Start the supervisor thread."""
        logger.info("dispatching runs through Celery (queue %r)", QUEUE)
        self._supervisor = threading.Thread(
            target=self._supervise, name="backprop-celery-supervisor", daemon=True
        )
        self._supervisor.start()

    def submit(self, run_id: str) -> None:
        """Publish ``backprop.execute_run(run_id)`` (see :meth:`publish`)."""
        self.publish(run_id)

    def publish(self, run_id: str) -> bool:
        """Publish ``backprop.execute_run(run_id)``; False (logged) when the broker is down.

        A run whose message could not be published stays ``queued`` and is
        re-dispatched by the supervisor once the broker answers.
        """
        try:
            self.app.send_task(
                TASK_NAME, args=[run_id], queue=QUEUE, retry=True, retry_policy={"max_retries": 1}
            )
        except Exception as exc:
            logger.error(
                "run %s: could not publish to the broker (%s: %s); the supervisor retries",
                run_id,
                type(exc).__name__,
                exc,
                extra={"event": "run.dispatch_failed", "run_id": run_id},
            )
            return False
        return True

    def stop(self) -> None:
        """Stop the supervisor (workers are separate processes and keep running)."""
        self._halt.set()
        self.sweeps.request_round()  # ends the supervisor's wait
        if self._supervisor is not None:
            self._supervisor.join(10)
        self._close_connection()

    # -- supervisor ---------------------------------------------------------------------

    def drive_sweeps(self) -> None:
        """Run the sweep driver's round now (non-blocking): a sweep was created."""
        self.sweeps.request_round()

    def _supervise(self) -> None:
        while not self._halt.is_set():
            self.sweeps.wait(self.settings.poll_seconds)
            if self._halt.is_set():
                break
            try:
                self.sweep()
                self.sweeps.drive()
                self.redispatch_orphans()
            except Exception as error:
                self.sweeper.round_failed(error)

    def sweep(self) -> list[str]:
        """Re-queue (and re-dispatch) runs whose lease expired; return their ids."""
        return self.sweeper.sweep()

    def _queue_length(self) -> int:
        if self._connection is None:
            self._connection = self.app.connection_for_write()
        channel = self._connection.default_channel
        return int(channel.queue_declare(queue=QUEUE, passive=False).message_count)

    def _close_connection(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):  # already broken
                self._connection.release()
            self._connection = None

    def redispatch_orphans(self) -> list[str]:
        """Re-dispatch runs queued for two rounds while the broker queue was empty."""
        with self.db.reading() as session:
            queued = set(execution.queued_run_ids(session=session, limit=ORPHAN_SCAN_LIMIT))
        if not queued:
            self._suspects = set()
            return []
        try:
            length = self._queue_length()
        except Exception as exc:
            self._close_connection()
            self.broker_queue_length = None
            logger.warning("broker unreachable (%s: %s)", type(exc).__name__, exc)
            return []
        self.broker_queue_length = length
        if length > 0:
            self._suspects = set()
            return []
        orphans = sorted(queued & self._suspects)
        self._suspects = queued - set(orphans)
        for run_id in orphans:
            log_transition(
                run_id,
                "queued",
                message="no message in the broker; re-dispatched",
                level=logging.WARNING,
            )
            self.submit(run_id)
        return orphans
