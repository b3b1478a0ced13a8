"""How long a local-pool worker takes to start: ``spawn`` against the fork server.

``.venv/bin/python benchmarks/worker_start.py`` starts ``--starts`` processes one after
the other with each start method, each importing what a worker imports
(``app.jobs.worker``), and reports the wall clock from ``Process.start()`` until the
child runs, and the child's own CPU time (``os.times()``) by then. The first start of
the fork server includes starting the server itself (its imports), paid once per
``backprop serve``; the median is over the later starts, which is what a restart
after a worker's crash costs. Writes ``benchmarks/results/worker_start.json``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import sys
import time
from multiprocessing.context import BaseContext
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "benchmarks"]
sys.path.insert(0, str(ROOT))

from app.jobs.local_pool import worker_context  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "worker_start.json"


def _ready(queue: Any) -> None:
    """In the child: import what a worker imports, report the CPU spent so far."""
    import app.jobs.worker  # noqa: F401

    times = os.times()
    queue.put(times.user + times.system)


def measure(context: BaseContext, starts: int) -> dict[str, float]:
    """Start ``starts`` processes in ``context`` one after the other; summarise."""
    queue: Any = context.Queue()
    walls, cpus = [], []
    for _ in range(starts):
        began = time.monotonic()
        process = context.Process(target=_ready, args=(queue,))  # type: ignore[attr-defined]
        process.start()
        cpus.append(queue.get(timeout=120))
        walls.append(time.monotonic() - began)
        process.join()
    return {
        "first_s": walls[0],
        "median_s": statistics.median(walls[1:]),
        "median_child_cpu_s": statistics.median(cpus[1:]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=7, help="processes per method (>= 2)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.starts < 2:
        parser.error("--starts must be at least 2 (the first start is reported apart)")
    results = {
        "spawn": measure(mp.get_context("spawn"), args.starts),
        "forkserver": measure(worker_context(), args.starts),
    }
    print("| start method | first start | later starts (median) | child CPU (median) |")
    print("|---|---|---|---|")
    for name, result in results.items():
        print(
            f"| {name} | {result['first_s'] * 1e3:.0f} ms | {result['median_s'] * 1e3:.0f} ms"
            f" | {result['median_child_cpu_s'] * 1e3:.0f} ms |"
        )
    ratio = results["spawn"]["median_s"] / results["forkserver"]["median_s"]
    print(f"\nA restarted worker is ready {ratio:.0f}x sooner from the fork server.")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
