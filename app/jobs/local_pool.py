"""The default executor: ``BACKPROP_WORKERS`` worker processes started by the server.

Workers are forked by a fork server (:func:`worker_context`: no inherited database
connections, no inherited threads, and the worker's modules imported once), claim the
fairest queued run (round-robin over tenants,
:func:`app.services.execution.next_queued_run_id`), and are woken by a
multiprocessing queue as soon as a run is submitted, with a poll fallback. A
supervisor thread in the server restarts dead workers and re-queues runs whose
lease expired (a worker that crashed, or a server killed with ``kill -9``).
Workers die with the server (``PR_SET_PDEATHSIG`` plus a parent watchdog). The
server is their supervisor (:class:`app.jobs.supervisor.SupervisorHeartbeat`):
a worker that dies while it lives uses an attempt of its run; a server that dies
with its workers does not.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import threading
from multiprocessing.context import ForkServerContext
from multiprocessing.process import BaseProcess
from typing import Any

from app.config import Settings
from app.db.database import Database
from app.jobs.stop_flag import SharedStopFlag
from app.jobs.supervisor import SupervisorHeartbeat
from app.jobs.sweep_driver import SweepDriver
from app.jobs.sweeper import LeaseSweeper

logger = logging.getLogger(__name__)

STOP_GRACE_SECONDS = 10.0
WORKER_MODULES = ("__main__", "app.jobs.worker")
"""What the fork server imports before it forks the first worker."""


def worker_context() -> ForkServerContext:
    """The ``forkserver`` context the workers start in.

    The fork server is a fresh interpreter, started with the first worker, that imports
    :data:`WORKER_MODULES` and forks every worker from that state: a worker is ready in
    milliseconds, where a ``spawn``-ed one imported NumPy, SQLAlchemy and the app again
    (1.0-1.4 s of CPU, each time the supervisor restarts one), and the workers share
    the imported code's pages. Like ``spawn``, and unlike ``fork`` from the server,
    nothing of the server is inherited: no database connections, no threads, no
    limit on BLAS threads. The fork server exits when the server does.
    """
    context = mp.get_context("forkserver")
    context.set_forkserver_preload(list(WORKER_MODULES))
    return context


class LocalPool:
    """A pool of worker processes fed from the ``run`` table.

    Parameters
    ----------
    settings : Settings
        Pool size, lease and polling settings; passed to workers as plain data.
    db : Database
        The server's database, used by the supervisor (sweeping expired leases).
    """

    def __init__(self, *, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db
        self._ctx = worker_context()
        self._wakeups: Any = self._ctx.Queue()
        self._stopping = SharedStopFlag(self._ctx)
        self._processes: list[BaseProcess] = []
        self._supervisor: threading.Thread | None = None
        self._halt = threading.Event()
        self.heartbeat = SupervisorHeartbeat(
            database_url=settings.database_url,
            kind="serve",
            lease_seconds=settings.lease_seconds,
            poll_seconds=settings.poll_seconds,
        )
        self.sweeper = LeaseSweeper(
            db=db,
            lease_seconds=settings.lease_seconds,
            max_attempts=settings.max_attempts,
            requeued=self._wake_requeued,
        )
        self.sweeps = SweepDriver(db=db, settings=settings, submit=self.submit)

    @property
    def processes(self) -> list[BaseProcess]:
        """The current worker processes (for tests and diagnostics)."""
        return list(self._processes)

    def _spawn(self, index: int) -> BaseProcess:
        from app.jobs.worker import worker_main

        process = self._ctx.Process(
            target=worker_main,
            args=(
                self.settings.model_dump(),
                self._wakeups,
                self._stopping,
                index,
                self.heartbeat.id,
            ),
            name=f"backprop-worker-{index}",
            daemon=True,
        )
        process.start()
        logger.info("started worker %d (pid %s)", index, process.pid)
        return process

    def start(self) -> None:
        """Start the heartbeat, spawn the workers and the supervisor thread."""
        self.heartbeat.start()
        self._processes = [self._spawn(i) for i in range(self.settings.workers)]
        self._supervisor = threading.Thread(
            target=self._supervise, name="backprop-supervisor", daemon=True
        )
        self._supervisor.start()

    def submit(self, run_id: str) -> None:
        """Wake one idle worker (non-blocking)."""
        self._wakeups.put_nowait(run_id)

    def drive_sweeps(self) -> None:
        """Run the sweep driver's round now (non-blocking): a sweep was created."""
        self.sweeps.request_round()

    def _supervise(self) -> None:
        while not self._halt.is_set():
            self.sweeps.wait(self.settings.poll_seconds)
            if self._halt.is_set():
                break
            self._restart_dead()
            try:
                self.sweeper.sweep()
                self.sweeps.drive()
            except Exception as error:
                self.sweeper.round_failed(error)

    def _restart_dead(self) -> None:
        for index, process in enumerate(self._processes):
            if not process.is_alive() and not self._stopping.is_set():
                logger.warning(
                    "worker %d (pid %s) exited with %s; restarting",
                    index,
                    process.pid,
                    process.exitcode,
                )
                self._processes[index] = self._spawn(index)

    def _wake_requeued(self, run_id: str) -> None:
        logger.warning("run %s: lease expired; re-queued", run_id)
        self.submit(run_id)

    def stop(self) -> None:
        """Ask workers to checkpoint and hand back their runs, then stop them."""
        self._stopping.set()
        self._halt.set()
        self.sweeps.request_round()  # ends the supervisor's wait
        if self._supervisor is not None:
            self._supervisor.join()
        for _ in self._processes:
            self._wakeups.put_nowait("")
        for process in self._processes:
            process.join(STOP_GRACE_SECONDS)
        for process in self._processes:
            if process.is_alive():
                logger.warning("worker pid %s did not stop in time; killing it", process.pid)
                process.kill()
                process.join()
        self._wakeups.close()
        self._wakeups.join_thread()
        self.heartbeat.stop()
