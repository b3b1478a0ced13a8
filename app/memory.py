"""Give freed heap memory back to the operating system (glibc's allocator).

glibc keeps freed memory of its arenas for reuse. Two things kept the server larger
than its baseline after a large request (issue 10's RSS-after goal):

- Blocks over the *mmap threshold* are mapped on their own and unmapped on ``free``;
  but glibc raises that threshold to the size of each mapped block it frees (up to
  32 MiB), so after one large request the next requests' 1-32 MiB arrays (a chunk of
  ``predict``, a column of a dataset) came from the heap, and once freed stayed there
  between smaller live blocks: +30-45 MiB after a 1M-unit network was created or
  a JSON upload was parsed, until a later request reused it.
  :func:`map_large_allocations` fixes the threshold at 1 MiB, which turns that
  adjustment off: every block of 1 MiB or more goes back to the system when freed.
- The small pieces of a large parse (Python floats, JSON chunks, parser buffers):
  ``malloc_trim(0)`` (:func:`release_freed_memory`) returns their free pages at once.

Both are no-ops where glibc is absent.
"""

from __future__ import annotations

import ctypes
from functools import lru_cache

M_MMAP_THRESHOLD = -3
"""``mallopt``'s parameter number for the mmap threshold (glibc's ``malloc.h``)."""

LARGE_ALLOCATION_BYTES = 1 << 20
"""Blocks of this size or more are mapped on their own, and unmapped when freed, in
``backprop serve``. Below glibc's dynamic maximum (32 MiB) and far above its initial
128 KiB: the arrays of a request are larger; the objects of the event loop smaller."""


@lru_cache(maxsize=1)
def _libc() -> ctypes.CDLL | None:
    # The process's own symbols (dlopen(NULL)), which include libc's: not
    # ctypes.util.find_library, which runs ldconfig in a subprocess (a fork of the
    # whole server) on first use.
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None


def map_large_allocations(threshold_bytes: int = LARGE_ALLOCATION_BYTES) -> bool:
    """Fix the allocator's mmap threshold, so freed large blocks leave the process.

    For the server process only: spawned training workers keep glibc's adaptive
    threshold, which saves them a page fault per page of every batch's arrays.

    Parameters
    ----------
    threshold_bytes : int
        Blocks of at least this many bytes are mapped on their own.

    Returns
    -------
    bool
        Whether the allocator took the setting (False without glibc).
    """
    libc = _libc()
    return libc is not None and libc.mallopt(M_MMAP_THRESHOLD, threshold_bytes) == 1


def release_freed_memory() -> None:
    """Return the allocator's free memory to the OS (glibc ``malloc_trim(0)``)."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
