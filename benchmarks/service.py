"""The service's performance benchmark (issue 3), against a real ``backprop serve``.

``.venv/bin/python benchmarks/service.py`` starts ``backprop serve`` (2 workers,
default settings, a fresh SQLite file in a temporary directory) on a free
loopback port, prints a Markdown table and writes it, with every sample, to
``benchmarks/results/service.json``. It takes about three minutes on 2 cores.
``--quick`` is a smoke run on tiny sizes whose numbers mean nothing (it writes
JSON only with ``--output``).

History at scale
    A 1,000,000-epoch run of a 1 -> 1 identity network on 2 samples, with a
    validation set so that every recorded epoch has ``epoch``, ``loss`` and
    ``val_loss``. Measured: ``GET /v1/runs/{id}/history?max_points=1000`` (first
    request, then the median of the next ones), and the database growth per
    recorded epoch: the SQLite file plus its WAL after ``wal_checkpoint(TRUNCATE)``,
    before and after the run, and (from ``dbstat``) the pages of the history
    table and its indexes alone.
Service overhead
    The 100,000-epoch XOR tutorial run (3 -> 4 -> 1 sigmoid, no bias, a constant-1
    input column, the tutorial's ``np.random.seed(1)`` initial weights, ``mse``,
    ``sum``, ``sgd`` 0.5, history every epoch): wall time from just before
    ``POST /v1/runs`` until a ``GET /v1/runs/{id}`` (polled every 20 ms, nothing
    subtracted) sees ``succeeded``, against ``engine.fit`` of the same network and
    config in this process. Repetitions alternate; a ratio is the median of the
    per-repetition ratios. Also reported: the run's own ``started_at`` to
    ``finished_at``; the CPU seconds the workers used during the run against those
    of ``engine.fit`` (the service's own work, whatever else the machine runs); and
    whether ``GET /v1/runs/{id}/weights`` equals the engine's weights bit for bit.
Dispatch latency
    50 one-epoch runs, one at a time with an idle pool: the run's ``started_at``
    minus the wall clock just before its ``POST`` (same machine, same clock).
Responsiveness under training
    Two runs of 10^8 epochs keep both workers training; 50 pollers (50 keep-alive
    loopback connections driven by one asyncio loop, see :class:`Connection`)
    ``GET /v1/runs/{id}`` for a bounded time and request count: each poller once a
    second (50 requests/s offered), ten times a second (500 requests/s), and
    back-to-back (each sends its next request when the previous one is answered:
    a saturation test, where latency is 50 / throughput). The 10/s rate is also
    measured with the pool idle. The pollers run on the same 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import shlex
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from numpy.typing import NDArray

# ``python benchmarks/service.py`` puts this directory first on sys.path, where
# benchmarks/engine.py would shadow the ``engine`` package: use the repository root.
ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "benchmarks"]
sys.path.insert(0, str(ROOT))

import engine  # noqa: E402
from tests.support.server import ServerProcess  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "service.json"
POLL_SECONDS = 0.02
POLLERS = 50
LONG_EPOCHS = 100_000_000

XOR_X = [[0, 0, 1], [0, 1, 1], [1, 0, 1], [1, 1, 1]]
XOR_Y = [[0], [1], [1], [0]]
XOR_CONFIG: dict[str, Any] = {
    "loss": "mse",
    "reduction": "sum",
    "optimizer": {"name": "sgd", "learning_rate": 0.5},
    "batch_size": None,
    "shuffle": False,
    "seed": 0,
    "history_every": 1,
}


@dataclass(frozen=True)
class Sizes:
    """How much the benchmark measures."""

    history_epochs: int
    history_requests: int
    xor_epochs: int
    overhead_repetitions: int
    dispatch_runs: int
    slow_seconds: float
    paced_seconds: float
    paced_rounds: int
    saturated_seconds: float
    max_requests_per_poller: int


FULL = Sizes(1_000_000, 10, 100_000, 7, 50, 15.0, 8.0, 2, 5.0, 1_000)
QUICK = Sizes(20_000, 3, 2_000, 1, 5, 2.0, 1.0, 1, 1.0, 50)


# -- helpers ------------------------------------------------------------------------------


def xor_network() -> dict[str, Any]:
    """The tutorial network with its ``np.random.seed(1)`` weights as explicit weights."""
    np.random.seed(1)
    Wh = np.random.random((3, 4)) * np.sqrt(2 / 3)
    Wo = np.random.random((4, 1)) * np.sqrt(2 / 4)
    return {
        "name": "xor-tutorial",
        "input_size": 3,
        "layers": [
            {"units": 4, "activation": "sigmoid", "bias": False},
            {"units": 1, "activation": "sigmoid", "bias": False},
        ],
        "weights": [{"weights": Wh.tolist(), "bias": None}, {"weights": Wo.tolist(), "bias": None}],
    }


def percentile_ms(seconds: Sequence[float], q: float) -> float:
    """The ``q``-th percentile of ``seconds``, in milliseconds."""
    return float(np.percentile(np.asarray(seconds) * 1000.0, q))


def parse_time(value: str) -> float:
    """An ISO 8601 time from the API as a POSIX timestamp."""
    return datetime.fromisoformat(value).timestamp()


def created(response: httpx.Response) -> dict[str, Any]:
    """The JSON body of a 201/202 response (raises on anything else)."""
    if response.status_code not in (201, 202):
        raise RuntimeError(f"{response.request.url}: {response.status_code} {response.text}")
    body: dict[str, Any] = response.json()
    return body


def wait_until(
    client: httpx.Client, run_id: str, statuses: Sequence[str], timeout: float, poll: float
) -> tuple[dict[str, Any], float]:
    """Poll the run until its status is in ``statuses``; return it and ``perf_counter()``."""
    deadline = time.monotonic() + timeout
    while True:
        response = client.get(f"/v1/runs/{run_id}")
        response.raise_for_status()
        run: dict[str, Any] = response.json()
        if run["status"] in statuses:
            return run, time.perf_counter()
        if run["status"] in ("failed", "cancelled"):
            raise RuntimeError(f"run {run_id} ended {run['status']}: {run['error']}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"run {run_id} is still {run['status']} after {timeout} s")
        time.sleep(poll)


def sqlite_size(path: Path) -> dict[str, int]:
    """Checkpoint the WAL (TRUNCATE), then measure the file, the WAL and the history pages."""
    conn = sqlite3.connect(path, timeout=30)
    try:
        for _ in range(50):
            busy, _log, _done = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if not busy:
                break
            time.sleep(0.1)
        names = [
            row[0]
            for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE tbl_name = 'run_history_chunk'"
            )
        ]
        history = 0
        if names:
            marks = ",".join("?" * len(names))
            (history,) = conn.execute(
                f"SELECT COALESCE(SUM(pgsize), 0) FROM dbstat WHERE name IN ({marks})", names
            ).fetchone()
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0] * page_size
    finally:
        conn.close()
    wal = path.with_name(path.name + "-wal")
    return {
        "file": path.stat().st_size,
        "wal": wal.stat().st_size if wal.exists() else 0,
        "free": int(free),
        "history_pages": int(history),
    }


# -- 4. history at scale ----------------------------------------------------------------------


def history_at_scale(client: httpx.Client, db_path: Path, sizes: Sizes) -> dict[str, Any]:
    """Train a tiny network for ``history_epochs`` with validation; time the history read."""
    network = created(
        client.post(
            "/v1/networks",
            json={
                "name": "tiny",
                "input_size": 1,
                "layers": [{"units": 1, "activation": "identity", "bias": False}],
                "init": {"scheme": "zeros"},
            },
        )
    )
    train = created(client.post("/v1/datasets", json={"name": "t", "X": [[1], [2]], "y": [1, 2]}))
    valid = created(client.post("/v1/datasets", json={"name": "v", "X": [[3]], "y": [3]}))
    before = sqlite_size(db_path)
    body = {
        "network_id": network["id"],
        "dataset_id": train["id"],
        "loss": "mse",
        "optimizer": {"name": "sgd", "learning_rate": 1e-3},
        "epochs": sizes.history_epochs,
        "shuffle": False,
        "seed": 0,
        "validation": {"dataset_id": valid["id"]},
        "history_every": 1,
    }
    start = time.perf_counter()
    run = created(client.post("/v1/runs", json=body))
    run, done = wait_until(client, run["id"], ("succeeded",), timeout=600, poll=0.2)
    train_seconds = done - start
    url = f"/v1/runs/{run['id']}/history"
    params = {"max_points": 1000}
    timings: list[float] = []
    for _ in range(1 + sizes.history_requests):
        t0 = time.perf_counter()
        response = client.get(url, params=params)
        timings.append(time.perf_counter() - t0)
        response.raise_for_status()
    history = response.json()
    expected = min(1000, sizes.history_epochs)
    if len(history["epoch"]) != expected or history["epoch"][-1] != sizes.history_epochs:
        raise RuntimeError(f"unexpected downsampled history: {len(history['epoch'])} points")
    if any(v is None for v in history["val_loss"]):
        raise RuntimeError("val_loss missing from the history")
    after = sqlite_size(db_path)
    grown = (after["file"] + after["wal"]) - (before["file"] + before["wal"])
    used = grown - (after["free"] - before["free"])
    recorded = sizes.history_epochs
    return {
        "epochs": sizes.history_epochs,
        "recorded_epochs": recorded,
        "train_seconds": train_seconds,
        "run_seconds": parse_time(run["finished_at"]) - parse_time(run["started_at"]),
        "first_request_ms": timings[0] * 1000,
        "request_ms": [t * 1000 for t in timings],
        "median_request_ms": statistics.median(timings[1:]) * 1000,
        "size_before": before,
        "size_after": after,
        "file_bytes_per_epoch": grown / recorded,
        "used_bytes_per_epoch": used / recorded,
        "history_bytes_per_epoch": (after["history_pages"] - before["history_pages"]) / recorded,
    }


# -- 1. service overhead ------------------------------------------------------------------------


def engine_alone(
    spec: dict[str, Any], epochs: int
) -> tuple[float, float, list[NDArray[np.float64]]]:
    """``engine.fit`` of the tutorial network in this process: seconds, CPU seconds, weights."""
    X = np.asarray(XOR_X, dtype=np.float64)
    y = np.asarray(XOR_Y, dtype=np.float64)
    network = engine.Network.from_spec(spec)
    cpu = time.process_time()
    start = time.perf_counter()
    result = engine.fit(network, X, y, {**XOR_CONFIG, "epochs": epochs})
    seconds = time.perf_counter() - start
    cpu = time.process_time() - cpu
    if result.epochs_run != epochs or len(result.history["epoch"]) != epochs:
        raise RuntimeError("engine.fit did not train every epoch")
    return seconds, cpu, [np.asarray(layer["weights"]) for layer in network.get_weights()]


def through_service(
    client: httpx.Client, server: ServerProcess, network_id: str, dataset_id: str, epochs: int
) -> tuple[float, float, dict[str, Any], list[NDArray[np.float64]]]:
    """POST the same run and poll every 20 ms until it succeeded.

    Returns the seconds, the CPU seconds of the worker processes meanwhile, the run
    and its final weights.
    """
    body = {"network_id": network_id, "dataset_id": dataset_id, **XOR_CONFIG, "epochs": epochs}
    before = process_cpu(server)
    start = time.perf_counter()
    run = created(client.post("/v1/runs", json=body))
    run, done = wait_until(client, run["id"], ("succeeded",), timeout=300, poll=POLL_SECONDS)
    after = process_cpu(server)
    cpu = sum(
        info["cpu_seconds"] - before[pid]["cpu_seconds"]
        for pid, info in after.items()
        if info["role"] == "worker" and pid in before
    )
    weights = client.get(f"/v1/runs/{run['id']}/weights")
    weights.raise_for_status()
    layers = [np.asarray(layer["weights"], dtype=np.float64) for layer in weights.json()["layers"]]
    return done - start, cpu, run, layers


def service_overhead(client: httpx.Client, server: ServerProcess, sizes: Sizes) -> dict[str, Any]:
    """Alternate engine.fit alone and the service on the XOR tutorial run."""
    spec = xor_network()
    network = created(client.post("/v1/networks", json=spec))
    dataset = created(client.post("/v1/datasets", json={"name": "xor", "X": XOR_X, "y": XOR_Y}))
    engine_s: list[float] = []
    engine_cpu: list[float] = []
    service_s: list[float] = []
    worker_cpu: list[float] = []
    run_s: list[float] = []
    queue_s: list[float] = []
    identical = True
    for repetition in range(sizes.overhead_repetitions):
        order = ("engine", "service") if repetition % 2 == 0 else ("service", "engine")
        for which in order:
            if which == "engine":
                seconds, cpu, engine_w = engine_alone(spec, sizes.xor_epochs)
                engine_s.append(seconds)
                engine_cpu.append(cpu)
            else:
                seconds, cpu, run, service_w = through_service(
                    client, server, network["id"], dataset["id"], sizes.xor_epochs
                )
                service_s.append(seconds)
                worker_cpu.append(cpu)
                started = parse_time(run["started_at"])
                run_s.append(parse_time(run["finished_at"]) - started)
                queue_s.append(started - parse_time(run["created_at"]))
        identical &= len(engine_w) == len(service_w) and all(
            a.shape == b.shape and a.tobytes() == b.tobytes()
            for a, b in zip(engine_w, service_w, strict=True)
        )
    ratios = [s / e for s, e in zip(service_s, engine_s, strict=True)]
    run_ratios = [s / e for s, e in zip(run_s, engine_s, strict=True)]
    return {
        "epochs": sizes.xor_epochs,
        "poll_seconds": POLL_SECONDS,
        "engine_seconds": engine_s,
        "service_seconds": service_s,
        "run_seconds": run_s,
        "created_to_started_seconds": queue_s,
        "ratios": ratios,
        "engine_median_s": statistics.median(engine_s),
        "service_median_s": statistics.median(service_s),
        "run_median_s": statistics.median(run_s),
        "ratio_median": statistics.median(ratios),
        "run_ratio_median": statistics.median(run_ratios),
        "engine_cpu_seconds": engine_cpu,
        "worker_cpu_seconds": worker_cpu,
        "cpu_ratio_median": statistics.median(
            w / e for w, e in zip(worker_cpu, engine_cpu, strict=True)
        ),
        "bit_identical": identical,
    }


# -- 2. dispatch latency -------------------------------------------------------------------------


def dispatch_latency(client: httpx.Client, sizes: Sizes) -> dict[str, Any]:
    """Submit one-epoch runs one at a time; ``started_at`` minus the time before the POST."""
    network = created(client.post("/v1/networks", json=xor_network()))
    dataset = created(client.post("/v1/datasets", json={"name": "xor", "X": XOR_X, "y": XOR_Y}))
    body = {"network_id": network["id"], "dataset_id": dataset["id"], **XOR_CONFIG, "epochs": 1}
    latencies: list[float] = []
    post_s: list[float] = []
    for _ in range(sizes.dispatch_runs):
        time.sleep(0.05)  # let the worker go back to waiting: an idle pool
        wall = time.time()
        t0 = time.perf_counter()
        run = created(client.post("/v1/runs", json=body))
        post_s.append(time.perf_counter() - t0)
        run, _ = wait_until(client, run["id"], ("succeeded",), timeout=60, poll=0.01)
        latencies.append(parse_time(run["started_at"]) - wall)
    return {
        "runs": sizes.dispatch_runs,
        "latency_ms": [s * 1000 for s in latencies],
        "post_ms": [s * 1000 for s in post_s],
        "p50_ms": percentile_ms(latencies, 50),
        "p99_ms": percentile_ms(latencies, 99),
        "post_p50_ms": percentile_ms(post_s, 50),
    }


# -- 3. responsiveness under training ---------------------------------------------------------------


class Connection:
    """One keep-alive HTTP/1.1 connection that sends GETs and reads whole responses.

    A deliberately small client: ``httpx.AsyncClient`` spends more CPU per request
    than the server does, and on 2 shared cores the pollers would mostly measure
    themselves (50 pollers through one httpx client reached ~60 requests/s here).
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.reader = reader
        self.writer = writer
        # Sent with every request after ``Host`` (e.g. ``Authorization``).
        self.extra_headers = "".join(
            f"{name}: {value}\r\n" for name, value in (headers or {}).items()
        )

    @classmethod
    async def open(cls, port: int, headers: Mapping[str, str] | None = None) -> Connection:
        """Connect to ``127.0.0.1:port``; ``headers`` go with every request."""
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer, headers)

    async def get(self, path: str) -> tuple[int, bytes]:
        """Send ``GET path``; return the status code and the body."""
        request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{self.extra_headers}\r\n"
        self.writer.write(request.encode())
        await self.writer.drain()
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return status, await self.reader.readexactly(length)

    async def close(self) -> None:
        """Close the connection (one the server already reset closes quietly)."""
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


