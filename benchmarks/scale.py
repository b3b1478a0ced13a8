"""The scale-out benchmark (issue 4): Celery workers on Redis, PostgreSQL.

``.venv/bin/python benchmarks/scale.py`` starts what docker-compose.yml starts, as
local processes with compose's commands and environment (tests/support/compose.py):
a throwaway PostgreSQL and Redis (or ``BACKPROP_TEST_POSTGRES_URL`` /
``BACKPROP_TEST_REDIS_URL``), ``backprop serve`` with the broker URL and
``backprop worker --concurrency 1`` processes, all with default settings. It
prints a Markdown table and writes it, with every sample, to
``benchmarks/results/scale.json``. ``--quick`` is a smoke run on tiny sizes.

Throughput
    50 runs of about one second each (calibrated: a 16 -> 64 -> 1 tanh/sigmoid
    network, 256 samples, full-batch Adam, history every 10 epochs) submitted at
    once, with one worker process and then with two (fresh database each time).
    Time = last ``finished_at`` minus first ``created_at`` (server clocks). The
    ratio is runs/s with two workers over runs/s with one.
Dispatch latency
    With idle workers, one short run at a time: ``started_at - created_at`` (the
    run is committed as ``queued``, published to Redis, received by a worker and
    claimed in the database), p50 and p99.
Recovery after kill -9
    A long run on one of two workers; once it has a checkpoint, ``kill -9`` of
    the worker process running it (its pool process dies with it). Time until the
    API shows the run ``running`` again on the other worker (``attempts == 2``),
    polled every 20 ms. Default lease (``BACKPROP_LEASE_SECONDS``) and supervisor
    poll (``BACKPROP_POLL_SECONDS``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import engine  # noqa: E402
from tests.support.compose import Process, Stack  # noqa: E402
from tests.support.services import (  # noqa: E402
    PostgresServer,
    RedisServer,
    start_postgres,
    start_redis,
)

RESULTS = ROOT / "benchmarks" / "results" / "scale.json"
TERMINAL = ("succeeded", "failed", "cancelled")

NETWORK: dict[str, Any] = {
    "name": "bench",
    "input_size": 16,
    "layers": [
        {"units": 64, "activation": "tanh"},
        {"units": 1, "activation": "sigmoid"},
    ],
    "init": {"scheme": "xavier_uniform", "seed": 0},
}


def _dataset(n: int = 256) -> tuple[list[list[float]], list[list[float]]]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 16))
    y = (X[:, :8].sum(axis=1) > 0).astype(float).reshape(-1, 1)
    return X.tolist(), y.tolist()


def _config(epochs: int, seed: int) -> dict[str, Any]:
    return {
        "loss": "binary_cross_entropy",
        "optimizer": {"name": "adam", "learning_rate": 0.001},
        "epochs": epochs,
        "seed": seed,
        "history_every": 10,
    }


def calibrate(seconds: float) -> int:
    """Epochs of the benchmark run that take about ``seconds`` in ``engine.fit``."""
    X, y = (np.asarray(a) for a in _dataset())
    probe = 300
    best = float("inf")
    for _ in range(3):
        net = engine.Network.from_spec(
            {k: v for k, v in NETWORK.items() if k in ("input_size", "layers", "init")}
        )
        start = time.perf_counter()
        engine.fit(net, X, y, _config(probe, 0))
        best = min(best, time.perf_counter() - start)
    return max(10, int(round(probe * seconds / best, -1)))


def _parse_time(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


@dataclass
class Result:
    """Everything measured, for the JSON file."""

    machine: dict[str, Any]
    run_epochs: int
    engine_seconds_per_run: float
    throughput: dict[str, Any] = field(default_factory=dict)
    dispatch_ms: list[float] = field(default_factory=list)
    recovery_s: list[float] = field(default_factory=list)


@contextmanager
def stack(
    postgres: PostgresServer, redis: RedisServer, workdir: Path, workers: int
) -> Iterator[Stack]:
    """The compose-equivalent processes on a fresh database (defaults, no tuning)."""
    database_url = postgres.create_database()
    running = Stack(
        workdir,
        database_url=database_url,
        broker_url=redis.database_url(),
        workers=workers,
    )
    try:
        running.start()
        yield running
    finally:
        running.stop()
        postgres.drop_database(database_url)


def _setup(client: httpx.Client) -> tuple[str, str]:
    X, y = _dataset()
    network = client.post("/v1/networks", json=NETWORK)
    dataset = client.post("/v1/datasets", json={"name": "bench", "X": X, "y": y})
    assert network.status_code == 201 and dataset.status_code == 201, dataset.text
    return network.json()["id"], dataset.json()["id"]


def _post_run(client: httpx.Client, ids: tuple[str, str], epochs: int, seed: int) -> str:
    body = {"network_id": ids[0], "dataset_id": ids[1], **_config(epochs, seed)}
    response = client.post("/v1/runs", json=body)
    assert response.status_code == 202, response.text
    run_id: str = response.json()["id"]
    return run_id


def _wait(client: httpx.Client, run_id: str, timeout: float = 600.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        run: dict[str, Any] = client.get(f"/v1/runs/{run_id}").json()
        if run["status"] in TERMINAL:
            return run
        assert time.monotonic() < deadline, f"run {run_id} did not finish: {run}"
        time.sleep(0.02)


def throughput(running: Stack, n_runs: int, epochs: int) -> dict[str, Any]:
    """Submit ``n_runs`` at once; runs/s from the server's timestamps."""
    with httpx.Client(base_url=running.url, timeout=60) as client:
        ids = _setup(client)
        run_ids = [_post_run(client, ids, epochs, seed) for seed in range(n_runs)]
        deadline = time.monotonic() + 3600
        while True:
            page = client.get("/v1/runs", params={"limit": 100}).json()["data"]
            runs = [run for run in page if run["id"] in run_ids]
            if len(runs) == n_runs and all(run["status"] in TERMINAL for run in runs):
                break
            assert time.monotonic() < deadline
            time.sleep(0.5)
    statuses = sorted({run["status"] for run in runs})
    first = min(_parse_time(run["created_at"]) for run in runs)
    last = max(_parse_time(run["finished_at"]) for run in runs)
    busy = [_parse_time(r["finished_at"]) - _parse_time(r["started_at"]) for r in runs]
    return {
        "runs": n_runs,
        "statuses": statuses,
        "seconds": last - first,
        "runs_per_second": n_runs / (last - first),
        "median_run_seconds": statistics.median(busy),
    }


