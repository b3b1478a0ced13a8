"""Executors: how a queued run reaches ``execute_run``.

The run row is the queue. An executor only has to make sure that some worker
eventually calls :func:`app.jobs.execute_run.execute_run` with the run's id, and
preferably soon: :meth:`Executor.submit` is a wake-up hint sent after the run was
committed. The local pool (default) and the Celery executor (``BACKPROP_BROKER_URL``,
:mod:`app.jobs.celery_executor`) implement the same protocol.
"""

from __future__ import annotations

import logging
from typing import Protocol

from app.config import Settings
from app.db.database import Database

logger = logging.getLogger(__name__)


class ExecutorUnavailableError(RuntimeError):
    """The configured executor cannot run in this build or environment."""


class Executor(Protocol):
    """Runs queued runs somewhere other than the web server's threads."""

    def start(self) -> None:
        """Start workers (called once, in the server's lifespan)."""

    def submit(self, run_id: str) -> None:
        """Signal that ``run_id`` was queued (must not block)."""

    def drive_sweeps(self) -> None:
        """Signal that a sweep was created: drive the sweeps now (must not block)."""

    def stop(self) -> None:
        """Stop workers; running runs checkpoint and go back to the queue."""


class InertExecutor:
    """No workers (``BACKPROP_WORKERS=0``): runs stay queued for another server."""

    def start(self) -> None:
        """Nothing to start."""
        logger.warning("BACKPROP_WORKERS=0: runs are accepted but not executed by this server")

    def submit(self, run_id: str) -> None:
        """Nothing to wake."""

    def drive_sweeps(self) -> None:
        """Nothing to drive: another server's supervisor does it."""

    def stop(self) -> None:
        """Nothing to stop."""


SUPPORTED_BROKERS = ("redis://", "rediss://")


def make_executor(settings: Settings, db: Database) -> Executor:
    """Choose the executor the settings ask for.

    Raises
    ------
    ExecutorUnavailableError
        When ``broker_url`` is not a Redis URL.
    """
    if settings.broker_url:
        check_broker_url(settings.broker_url)
        from app.jobs.celery_executor import CeleryExecutor

        return CeleryExecutor(settings=settings, db=db)
    if settings.workers == 0:
        return InertExecutor()
    from app.jobs.local_pool import LocalPool

    return LocalPool(settings=settings, db=db)


def check_broker_url(url: str) -> None:
    """Raise :class:`ExecutorUnavailableError` unless ``url`` is a Redis broker URL."""
    if not url.startswith(SUPPORTED_BROKERS):
        raise ExecutorUnavailableError(
            f"BACKPROP_BROKER_URL must be a Redis URL (redis://host:6379/0 or rediss://…), "
            f"got {url.split('://', 1)[0]}://…"
        )