async def _poller(
    connection: Connection,
    paths: Sequence[str],
    index: int,
    interval: float,
    deadline: float,
    max_requests: int,
    latencies: list[float],
    errors: list[str],
) -> None:
    rng = random.Random(index)
    next_at = time.perf_counter() + rng.uniform(0, interval)
    for n in range(max_requests):
        if interval:
            delay = next_at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            next_at = max(next_at + interval, time.perf_counter())
        if time.perf_counter() >= deadline:
            return
        start = time.perf_counter()
        try:
            status, body = await connection.get(paths[(index + n) % len(paths)])
            if status != 200:
                errors.append(f"{status}: {body[:200]!r}")
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
            return
        latencies.append(time.perf_counter() - start)


async def poll_round(
    port: int,
    run_ids: Sequence[str],
    interval: float,
    seconds: float,
    max_requests: int,
    pollers: int = POLLERS,
    headers: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """``pollers`` pollers, each on its own connection, ``GET /v1/runs/{id}`` of ``run_ids``.

    Each poller sends a request every ``interval`` seconds (0: back to back) until
    ``seconds`` have passed or it sent ``max_requests``. A transport error ends that
    poller (it is counted, with the first few kept as ``error_samples``).
    """
    latencies: list[float] = []
    errors: list[str] = []
    paths = [f"/v1/runs/{run_id}" for run_id in run_ids]
    # Open the connections first, so that the round measures requests, not handshakes.
    connections = [await Connection.open(port, headers) for _ in range(pollers)]
    try:
        start = time.perf_counter()
        deadline = start + seconds
        await asyncio.gather(
            *(
                _poller(connection, paths, i, interval, deadline, max_requests, latencies, errors)
                for i, connection in enumerate(connections)
            )
        )
        elapsed = time.perf_counter() - start
    finally:
        for connection in connections:
            await connection.close()
    return {
        "requests": len(latencies),
        "errors": len(errors),
        "error_samples": errors[:5],
        "seconds": elapsed,
        "requests_per_second": len(latencies) / elapsed,
        "p50_ms": percentile_ms(latencies, 50),
        "p99_ms": percentile_ms(latencies, 99),
        "max_ms": max(latencies) * 1000,
    }


def poll_rounds(
    port: int, run_ids: Sequence[str], interval: float, seconds: float, rounds: int, sizes: Sizes
) -> dict[str, Any]:
    """``rounds`` rounds of 50 pollers; medians of the per-round percentiles."""
    results = [
        asyncio.run(poll_round(port, run_ids, interval, seconds, sizes.max_requests_per_poller))
        for _ in range(rounds)
    ]
    return {
        "interval_s": interval,
        "rounds": results,
        "p50_ms": statistics.median(r["p50_ms"] for r in results),
        "p99_ms": statistics.median(r["p99_ms"] for r in results),
        "requests_per_second": statistics.median(r["requests_per_second"] for r in results),
        "errors": sum(r["errors"] for r in results),
    }


def process_cpu(server: ServerProcess) -> dict[str, dict[str, Any]]:
    """CPU seconds and nice value of the server and the processes it started (from
    /proc): its resource tracker, its fork server and the workers the fork server forked."""
    # Imported here: benchmarks/streams.py's subscriber processes import this module,
    # and Celery (under child_pids) would delay their start by a second or more.
    from app.jobs.celery_app import child_pids
    from tests.support.processes import fork_servers, pool_workers

    assert server.process is not None
    pid = server.process.pid
    forks = fork_servers(pid)
    roles = {
        pid: "server",
        **{
            child: "fork_server" if child in forks else "resource_tracker"
            for child in child_pids(pid)
        },
        **{worker: "worker" for worker in pool_workers(pid)},
    }
    ticks = os.sysconf("SC_CLK_TCK")
    found: dict[str, dict[str, Any]] = {}
    for process, role in roles.items():
        try:
            fields = Path(f"/proc/{process}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        found[str(process)] = {
            "role": role,
            "nice": int(fields[16]),
            "cpu_seconds": (int(fields[11]) + int(fields[12])) / ticks,
        }
    return found


def measure_polling(
    server: ServerProcess,
    run_ids: Sequence[str],
    interval: float,
    seconds: float,
    rounds: int,
    sizes: Sizes,
) -> dict[str, Any]:
    """:func:`poll_rounds` plus the CPU share each server process got meanwhile."""
    before = process_cpu(server)
    start = time.perf_counter()
    result = poll_rounds(server.port, run_ids, interval, seconds, rounds, sizes)
    elapsed = time.perf_counter() - start
    after = process_cpu(server)
    result["cpu_share"] = {
        f"{info['role']} {pid} (nice {info['nice']})": round(
            (info["cpu_seconds"] - before[pid]["cpu_seconds"]) / elapsed, 3
        )
        for pid, info in after.items()
        if pid in before and info["role"] in ("server", "worker")
    }
    return result


def responsiveness(client: httpx.Client, server: ServerProcess, sizes: Sizes) -> dict[str, Any]:
    """GET /v1/runs/{id} latency at 50 pollers: idle pool, then both workers training."""
    network = created(client.post("/v1/networks", json=xor_network()))
    dataset = created(client.post("/v1/datasets", json={"name": "xor", "X": XOR_X, "y": XOR_Y}))
    finished = created(
        client.post(
            "/v1/runs",
            json={"network_id": network["id"], "dataset_id": dataset["id"], "epochs": 10},
        )
    )
    wait_until(client, finished["id"], ("succeeded",), timeout=60, poll=0.05)
    results: dict[str, Any] = {"pollers": POLLERS}
    results["idle_10hz"] = measure_polling(
        server, [finished["id"]], 0.1, sizes.paced_seconds, 1, sizes
    )
    body = {
        "network_id": network["id"],
        "dataset_id": dataset["id"],
        **XOR_CONFIG,
        "epochs": LONG_EPOCHS,
    }
    long_ids = [created(client.post("/v1/runs", json=body))["id"] for _ in range(2)]
    try:
        for run_id in long_ids:
            wait_until(client, run_id, ("running",), timeout=60, poll=0.05)
        time.sleep(1.0)  # both workers well into training
        results["training_1hz"] = measure_polling(
            server, long_ids, 1.0, sizes.slow_seconds, 1, sizes
        )
        results["training_10hz"] = measure_polling(
            server, long_ids, 0.1, sizes.paced_seconds, sizes.paced_rounds, sizes
        )
        results["training_saturated"] = measure_polling(
            server, long_ids, 0.0, sizes.saturated_seconds, 1, sizes
        )
        running = [client.get(f"/v1/runs/{run_id}").json()["status"] for run_id in long_ids]
    finally:
        for run_id in long_ids:
            client.post(f"/v1/runs/{run_id}/cancel")
        for run_id in long_ids:
            wait_until(client, run_id, ("cancelled",), timeout=60, poll=0.05)
    if running != ["running", "running"]:
        raise RuntimeError(f"the long runs stopped training during the measurement: {running}")
    return results


# -- report ----------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """What ran the benchmark."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": model,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "platform": platform.platform(),
        "loadavg_at_start": list(os.getloadavg()),
    }


