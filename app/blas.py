"""BLAS threads of ``backprop serve``'s own compute.

The server computes in request threads (``predict``, ``evaluate``, plots, exports)
next to its event loop. OpenBLAS starts one thread per core, so one large predict
kept every core busy and the event loop waited for a core: on the 2-core machine
(``benchmarks/memory.py``), ``/healthz`` during a 1,000-row predict on a
1,000,000-unit network answered in up to 51-80 ms with 2 BLAS threads and 19 ms with
one. One thread costs the predicts nothing there: their products are of a few rows
(blocks of at most 4 MiB of activations), where a second thread gains little and
spins; that predict took 19.8 s with one thread and 22.9-24.7 s with two, the
100,000-row predict on 20,000 units 55 s and 52-59 s. Training runs in the worker
processes, which start in a fresh fork server and keep a thread per core.
"""

from __future__ import annotations

from threadpoolctl import threadpool_limits


def limit_blas_threads(threads: int) -> None:
    """Use at most ``threads`` BLAS threads in this process from now on."""
    threadpool_limits(limits=threads, user_api="blas")
