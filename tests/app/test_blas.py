"""BLAS threads of the server's own compute (:mod:`app.blas`), in a fresh interpreter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNLIMITED = {
    name: value
    for name, value in os.environ.items()
    if name not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
}
"""The environment without thread limits: OpenBLAS starts a thread per core."""

SCRIPT = """
import json
import numpy as np  # loads OpenBLAS, with a thread per core
from threadpoolctl import threadpool_info
from app.blas import limit_blas_threads
from app.jobs.local_pool import worker_context

def blas_threads(_=None):
    return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]

if __name__ == "__main__":
    before = blas_threads()
    limit_blas_threads(1)
    with worker_context().Pool(1) as pool:  # as the workers start
        child = pool.apply(blas_threads)
    print(json.dumps({"before": before, "after": blas_threads(), "child": child}))
"""


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one core: one BLAS thread anyway")
def test_the_server_limits_its_blas_threads_and_its_workers_keep_theirs(
    tmp_path: Path,
) -> None:
    script = tmp_path / "blas_threads.py"
    script.write_text(SCRIPT)
    result = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        check=True,
        env={**UNLIMITED, "PYTHONPATH": str(ROOT)},
        timeout=120,
    )
    threads = json.loads(result.stdout)
    assert threads["before"] and all(count > 1 for count in threads["before"]), threads
    assert threads["after"] == [1] * len(threads["before"]), threads
    assert threads["child"] == threads["before"], threads
