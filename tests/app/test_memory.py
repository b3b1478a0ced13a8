"""The allocator settings of :mod:`app.memory`, in a fresh interpreter each."""

from __future__ import annotations

import subprocess
import sys

import pytest

from app.memory import map_large_allocations, release_freed_memory

FRAGMENT = """
import os, sys
import numpy as np
from app.memory import map_large_allocations
from tests.support.subscribers import rss_kib

def rss_mib():
    return rss_kib(os.getpid()) // 1024

if sys.argv[1] == "mapped":
    assert map_large_allocations()
baseline = rss_mib()
large = np.ones(2 << 20)  # 16 MiB, mapped; freeing it raises glibc's adaptive threshold
del large
arrays, pins = [], []
for _ in range(100):  # 2 MiB arrays between small live blocks, as a request leaves them
    arrays.append(np.ones(2 << 17))
    pins.append(np.ones(1000))
del arrays
print(rss_mib() - baseline)
"""


def _growth_mib(mode: str) -> int:
    result = subprocess.run(
        [sys.executable, "-c", FRAGMENT, mode], capture_output=True, text=True, check=True
    )
    return int(result.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_freed_large_arrays_leave_the_process_only_with_the_fixed_threshold() -> None:
    """200 MiB of freed 2 MiB arrays stay in the heap under the adaptive threshold (the
    server's residue after large requests), and go back at once with the fixed one."""
    assert _growth_mib("adaptive") > 150
    assert _growth_mib("mapped") < 20


def test_the_settings_are_safe_to_apply_in_this_process() -> None:
    """Both calls succeed on glibc and leave the allocator usable."""
    assert map_large_allocations(32 << 20)  # glibc's adaptive maximum, now fixed, here
    release_freed_memory()
    assert bytearray(4 << 20).count(0) == 4 << 20
