"""Helpers for worker processes: die with the parent, log sensibly."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import signal
import sys
import threading
import time

logger = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
WATCHDOG_SECONDS = 1.0


def _set_pdeathsig() -> bool:
    """Ask Linux to SIGKILL this process when its parent dies (no-op elsewhere)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return int(libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)) == 0
    except (OSError, AttributeError):  # pragma: no cover - exotic libc
        return False


def _watch_parent(parent_pid: int) -> None:
    while True:
        if os.getppid() != parent_pid:
            logger.warning("parent process %d is gone; worker %d exits", parent_pid, os.getpid())
            os._exit(1)
        time.sleep(WATCHDOG_SECONDS)


def die_with_parent(parent_pid: int) -> None:
    """Make sure this worker never outlives ``parent_pid``.

    Sets ``PR_SET_PDEATHSIG`` (immediate, Linux) and starts a watchdog thread that
    polls the parent pid (portable, and covers the race where the parent died
    before the prctl call).
    """
    _set_pdeathsig()
    if os.getppid() != parent_pid:
        os._exit(1)
    threading.Thread(
        target=_watch_parent, args=(parent_pid,), name="parent-watchdog", daemon=True
    ).start()
