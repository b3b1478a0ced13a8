"""Give freed heap memory back to the operating system after large requests.

glibc's allocator keeps freed memory of its arenas for reuse; after a request that
allocated hundreds of MiB in small pieces (Python floats, JSON chunks, parser
buffers) the process would stay that large until some later allocation reused it.
``malloc_trim(0)`` returns the free pages at once. A no-op where glibc is absent.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from functools import lru_cache


@lru_cache(maxsize=1)
def _malloc_trim() -> Callable[[int], int] | None:
    # The process's own symbols (dlopen(NULL)), which include libc's: not
    # ctypes.util.find_library, which runs ldconfig in a subprocess (a fork of the
    # whole server) on first use.
    try:
        trim: Callable[[int], int] = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


def release_freed_memory() -> None:
    """Return the allocator's free memory to the OS (glibc ``malloc_trim(0)``)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
