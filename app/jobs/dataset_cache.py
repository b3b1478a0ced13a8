"""Decoded datasets a worker process keeps between runs, keyed by their sha256.

A sweep of runs on one dataset used to read and decode the stored blob for every
run (38% of an MNIST-sized run). :class:`DatasetCache` keeps the most recently
used decoded ``(X, y)`` pairs up to a byte budget (``BACKPROP_DATASET_CACHE_BYTES``),
least recently used first out. The key is the dataset's ``sha256`` (the hash of
the stored arrays), so two datasets with the same content share an entry and a
deleted-and-reuploaded dataset is still found. Arrays are read-only views: no
run can change what the next one trains on.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from numpy.typing import NDArray

logger = logging.getLogger(__name__)

Arrays = tuple[NDArray[Any], NDArray[Any]]


class DatasetCache:
    """An LRU of decoded datasets bounded by their bytes."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, Arrays] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def size_bytes(self) -> int:
        """Bytes of the arrays held."""
        return self._bytes

    def clear(self) -> None:
        """Forget every entry (the counters stay)."""
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def get(self, key: str, load: Callable[[], Arrays]) -> Arrays:
        """The arrays of ``key``, from the cache or by ``load()`` (then kept if they fit)."""
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
                self.hits += 1
                return found
        arrays = load()
        self.misses += 1
        self._put(key, arrays)
        return arrays

    def _put(self, key: str, arrays: Arrays) -> None:
        size = sum(int(array.nbytes) for array in arrays)
        if size > self.max_bytes:
            return
        for array in arrays:
            array.setflags(write=False)
        with self._lock:
            if key in self._entries:
                return
            while self._entries and self._bytes + size > self.max_bytes:
                _, evicted = self._entries.popitem(last=False)
                self._bytes -= sum(int(array.nbytes) for array in evicted)
            self._entries[key] = arrays
            self._bytes += size
        logger.debug("dataset %s cached (%d bytes, %d in all)", key[:12], size, self._bytes)


_CACHE: DatasetCache | None = None


def process_cache(max_bytes: int) -> DatasetCache:
    """This process's cache (created on first use; its budget follows the setting)."""
    global _CACHE
    if _CACHE is None:
        _CACHE = DatasetCache(max_bytes)
    _CACHE.max_bytes = max_bytes
    return _CACHE