def dispatch_latency(running: Stack, samples: int) -> list[float]:
    """``started_at - created_at`` of one short run at a time, in milliseconds."""
    out = []
    with httpx.Client(base_url=running.url, timeout=60) as client:
        ids = _setup(client)
        for seed in range(samples):
            run = _wait(client, _post_run(client, ids, 10, seed))
            out.append((_parse_time(run["started_at"]) - _parse_time(run["created_at"])) * 1000)
    return out


def _claimed_by(running: Stack, run_id: str) -> Process:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for worker in running.workers:
            for event in worker.events():
                if (
                    event.get("event") == "run.transition"
                    and event.get("run_id") == run_id
                    and event.get("status") == "running"
                ):
                    return worker
        time.sleep(0.02)
    raise AssertionError(f"no worker claimed {run_id}")


def recovery(running: Stack, epochs: int) -> float:
    """Seconds from ``kill -9`` of the worker running a run until it runs elsewhere."""
    with httpx.Client(base_url=running.url, timeout=60) as client:
        ids = _setup(client)
        run_id = _post_run(client, ids, epochs, 0)
        deadline = time.monotonic() + 120
        while not client.get(f"/v1/runs/{run_id}/checkpoints").json()["data"]:
            assert time.monotonic() < deadline, "no checkpoint"
            time.sleep(0.05)
        victim = _claimed_by(running, run_id)
        victim.kill9()
        killed = time.monotonic()
        while True:
            run = client.get(f"/v1/runs/{run_id}").json()
            if run["attempts"] >= 2 and run["status"] in ("running", "succeeded"):
                elapsed = time.monotonic() - killed
                break
            assert time.monotonic() - killed < 120, f"not recovered: {run}"
            time.sleep(0.02)
        client.post(f"/v1/runs/{run_id}/cancel")
        _wait(client, run_id)
    victim.start()  # back to two workers for the next repetition
    running.wait_worker_ready(victim, 120)
    return elapsed


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def table(result: Result) -> str:
    one = result.throughput["1"]
    two = result.throughput["2"]
    ratio = two["runs_per_second"] / one["runs_per_second"]
    d = result.dispatch_ms
    r = result.recovery_s
    rows = [
        ("Throughput, 1 worker process", f"{one['runs_per_second']:.2f} runs/s", ""),
        ("Throughput, 2 worker processes", f"{two['runs_per_second']:.2f} runs/s", ""),
        ("Throughput ratio 2 / 1", f"{ratio:.2f}x", ">= 1.8x"),
        ("Dispatch submit -> running, p50", f"{_percentile(d, 50):.1f} ms", "< 100 ms"),
        ("Dispatch submit -> running, p99", f"{_percentile(d, 99):.1f} ms", ""),
        (
            "Recovery after kill -9 (median, max)",
            f"{statistics.median(r):.1f} s, {max(r):.1f} s",
            "< 15 s",
        ),
    ]
    lines = ["| measure | result | goal |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    lines.append("")
    lines.append(
        f"{one['runs']} runs of {result.run_epochs} epochs "
        f"(~{result.engine_seconds_per_run:.2f} s in engine.fit; "
        f"median {one['median_run_seconds']:.2f} s per run with 1 worker, "
        f"{two['median_run_seconds']:.2f} s with 2); "
        f"{len(d)} dispatch samples; {len(r)} recoveries; "
        f"load average before: {result.machine['loadavg']}, "
        f"after: {result.machine.get('loadavg_after')}."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the table; write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke run)")
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=1.0, help="target seconds per run")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    n_runs = 6 if args.quick else args.runs
    epochs = calibrate(0.1 if args.quick else args.seconds)
    engine_seconds = args.seconds if not args.quick else 0.1
    result = Result(
        machine={
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "loadavg": [round(x, 2) for x in os.getloadavg()],
        },
        run_epochs=epochs,
        engine_seconds_per_run=engine_seconds,
    )
    postgres = start_postgres()
    redis = start_redis()
    try:
        with tempfile.TemporaryDirectory(prefix="backprop-scale-") as tmp:
            for workers in (1, 2):
                workdir = Path(tmp) / f"w{workers}"
                workdir.mkdir()
                with stack(postgres, redis, workdir, workers) as running:
                    result.throughput[str(workers)] = throughput(running, n_runs, epochs)
                    if workers == 2:
                        result.dispatch_ms = dispatch_latency(running, 10 if args.quick else 60)
                        long_epochs = epochs * 200
                        result.recovery_s = [
                            recovery(running, long_epochs) for _ in range(1 if args.quick else 3)
                        ]
                print(f"{workers} worker(s): {result.throughput[str(workers)]}", file=sys.stderr)
    finally:
        redis.stop()
        postgres.stop()
    result.machine["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    print(table(result))
    output = args.output or (None if args.quick else RESULTS)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps({**asdict(result), "table": table(result)}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
