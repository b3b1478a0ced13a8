"""Helpers for worker processes: die with the parent, log sensibly."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import multiprocessing
import os
import signal
import sys
import threading
from multiprocessing.process import BaseProcess

logger = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1


def _set_pdeathsig() -> bool:
    """Ask Linux to SIGKILL this process when its parent dies (no-op elsewhere)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return int(libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)) == 0
    except (OSError, AttributeError):  # pragma: no cover - exotic libc
        return False


def _exit_with(parent: BaseProcess) -> None:
    parent.join()  # returns once the parent's end of the start pipe is closed: it is gone
    logger.warning("the server (pid %s) is gone; worker %d exits", parent.pid, os.getpid())
    os._exit(1)


def die_with_parent() -> None:
    """Make sure this worker never outlives the process that started it.

    Sets ``PR_SET_PDEATHSIG`` (Linux: killed when the process that forked it dies,
    the fork server, which exits with the server) and starts a thread that waits on
    ``multiprocessing.parent_process()``'s sentinel, a pipe the server holds open while
    it lives (any platform, whichever process forked this one, and at once if the
    server died before this call).
    """
    _set_pdeathsig()
    parent = multiprocessing.parent_process()
    if parent is None:
        raise RuntimeError("die_with_parent() is for processes started by multiprocessing")
    threading.Thread(target=_exit_with, args=(parent,), name="parent-watchdog", daemon=True).start()