def verdict(ok: bool) -> str:
    """A goal column entry."""
    return "met" if ok else "**missed**"


def _polling_row(label: str, poll: dict[str, Any], goal: bool) -> str:
    result = (
        f"p50 {poll['p50_ms']:.1f} ms, p99 **{poll['p99_ms']:.1f} ms** "
        f"({poll['requests_per_second']:.0f} req/s, {poll['errors']} errors)"
    )
    if not goal:
        return f"| {label} | {result} | | |"
    return f"| {label} | {result} | p99 < 50 ms | {verdict(poll['p99_ms'] < 50)} |"


def markdown(results: dict[str, Any]) -> str:
    """The README table."""
    o = results["overhead"]
    d = results["dispatch"]
    r = results["responsiveness"]
    h = results["history"]
    pollers = r["pollers"]
    rows = [
        "| measure | result | goal | |",
        "|---|---|---|---|",
        f"| XOR tutorial, {o['epochs']:,} epochs: `POST` → `succeeded` (polled every 20 ms) "
        f"vs `engine.fit` alone | {o['service_median_s']:.2f} s vs {o['engine_median_s']:.2f} s "
        f"= **{o['ratio_median']:.3f}x** (the run's own started→finished: "
        f"{o['run_ratio_median']:.3f}x; CPU seconds of the worker vs `engine.fit`: "
        f"{o['cpu_ratio_median']:.3f}x) | ≤ 1.10x | "
        f"{verdict(o['ratio_median'] <= 1.10)} |",
        f"| final weights from `GET /weights` equal `engine.fit`'s | "
        f"{'bit for bit' if o['bit_identical'] else '**different**'} | bit for bit | "
        f"{verdict(o['bit_identical'])} |",
        f"| dispatch: `POST` → `started_at`, idle pool, {d['runs']} runs | "
        f"p50 **{d['p50_ms']:.1f} ms**, p99 {d['p99_ms']:.1f} ms | p50 < 50 ms | "
        f"{verdict(d['p50_ms'] < 50)} |",
        _polling_row(
            f"`GET /v1/runs/{{id}}`, {pollers} pollers x 1/s, both workers training",
            r["training_1hz"],
            goal=True,
        ),
        _polling_row(
            f"`GET /v1/runs/{{id}}`, {pollers} pollers x 10/s, both workers training",
            r["training_10hz"],
            goal=True,
        ),
        _polling_row(f"same, {pollers} pollers x 10/s, pool idle", r["idle_10hz"], goal=False),
        _polling_row(
            f"same, {pollers} pollers back-to-back (saturation), both workers training",
            r["training_saturated"],
            goal=False,
        ),
        f"| `GET /history?max_points=1000` of a {h['epochs']:,}-epoch run | "
        f"**{h['median_request_ms']:.1f} ms** (first request {h['first_request_ms']:.1f} ms) | "
        f"< 100 ms | {verdict(max(h['median_request_ms'], h['first_request_ms']) < 100)} |",
        f"| database growth per recorded epoch (epoch, loss, val_loss), indexes included | "
        f"**{h['file_bytes_per_epoch']:.1f} B** (file + WAL; history table and indexes alone: "
        f"{h['history_bytes_per_epoch']:.1f} B) | < 64 B | "
        f"{verdict(h['file_bytes_per_epoch'] < 64)} |",
    ]
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> None:
    """Run every measurement, print the table, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--output", type=Path, help=f"JSON path (default {RESULTS})")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    started = time.perf_counter()
    info = machine()
    with tempfile.TemporaryDirectory(prefix="backprop-bench-") as tmp:
        workdir = Path(tmp)
        # Every epoch of the 1,000,000-epoch history run is recorded (no thinning), as
        # the history figures measure: a larger cap than BACKPROP_HISTORY_MAX_POINTS's default.
        server = ServerProcess(
            workdir, {"BACKPROP_WORKERS": "2", "BACKPROP_HISTORY_MAX_POINTS": "2000000"}
        )
        server.start()
        try:
            with httpx.Client(base_url=server.url, timeout=30) as client:
                history = history_at_scale(client, workdir / "backprop.db", sizes)
                overhead = service_overhead(client, server, sizes)
                dispatch = dispatch_latency(client, sizes)
                responsive = responsiveness(client, server, sizes)
        finally:
            server.stop()
        log = server.log()
    info["loadavg_at_end"] = list(os.getloadavg())
    results: dict[str, Any] = {
        "command": shlex.join(["python", "benchmarks/service.py", *(argv or sys.argv[1:])]),
        "quick": args.quick,
        "sizes": asdict(sizes),
        "machine": info,
        "overhead": overhead,
        "dispatch": dispatch,
        "responsiveness": responsive,
        "history": history,
        "database_is_locked": "database is locked" in log,
        "seconds": time.perf_counter() - started,
    }
    table = markdown(results)
    output = args.output or (None if args.quick else RESULTS)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps({**results, "table": table}, indent=2) + "\n")
    print(table)
    print()
    load = " / ".join(f"{a:.1f}" for a in info["loadavg_at_start"])
    print(
        f"{info['cpus']} CPUs ({info['cpu']}), Python {info['python']}, NumPy {info['numpy']}; "
        f"load average at start {load}."
    )
    shares = responsive["training_10hz"]["cpu_share"]
    print(
        "CPU share while 50 pollers x 10/s polled: "
        + ", ".join(f"{k}: {v:.2f}" for k, v in shares.items())
        + "."
    )
    if results["database_is_locked"]:
        print("WARNING: the server logged 'database is locked'.")
    if args.quick:
        print("(--quick: a smoke run on tiny sizes; the numbers mean nothing)")
    print(f"Took {results['seconds']:.0f} s.")


if __name__ == "__main__":
    main()
