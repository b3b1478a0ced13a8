"""The heartbeat of a process that supervises workers (``serve``'s pool, ``worker``'s main).

Attempts count only a worker dying while its supervisor lived: a worker's lease
records its supervisor's id, and the sweep compares the supervisor's last beat
with the lease's expiry (both in the database's clock). So each supervising
process keeps a row fresh here:

- ``backprop serve`` with the local pool: the server process (its workers die
  with it, ``PR_SET_PDEATHSIG``).
- ``backprop worker``: Celery's main process (its pool processes die with it).

It beats every ``min(BACKPROP_POLL_SECONDS, BACKPROP_LEASE_SECONDS / 3)`` and
counts as alive until a lease after its last beat, so by the time a dead
service's leases expire, its supervisor is already known to be dead and the
runs go back to the queue without an attempt.

After an outage of the database its beats keep it alive but do not move
``beat_at`` for one lease: its workers could not renew their leases either,
and get that long to do so before an expired lease counts against them.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid

from app.db.database import Database
from app.db.errors import unavailable_reason
from app.services import supervisors

logger = logging.getLogger(__name__)

PRUNE_EVERY_SECONDS = 3600.0


def supervisor_id(kind: str) -> str:
    """A new supervisor id: kind, host, pid and a random suffix (pids are reused)."""
    return f"{kind}:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class SupervisorHeartbeat:
    """This process's row in ``supervisor`` and the thread that keeps it fresh.

    It has a database engine of its own, so that a beat never waits for a pooled
    connection behind the API's requests (a supervisor that cannot beat for a
    lease is taken for dead).

    Parameters
    ----------
    database_url : str
        ``BACKPROP_DATABASE_URL``.
    kind : str
        ``serve`` or ``worker``.
    lease_seconds, poll_seconds : float
        ``BACKPROP_LEASE_SECONDS`` (also how long a beat keeps it alive) and
        ``BACKPROP_POLL_SECONDS`` (it beats at least that often).
    """

    def __init__(
        self, *, database_url: str, kind: str, lease_seconds: float, poll_seconds: float
    ) -> None:
        self.db = Database(database_url)
        self.kind = kind
        self.id = supervisor_id(kind)
        self.interval = min(poll_seconds, lease_seconds / 3)
        self.ttl = lease_seconds
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None
        self._outage: str | None = None
        self._steady_after = 0.0  # time.monotonic() from which beats move beat_at
        self._next_prune = 0.0

    def start(self) -> None:
        """Beat once now (so the row exists before a worker claims), then in a thread."""
        self.beat()
        self._thread = threading.Thread(
            target=self._run, name=f"supervisor-{self.kind}", daemon=True
        )
        self._thread.start()
        logger.info("supervisor %s: beating every %.2f s", self.id, self.interval)

    def _run(self) -> None:
        while not self._halt.wait(self.interval):
            self.beat()

    def beat(self) -> bool:
        """Write one heartbeat; False (logged once per outage) when the database is down.

        A beat within a lease after an outage is not steady (see the module)."""
        steady = self._outage is None and time.monotonic() >= self._steady_after
        try:
            with self.db.writing() as session:
                supervisors.beat(
                    session=session,
                    supervisor_id=self.id,
                    kind=self.kind,
                    host=socket.gethostname(),
                    pid=os.getpid(),
                    ttl_seconds=self.ttl,
                    steady=steady,
                )
            if time.monotonic() >= self._next_prune:
                self._next_prune = time.monotonic() + PRUNE_EVERY_SECONDS
                with self.db.writing() as session:
                    supervisors.prune(session=session)
        except Exception as error:
            reason = unavailable_reason(error)
            if reason is None:
                logger.exception("supervisor %s: heartbeat failed", self.id)
            elif reason != self._outage:
                logger.warning("supervisor %s: cannot beat (%s)", self.id, reason)
            self._outage = reason or self._outage
            return False
        if self._outage is not None:
            logger.warning("supervisor %s: beating again", self.id)
            self._outage = None
            self._steady_after = time.monotonic() + self.ttl
        return True

    def stop(self) -> None:
        """Stop beating and delete the row (call after the workers stopped)."""
        self._halt.set()
        if self._thread is not None:
            self._thread.join(10)
        try:
            with self.db.writing() as session:
                supervisors.retire(session=session, supervisor_id=self.id)
        except Exception as error:  # the row expires by itself
            logger.warning("supervisor %s: could not retire (%s)", self.id, error)
        finally:
            self.db.dispose()
