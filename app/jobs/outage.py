"""A worker's view of a database outage: when to retry, and logging it once."""

from __future__ import annotations

import logging
import threading
import time

from app.db.errors import unavailable_reason

logger = logging.getLogger(__name__)

FIRST_RETRY_SECONDS = 0.25


class Outage:
    """Exponential backoff of the writes of one run while the database is unavailable.

    Training goes on during an outage: the unwritten history and checkpoints stay
    in memory and are written by the first attempt that succeeds. The first
    failure and the recovery are logged once each, not every attempt.

    Parameters
    ----------
    run_id : str
        For the logs.
    max_delay : float
        The longest wait between two attempts (a third of the lease: once the
        database is back, the lease is renewed well before it could expire).
    """

    def __init__(self, run_id: str, max_delay: float) -> None:
        self.run_id = run_id
        self.max_delay = max(max_delay, FIRST_RETRY_SECONDS)
        self.since: float | None = None
        self.failures = 0
        self.ambiguous = False
        """A write failed: it may have been committed all the same (the connection
        broke during COMMIT), so the next write replaces what it would repeat."""
        self._next_try = 0.0
        self._lock = threading.Lock()

    @property
    def active(self) -> bool:
        """True between a failed write and the next successful one."""
        return self.since is not None

    def due(self) -> bool:
        """True when no outage is going on, or its next attempt is due."""
        return self.since is None or time.monotonic() >= self._next_try

    def wait_seconds(self) -> float:
        """Seconds until the next attempt is due (0 outside an outage)."""
        return max(0.0, self._next_try - time.monotonic()) if self.since is not None else 0.0

    def failed(self, error: BaseException) -> None:
        """Record a failed write (an error :func:`app.db.errors.unavailable_reason` knows)."""
        with self._lock:
            now = time.monotonic()
            self.failures += 1
            self.ambiguous = True
            if self.since is None:
                self.since = now
                logger.warning(
                    "run %s: cannot write progress (%s: %s); training goes on and the "
                    "unwritten epochs and checkpoints are kept until the database is back",
                    self.run_id,
                    unavailable_reason(error),
                    type(error).__name__,
                    extra={"event": "run.database_unavailable", "run_id": self.run_id},
                )
            delay = min(self.max_delay, FIRST_RETRY_SECONDS * 2 ** min(self.failures - 1, 16))
            self._next_try = now + delay

    def succeeded(self) -> None:
        """Record a successful write; log the recovery after an outage."""
        with self._lock:
            if self.since is not None:
                logger.warning(
                    "run %s: the database is back after %.1f s (%d failed writes); "
                    "progress written",
                    self.run_id,
                    time.monotonic() - self.since,
                    self.failures,
                    extra={"event": "run.database_back", "run_id": self.run_id},
                )
            self.since = None
            self.failures = 0
            self.ambiguous = False
            self._next_try = 0.0

    def outage_seconds(self) -> float:
        """How long the current outage has lasted (0 outside an outage)."""
        return 0.0 if self.since is None else time.monotonic() - self.since
