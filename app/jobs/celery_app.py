"""The Celery side of scale-out: the app, its one task, and the worker process hooks.

Messages carry a run id and nothing else (JSON, ``accept_content=["json"]``; no
pickle). The database stays the queue of record; a Celery message is a wake-up
for one worker, which trains the fairest queued run (round-robin over tenants)
rather than necessarily the one named, and the run's lease decides who trains:

- ``task_acks_late`` + ``task_reject_on_worker_lost``: a message is acknowledged
  when the task returns, and a pool process that dies mid-run puts it back.
- A message redelivered while its run still trains elsewhere (a run longer than
  Redis's ``visibility_timeout``, or the requeue after a pool process died while
  its lease still lives) finds a live lease, writes nothing and is dropped.
- Runs whose lease expired are re-queued and re-dispatched by the API's
  supervisor (:class:`app.jobs.celery_executor.CeleryExecutor`), so recovery never
  waits for the broker to restore an unacknowledged message.
- Warm shutdown (SIGTERM to ``backprop worker``): every pool process is told to
  stop its run at the next epoch, checkpoint, hand it back (``queued``) and send
  a fresh message for it, so another worker continues at once.
- The main process is its pool processes' supervisor
  (:class:`app.jobs.supervisor.SupervisorHeartbeat`, started at ``worker_init``,
  before the pool forks): a pool process that dies while it lives uses an attempt
  of its run; ``kill -9`` of the whole node does not.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from pathlib import Path
from typing import Any

from celery import Celery, signals

from app.config import Settings
from app.db.errors import is_unavailable, unavailable_reason
from app.jobs.execute_run import _database, execute_run
from app.jobs.fair_claim import execute_fairest
from app.jobs.lifecycle import Status
from app.jobs.supervisor import SupervisorHeartbeat
from app.jobs.sweep_driver import after_trial
from app.jobs.worker import TRIAL_ENDINGS
from app.logs import configure_logging

logger = logging.getLogger(__name__)

TASK_NAME = "backprop.execute_run"
QUEUE = "backprop.runs"
HANDBACK_SIGNAL = signal.SIGUSR2
"""Sent by the worker's main process to its pool processes on warm shutdown."""

_handback = threading.Event()
"""Set in a pool process when its worker shuts down: the run in progress is handed back."""

SUPERVISOR_ENV = "BACKPROP_SUPERVISOR_ID"
"""Set by the main process for its pool processes (inherited whether they fork or spawn)."""
_heartbeat: SupervisorHeartbeat | None = None
"""The main process's heartbeat (None in pool processes and outside ``backprop worker``)."""


def celery_config(settings: Settings) -> dict[str, Any]:
    """The Celery configuration for ``settings`` (broker, JSON only, long-task safety)."""
    return {
        "broker_url": settings.broker_url,
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": {
            "visibility_timeout": settings.broker_visibility_timeout,
            # kombu scans for unacknowledged messages to restore every
            # interval * throttle seconds (10 * 10 by default).
            "unacked_restore_interval": settings.broker_restore_interval,
            "unacked_restore_throttle": 1,
            "socket_connect_timeout": 5,
        },
        "task_serializer": "json",
        "result_serializer": "json",
        "event_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "task_ignore_result": True,
        "task_store_errors_even_if_ignored": False,
        "task_default_queue": QUEUE,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        # The lease, not the broker connection, decides whether a run still trains.
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "worker_hijack_root_logger": False,
        "worker_redirect_stdouts": False,
        "worker_send_task_events": False,
        "task_send_sent_event": False,
        "enable_utc": True,
    }


def make_celery(settings: Settings) -> Any:
    """A Celery app for ``settings`` with the ``backprop.execute_run`` task registered."""
    app = Celery("backprop", set_as_current=False)
    app.conf.update(celery_config(settings))

    @app.task(name=TASK_NAME, ignore_result=True)  # type: ignore[untyped-decorator]
    def run_task(run_id: str) -> str:
        return _run_task(app, settings, run_id)

    return app


