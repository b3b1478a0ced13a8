"""Re-queueing runs whose worker stopped renewing its lease (both executors' supervisors)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from app.db.database import Database
from app.db.errors import unavailable_reason
from app.jobs.lifecycle import Status
from app.services import execution

logger = logging.getLogger(__name__)

HOLD_LEASES = 2
"""Lease periods the sweeper waits after a failed round before it sweeps again."""


class LeaseSweeper:
    """Sweep expired leases (:func:`app.services.execution.sweep_expired`), except right
    after a database outage.

    While the database is unavailable no worker can renew its lease, so every
    lease looks expired the moment it comes back. Sweeping then would take
    every run away from its healthy worker and retrain it from its last
    checkpoint. After a failed round the sweeper waits two lease periods, in
    which live workers (who retry at least every third of a lease) renew, with
    room for a worker that is slow to get the CPU on a loaded machine.

    Parameters
    ----------
    db : Database
        The supervisor's database.
    lease_seconds : float
        ``BACKPROP_LEASE_SECONDS``.
    max_attempts : int
        ``BACKPROP_MAX_ATTEMPTS``.
    requeued : callable
        Called with each re-queued run's id (to wake a worker).
    """

    def __init__(
        self,
        *,
        db: Database,
        lease_seconds: float,
        max_attempts: int,
        requeued: Callable[[str], None],
    ) -> None:
        self.db = db
        self.lease_seconds = lease_seconds
        self.max_attempts = max_attempts
        self.requeued = requeued
        self._hold_until = 0.0
        self._outage_reason: str | None = None

    def sweep(self) -> list[str]:
        """Re-queue (and wake a worker for) runs whose lease expired; return their ids."""
        if time.monotonic() < self._hold_until:
            return []
        with self.db.reading() as session:
            expired = execution.has_expired_leases(session=session)
        requeued: list[str] = []
        if expired:
            with self.db.writing() as session:
                swept = execution.sweep_expired(session=session, max_attempts=self.max_attempts)
            requeued = [item.run_id for item in swept if item.status == Status.QUEUED]
        if self._outage_reason is not None:
            logger.warning("supervisor: the database answers again")
            self._outage_reason = None
        for run_id in requeued:
            self.requeued(run_id)
        return requeued

    def round_failed(self, error: BaseException) -> None:
        """Log a failed supervisor round; after a database outage, hold sweeping."""
        reason = unavailable_reason(error)
        if reason is None:
            logger.error("supervisor round failed", exc_info=error)
            return
        self._hold_until = time.monotonic() + HOLD_LEASES * self.lease_seconds
        if self._outage_reason != reason:
            logger.warning(
                "supervisor: %s (%s); expired leases are swept %.0f s after it is back",
                reason,
                type(error).__name__,
                HOLD_LEASES * self.lease_seconds,
                extra={"event": "database.unavailable"},
            )
        self._outage_reason = reason
