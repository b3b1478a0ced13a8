"""A stop flag shared with worker processes that a killed process cannot wedge.

``multiprocessing.Event`` guards its state with a lock; a worker killed (SIGKILL, OOM)
while it holds that lock inside ``is_set()`` leaves it held forever, and the pool's
supervisor and its shutdown then block on the next ``is_set()``/``set()``. One shared
byte read and written without a lock (a single aligned store is atomic) has no such
failure: a reader sees the flag at the latest by its next poll.
"""

from __future__ import annotations

from multiprocessing.context import BaseContext
from typing import Any


class SharedStopFlag:
    """A set-once flag in shared memory, with the ``is_set()``/``set()`` of an Event."""

    def __init__(self, context: BaseContext) -> None:
        self._value: Any = context.RawValue("b", 0)

    def is_set(self) -> bool:
        """True once :meth:`set` was called in any process."""
        return bool(self._value.value)

    def set(self) -> None:
        """Raise the flag for every process sharing it."""
        self._value.value = 1