def _run_task(app: Any, settings: Settings, run_id: Any) -> str:
    """Body of ``backprop.execute_run``: train the fairest queued run, else the named one.

    A message is a wake-up token: the delivery claims the queued run that is
    fairest now (:func:`app.jobs.fair_claim.execute_fairest`), which need not be
    the one it names (one message is published per queued run, so every queued run
    is still claimed once). Only when no queued run can be claimed does it try the
    named run, which the claim also takes when its lease expired; a duplicate
    delivery then finds nothing to do and drops itself.
    """
    if not isinstance(run_id, str) or not run_id.startswith("run_") or len(run_id) > 64:
        logger.error("dropping a message with an invalid run id: %r", run_id)
        return "invalid"
    supervisor = os.environ.get(SUPERVISOR_ENV) or None
    try:
        fairest = execute_fairest(
            settings=settings,
            db=_database(settings.database_url, os.getpid()),
            supervisor=supervisor,
            shutdown=_handback,
        )
    except Exception as exc:
        if not is_unavailable(exc):
            raise
        logger.warning(
            "run %s: the queue cannot be read (%s); the supervisor re-dispatches queued runs",
            run_id,
            unavailable_reason(exc),
            extra={"event": "run.database_unavailable", "run_id": run_id},
        )
        return "unavailable"
    if fairest is not None and fairest.run_id != run_id:
        logger.info(
            "delivery for run %s trained the fairest queued run %s",
            run_id,
            fairest.run_id,
            extra={"event": "run.delivery_redirected", "run_id": fairest.run_id},
        )
    outcome = fairest or execute_run(
        run_id, settings=settings, supervisor=supervisor, shutdown=_handback
    )
    run_id = outcome.run_id
    if outcome.result == "skipped":
        logger.info(
            "run %s: not claimable (%s); delivery dropped",
            run_id,
            _describe(settings, run_id),
            extra={"event": "run.delivery_dropped", "run_id": run_id},
        )
    elif outcome.result in TRIAL_ENDINGS:  # a sweep's next trial, dispatched now
        db = _database(settings.database_url, os.getpid())
        for next_run in after_trial(db, settings, run_id):
            app.send_task(TASK_NAME, args=[next_run], queue=QUEUE)
    elif outcome.result == "requeued":
        # Handed back (shutdown, or a pause withdrawn after the worker stopped for it):
        # wake a worker now (the message being acknowledged is this one; a duplicate
        # is harmless).
        app.send_task(TASK_NAME, args=[run_id], queue=QUEUE)
        logger.info(
            "run %s: handed back and re-dispatched",
            run_id,
            extra={"event": "run.redispatched", "run_id": run_id},
        )
    return outcome.result


def _describe(settings: Settings, run_id: str) -> str:
    """Why a run could not be claimed (for the worker log)."""
    from app.db.models import Run

    try:
        with _database(settings.database_url, os.getpid()).reading() as session:
            run = session.get(Run, run_id)
            if run is None:
                return "no such run"
            if run.status == Status.RUNNING:
                return f"running, lease held by {run.lease_owner} until {run.lease_expires_at}"
            return f"status {run.status}, attempt {run.attempts}"
    except Exception as exc:  # diagnostics only
        return f"status unknown: {type(exc).__name__}"


# -- worker process hooks (connected by app.cli before the worker starts) ---------------


def child_pids(pid: int) -> list[int]:
    """Pids whose parent is ``pid`` (Linux /proc)."""
    found: list[int] = []
    try:
        entries = list(Path("/proc").iterdir())
    except OSError:  # pragma: no cover - not Linux
        return found
    for entry in entries:
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def _on_shutting_down(**_: Any) -> None:
    """Main process, warm or cold shutdown: ask pool processes to hand their runs back."""
    for pid in child_pids(os.getpid()):
        with contextlib.suppress(OSError):
            os.kill(pid, HANDBACK_SIGNAL)


def _on_process_init(**_: Any) -> None:
    """Pool process start: hand back on :data:`HANDBACK_SIGNAL`; forget the main
    process's database connections (a forked child must never use or close them)."""
    global _heartbeat
    _handback.clear()
    signal.signal(HANDBACK_SIGNAL, lambda *_: _handback.set())
    if _heartbeat is not None:
        _heartbeat.db.reader.dispose(close=False)
        _heartbeat = None


def start_supervisor(settings: Settings) -> SupervisorHeartbeat:
    """Main process, before the pool starts: beat as the pool processes' supervisor."""
    global _heartbeat
    heartbeat = SupervisorHeartbeat(
        database_url=settings.database_url,
        kind="worker",
        lease_seconds=settings.lease_seconds,
        poll_seconds=settings.poll_seconds,
    )
    os.environ[SUPERVISOR_ENV] = heartbeat.id
    heartbeat.start()
    _heartbeat = heartbeat
    return heartbeat


def _stop_supervisor(**_: Any) -> None:
    """Main process, the pool has stopped: retire the supervisor row."""
    global _heartbeat
    if _heartbeat is not None:
        _heartbeat.stop()
        _heartbeat = None


def connect_worker_signals(settings: Settings) -> None:
    """Install the logging, supervisor, pool-process and shutdown hooks of ``backprop
    worker``."""

    def setup_logging(**_: Any) -> None:
        configure_logging(settings.log_format)

    def on_worker_init(**_: Any) -> None:
        start_supervisor(settings)

    signals.setup_logging.connect(setup_logging, weak=False)
    signals.worker_init.connect(on_worker_init, weak=False)
    signals.worker_process_init.connect(_on_process_init, weak=False)
    signals.worker_shutting_down.connect(_on_shutting_down, weak=False)
    signals.worker_shutdown.connect(_stop_supervisor, weak=False)


def worker_argv(*, concurrency: int, hostname: str, quiet: bool) -> list[str]:
    """The ``celery worker`` arguments of ``backprop worker``."""
    argv = ["--quiet"] if quiet else []  # a global option: no banner on stdout
    argv += [
        "worker",
        "--pool=prefork",
        f"--concurrency={concurrency}",
        "--prefetch-multiplier=1",
        "-O",
        "fair",
        f"--queues={QUEUE}",
        f"--hostname={hostname}",
        "--without-gossip",
        "--without-mingle",
        "--loglevel=INFO",
    ]
    return argv
