"""The sweep driver of both executors' supervisors (beside the lease sweeper).

Each round advances every queued or running sweep one :func:`app.services.sweep_driver.step`
(idempotent database transactions) and dispatches the runs it created or resumed. A
server killed in the middle of a step leaves either a committed trial or none; the
next round, on any server, continues from the database.

A worker that has just finished or paused a trial also steps its sweep
(:func:`after_trial`), so the next trial is queued at once rather than at the next
supervisor round (the same idempotent step: the two never create a trial twice).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from app.config import Settings
from app.db.database import Database
from app.db.errors import unavailable_reason
from app.db.models import Run
from app.services import sweep_driver
from app.services.runs import RunLimits

logger = logging.getLogger(__name__)


class SweepDriver:
    """Drive the sweeps stored in ``db``; ``submit`` wakes a worker for a run id."""

    def __init__(self, *, db: Database, settings: Settings, submit: Callable[[str], None]) -> None:
        self.db = db
        self.limits = RunLimits.from_settings(settings)
        self.submit = submit
        self._wanted = threading.Event()

    def request_round(self) -> None:
        """End the supervisor's current wait (:meth:`wait`): a sweep was created, and its
        first trials are queued now rather than up to ``BACKPROP_POLL_SECONDS`` later."""
        self._wanted.set()

    def wait(self, seconds: float) -> None:
        """Sleep until the supervisor's next round: ``seconds``, or until requested."""
        if self._wanted.wait(seconds):
            self._wanted.clear()

    def drive(self) -> list[str]:
        """One round over the active sweeps; return the run ids dispatched."""
        with self.db.reading() as session:
            sweep_ids = sweep_driver.active_sweep_ids(session)
        dispatched: list[str] = []
        for sweep_id in sweep_ids:
            try:
                run_ids = sweep_driver.step(self.db, sweep_id, self.limits)
            except Exception as error:
                if unavailable_reason(error) is not None:
                    raise  # the supervisor holds off while the database is away
                logger.exception("sweep %s: driver step failed", sweep_id)
                continue
            for run_id in run_ids:
                self.submit(run_id)
            dispatched.extend(run_ids)
        return dispatched


def after_trial(db: Database, settings: Settings, run_id: str) -> list[str]:
    """Step the sweep ``run_id`` is a trial of (none: nothing); the run ids to dispatch.

    Never raises: a failure is logged and the supervisor's next round does the step.
    """
    try:
        with db.reading() as session:
            run = session.get(Run, run_id)
            sweep_id = run.sweep_id if run is not None else None
        if sweep_id is None:
            return []
        return sweep_driver.step(db, sweep_id, RunLimits.from_settings(settings))
    except Exception as error:
        logger.warning("run %s: its sweep's step after it failed (%s)", run_id, error)
        return []
