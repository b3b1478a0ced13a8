"""Executors: how a queued run reaches ``execute_run``.

The run row is the queue. An executor only has to make sure that some worker
eventually calls :func:`app.jobs.execute_run.execute_run` with the run's id, and
preferably soon: :meth:`Executor.submit` is a wake-up hint sent after the run was
committed. The local pool (default) and a Celery executor (``BACKPROP_BROKER_URL``,
a later issue) implement the same protocol.
"""

from __future__ import annotations

import logging
from typing import Protocol

from app.config import Settings
from app.db import Database

logger = logging.getLogger(__name__)


class ExecutorUnavailableError(RuntimeError):
    """The configured executor cannot run in this build or environment."""


class Executor(Protocol):
    """Runs queued runs somewhere other than the web server's threads."""

    def start(self) -> None:
        """Start workers (called once, in the server's lifespan)."""

    def submit(self, run_id: str) -> None:
        """Signal that ``run_id`` was queued (must not block)."""

    def stop(self) -> None:
        """Stop workers; running runs checkpoint and go back to the queue."""


class InertExecutor:
    """No workers (``BACKPROP_WORKERS=0``): runs stay queued for another server."""

    def start(self) -> None:
        """Nothing to start."""
        logger.warning("BACKPROP_WORKERS=0: runs are accepted but not executed by this server")

    def submit(self, run_id: str) -> None:
        """Nothing to wake."""

    def stop(self) -> None:
        """Nothing to stop."""


CELERY_NOT_READY = (
    "BACKPROP_BROKER_URL is set, but the Celery executor is not implemented yet "
    "(it arrives with the Celery issue). Unset BACKPROP_BROKER_URL to use the local "
    "process pool (BACKPROP_WORKERS processes started by `backprop serve`)."
)


def make_executor(settings: Settings, db: Database) -> Executor:
    """Choose the executor the settings ask for.

    Raises
    ------
    ExecutorUnavailableError
        When ``broker_url`` asks for Celery (not implemented yet).
    """
    if settings.broker_url:
        raise ExecutorUnavailableError(CELERY_NOT_READY)
    if settings.workers == 0:
        return InertExecutor()
    from app.jobs.local_pool import LocalPool

    return LocalPool(settings=settings, db=db)
