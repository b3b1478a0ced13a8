"""The loop of one local worker process."""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import signal
from typing import Any

from app.config import Settings
from app.db.database import Database
from app.db.errors import unavailable_reason
from app.jobs.execute_run import default_owner
from app.jobs.fair_claim import execute_fairest
from app.jobs.process import die_with_parent
from app.jobs.sweep_driver import after_trial
from app.logs import configure_logging

logger = logging.getLogger(__name__)

WORKER_NICENESS = 10
"""Added to a worker's nice value: training yields the CPU to the API server's threads."""
TRIAL_ENDINGS = frozenset({"succeeded", "failed", "cancelled", "paused"})
"""Outcomes after which a sweep trial's sweep may go on (a free slot, a rung reached)."""


def worker_main(
    settings_data: dict[str, Any],
    wakeups: Any,
    stopping: Any,
    index: int,
    supervisor: str | None = None,
) -> None:
    """Entry point of a worker process: claim queued runs until told to stop.

    Parameters
    ----------
    settings_data : dict
        ``Settings.model_dump()`` of the server.
    wakeups : multiprocessing.Queue
        Run ids submitted by the server (hints; the run table is the queue, and an
        idle worker claims its fairest run, :func:`execute_fairest`).
    stopping : SharedStopFlag
        Set when the server shuts down.
    index : int
        The worker's slot in the pool (for logs).
    supervisor : str, optional
        The server's supervisor id, recorded with every lease this worker takes.
    """
    # First, so that every thread of the worker inherits it (Linux nice is per thread).
    os.nice(WORKER_NICENESS)
    die_with_parent()
    # Ctrl-C reaches the whole process group; the server stops us gracefully instead.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    settings = Settings(**settings_data)
    configure_logging(settings.log_format)
    db = Database(settings.database_url)
    owner = default_owner()
    logger.info("worker %d ready (owner %s)", index, owner)
    outage: str | None = None
    try:
        while not stopping.is_set():
            try:
                outcome = execute_fairest(
                    settings=settings,
                    db=db,
                    owner=owner,
                    supervisor=supervisor,
                    shutdown=stopping,
                )
            except Exception as error:
                reason = unavailable_reason(error)
                if reason is None:
                    raise
                if reason != outage:
                    logger.warning("worker %d: %s; waiting for it", index, reason)
                outage, outcome = reason, None
            else:
                outage = None
            if outcome is not None:
                if outcome.result in TRIAL_ENDINGS:  # a sweep's next trial, queued now
                    for run_id in after_trial(db, settings, outcome.run_id):
                        wakeups.put_nowait(run_id)
                continue
            # Nothing claimable (none queued, or other workers won the races): wait
            # for the next hint instead of spinning on the same rows.
            with contextlib.suppress(queue.Empty):
                wakeups.get(timeout=settings.poll_seconds)
    finally:
        db.dispose()
        logger.info("worker %d stopped", index)
