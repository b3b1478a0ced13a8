"""The pool's shutdown flag survives a worker killed while it reads the flag.

With ``multiprocessing.Event`` a worker SIGKILLed inside ``is_set()`` left the Event's
lock held and the server's shutdown blocked forever in ``set()``.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading
import time

from app.jobs.stop_flag import SharedStopFlag


def _poll_until_set(flag: SharedStopFlag) -> None:
    while not flag.is_set():
        pass


def _set_in_thread(flag: SharedStopFlag) -> bool:
    thread = threading.Thread(target=flag.set, daemon=True)
    thread.start()
    thread.join(5)
    return not thread.is_alive()


def test_set_returns_after_readers_are_killed_mid_read_and_readers_see_it() -> None:
    context = mp.get_context("spawn")
    flag = SharedStopFlag(context)
    readers = [context.Process(target=_poll_until_set, args=(flag,)) for _ in range(4)]
    for reader in readers:
        reader.start()
    time.sleep(1.0)  # every reader is spinning in is_set()
    for reader in readers[:2]:
        assert reader.pid is not None
        os.kill(reader.pid, signal.SIGKILL)
        reader.join(5)
    assert not flag.is_set()
    assert _set_in_thread(flag), "set() blocked after a reader was killed"
    assert flag.is_set()
    for reader in readers[2:]:
        reader.join(10)
        assert reader.exitcode == 0, "a live reader did not see the flag"
