"""Memory and responsiveness of large requests against a real server (issue 10, defects 4, 6, 13).

``.venv/bin/python benchmarks/memory.py`` starts ``backprop serve`` on a free
loopback port (1 local worker, a fresh SQLite file in a temporary directory,
default limits) and runs each large request of the issue once:

- a refused dataset body of 20M cells (57 MiB of JSON, over
  ``BACKPROP_MAX_DATASET_CELLS``);
- a dataset of N = 10M cells (the limit): create, then ``GET /data``;
- ``predict`` of 100k rows and ``plots/decision-boundary.png`` on a network with
  a 20,000-unit hidden layer;
- ``GET /weights`` of a network of ~10M parameters;
- ``predict`` of 1,000 rows on a network with a 1,000,000-unit hidden layer;
- a 12,000 x 784 JSON upload and the same data as CSV; a 100,000-column CSV.

While a request runs, a thread samples the server process's RSS
(``VmRSS`` of ``/proc/<pid>/status``) every ~10 ms (the worker processes, which
train, are not counted: they are other processes) and another thread sends
``GET /healthz`` back to back on its own connection. Reported per case: the
answer's status, the peak RSS above the baseline (the RSS just before the
request) against the case's goal, the RSS 2 s after the answer (goal: within 10%
of the baseline), the time, the throughput of uploads, and ``/healthz`` p50 and
max latency (goal: max < 50 ms). Goals (issue 10): a refused body < 16 MiB; an
accepted N-cell dataset < 3 x 8N bytes + 64 MiB, the same for reading it back
and for weights of P parameters (8P); predict and plots within
``BACKPROP_MAX_REQUEST_MEMORY`` (256 MiB) + 64 MiB whatever the width; CSV > 20
MB/s. Writes ``benchmarks/results/memory.json``; ``--quick`` is a small smoke run
of every case (it writes JSON only with ``--output``).
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import shlex
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

# ``python benchmarks/memory.py`` puts this directory first on sys.path, where
# benchmarks/engine.py would shadow the ``engine`` package: use the repository root.
ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "benchmarks"]
sys.path.insert(0, str(ROOT))

from benchmarks.service import machine  # noqa: E402
from tests.support.server import ServerProcess, running_server  # noqa: E402
from tests.support.subscribers import rss_kib  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "memory.json"
MIB = 1024 * 1024
SAMPLE_S = 0.01
SETTLE_S = 2.0
REQUEST_MEMORY = 256 * MIB
HEALTHZ_GOAL_MS = 50.0


@dataclass(frozen=True)
class Scale:
    """Sizes of the cases (the issue's, or small ones for ``--quick``)."""

    refused_rows: int  # x 10 cells: over the cell limit
    dataset_rows: int  # x (9 + 1) cells: at the cell limit
    max_cells: int
    wide_units: int
    predict_rows: int
    weights_inputs: int
    weights_units: int
    huge_units: int
    huge_rows: int
    mnist_rows: int
    csv_columns: int
    settle_s: float = SETTLE_S
    idle_s: float = 3.0


FULL = Scale(
    refused_rows=2_000_000,
    dataset_rows=1_000_000,
    max_cells=10_000_000,
    wide_units=20_000,
    predict_rows=100_000,
    weights_inputs=997,
    weights_units=10_000,
    huge_units=1_000_000,
    huge_rows=1_000,
    mnist_rows=12_000,
    csv_columns=100_000,
)
QUICK = Scale(
    refused_rows=40_000,
    dataset_rows=20_000,
    max_cells=200_000,
    wide_units=2_000,
    predict_rows=5_000,
    weights_inputs=100,
    weights_units=2_000,
    huge_units=50_000,
    huge_rows=200,
    mnist_rows=200,
    csv_columns=5_000,
    settle_s=0.3,
    idle_s=0.5,
)


def poll_healthz(url: str, commands: Any, results: Any) -> None:
    """Serve ``start`` / ``stop`` / ``exit`` commands: between a start and a stop,
    ``GET /healthz`` back to back; at the stop, put (latencies ms, errors).

    Runs in its own process: in the benchmark's process it would wait for the GIL
    while the main thread sends or reads a large body, and measure the client.
    """
    with httpx.Client(base_url=url, timeout=60) as client:
        while (command := commands.get()) != "exit":
            assert command == "start"
            latencies: list[float] = []
            errors = 0
            client.get("/healthz")
            results.put("polling")
            while commands.empty():
                started = time.perf_counter()
                try:
                    ok = client.get("/healthz").status_code == 200
                except httpx.HTTPError:
                    ok = False
                latencies.append(1000 * (time.perf_counter() - started))
                errors += 0 if ok else 1
                time.sleep(0.005)
            assert commands.get() == "stop"
            results.put((latencies, errors))


class HealthzPoller:
    """One poller process for the whole benchmark (:func:`poll_healthz`)."""

    def __init__(self, url: str) -> None:
        context = multiprocessing.get_context("spawn")
        self.commands, self.results = context.Queue(), context.Queue()
        self.process = context.Process(
            target=poll_healthz, args=(url, self.commands, self.results), daemon=True
        )
        self.process.start()

    def start(self) -> None:
        """Start polling; return once the poller polls."""
        self.commands.put("start")
        if self.results.get(timeout=120) != "polling":
            raise RuntimeError("the /healthz poller did not start")

    def stop(self) -> tuple[list[float], int]:
        """Stop polling; the latencies (ms) and the errors since :meth:`start`."""
        self.commands.put("stop")
        latencies, errors = self.results.get(timeout=120)
        return latencies, errors

    def close(self) -> None:
        self.commands.put("exit")
        self.process.join(timeout=60)


@dataclass
class Sampler:
    """RSS of one process every SAMPLE_S, and /healthz latency, while a request runs."""

    pid: int
    poller: HealthzPoller
    rss_mib: list[float] = field(default_factory=list)
    healthz_ms: list[float] = field(default_factory=list)
    healthz_errors: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def _sample_rss(self) -> None:
        while not self._stop.is_set():
            self.rss_mib.append(rss_kib(self.pid) / 1024)
            time.sleep(SAMPLE_S)

    def run(self, request: Callable[[], httpx.Response]) -> tuple[httpx.Response, float]:
        """Run ``request`` with both samplers going; its response and duration (s)."""
        self.poller.start()
        sampler = threading.Thread(target=self._sample_rss, daemon=True)
        sampler.start()
        time.sleep(0.1)
        started = time.perf_counter()
        try:
            response = request()
        finally:
            elapsed = time.perf_counter() - started
            self._stop.set()
            sampler.join()
            self.healthz_ms, self.healthz_errors = self.poller.stop()
        return response, elapsed


def baseline_mib(pid: int) -> float:
    """The server's RSS at rest: the median of a few samples."""
    samples = []
    for _ in range(10):
        samples.append(rss_kib(pid) / 1024)
        time.sleep(0.02)
    return statistics.median(samples)


def measure(
    server: ServerProcess,
    poller: HealthzPoller,
    name: str,
    request: Callable[[], httpx.Response],
    goal_mib: float,
    expect: int,
    payload_bytes: int | None = None,
    *,
    settle_s: float = SETTLE_S,
) -> dict[str, Any]:
    """One case: baseline, the request under the samplers, the RSS after it settled."""
    assert server.process is not None
    pid = server.process.pid
    base = baseline_mib(pid)
    sampler = Sampler(pid, poller)
    response, elapsed = sampler.run(request)
    time.sleep(settle_s)
    after = baseline_mib(pid)
    peak = max(sampler.rss_mib, default=base)
    latencies = sampler.healthz_ms or [float("nan")]
    result: dict[str, Any] = {
        "case": name,
        "status": response.status_code,
        "expected_status": expect,
        "baseline_mib": base,
        "peak_above_mib": peak - base,
        "goal_mib": goal_mib,
        "after_mib": after,
        "after_pct": 100 * (after - base) / base,
        "seconds": elapsed,
        "healthz_p50_ms": statistics.median(latencies),
        "healthz_max_ms": max(latencies),
        "healthz_requests": len(sampler.healthz_ms),
        "healthz_errors": sampler.healthz_errors,
        "response_bytes": len(response.content),
    }
    if payload_bytes is not None:
        result["payload_mb_per_s"] = payload_bytes / elapsed / 1e6
        result["payload_bytes"] = payload_bytes
    if response.status_code != expect:
        result["detail"] = response.text[:300]
    print(f"  {name}: {response.status_code}, peak +{peak - base:.0f} MiB", file=sys.stderr)
    return result


# --------------------------------------------------------------------------- payloads


def json_rows(rows: np.ndarray[Any, Any], fmt: str) -> bytes:
    """``[[...],[...]]`` of a 2-D array, each number formatted with ``fmt``."""
    buffer = io.BytesIO()
    np.savetxt(buffer, rows, fmt=fmt, delimiter=",")
    lines = buffer.getvalue().rstrip(b"\n").split(b"\n")
    return b"[[" + b"],[".join(lines) + b"]]"


def dataset_body(X: bytes, y: bytes) -> bytes:
    return b'{"name":"bench","X":' + X + b',"y":' + y + b"}"


def labels_json(count: int, classes: int) -> bytes:
    return ("[" + ",".join(str(i % classes) for i in range(count)) + "]").encode()


def csv_text(X: np.ndarray[Any, Any], y: np.ndarray[Any, Any], fmt: str) -> bytes:
    buffer = io.BytesIO()
    header = ",".join([*(f"x{i}" for i in range(X.shape[1])), "label"])
    np.savetxt(buffer, np.column_stack([X, y]), fmt=[fmt] * X.shape[1] + ["%d"], delimiter=",")
    return header.encode() + b"\n" + buffer.getvalue()


# --------------------------------------------------------------------------- setup


class Api:
    """The benchmark's client: creates what the cases need."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.client.post(path, **kwargs)

    def ok(self, response: httpx.Response) -> dict[str, Any]:
        if response.status_code >= 300:
            raise RuntimeError(f"{response.request.url}: {response.status_code} {response.text}")
        body: dict[str, Any] = response.json()
        return body

    def network(self, inputs: int, hidden: int, outputs: int = 1) -> str:
        body = {
            "name": f"w{hidden}",
            "input_size": inputs,
            "layers": [
                {"units": hidden, "activation": "tanh"},
                {"units": outputs, "activation": "sigmoid"},
            ],
            "init": {"seed": 1},
        }
        return str(self.ok(self.post("/v1/networks", json=body))["id"])

    def dataset(self, X: list[list[float]], y: list[int]) -> str:
        body = {"name": "small", "X": X, "y": y}
        return str(self.ok(self.post("/v1/datasets", json=body))["id"])

    def trained_run(self, network: str, dataset: str) -> str:
        body = {
            "network_id": network,
            "dataset_id": dataset,
            "loss": "mse",
            "epochs": 1,
            "seed": 0,
            "optimizer": {"name": "sgd", "learning_rate": 0.01},
        }
        run = str(self.ok(self.post("/v1/runs", json=body))["id"])
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            status = self.ok(self.client.get(f"/v1/runs/{run}"))["status"]
            if status == "succeeded":
                return run
            if status in ("failed", "cancelled"):
                raise RuntimeError(f"run {run} {status}")
            time.sleep(0.2)
        raise RuntimeError(f"run {run} did not finish")


def run_cases(server: ServerProcess, scale: Scale) -> list[dict[str, Any]]:
    """Every case, in order."""
    poller = HealthzPoller(server.url)
    try:
        return _run_cases(server, poller, scale)
    finally:
        poller.close()


def _run_cases(server: ServerProcess, poller: HealthzPoller, scale: Scale) -> list[dict[str, Any]]:
    rng = np.random.default_rng(0)
    results: list[dict[str, Any]] = []

    def case(*args: Any) -> dict[str, Any]:
        return measure(server, poller, *args, settle_s=scale.settle_s)

    with httpx.Client(base_url=server.url, timeout=900) as client:
        api = Api(client)
        json_headers = {"content-type": "application/json"}

        def idle() -> httpx.Response:
            time.sleep(scale.idle_s)
            return client.get("/healthz")

        # The machine's own latency (other load on the host shows here).
        results.append(case(f"idle: no request, {scale.idle_s:g} s", idle, 16, 200))

        # Refused: 20M cells (X rows of 10 zeros), over the 10M-cell limit.
        refused = dataset_body(
            b"[" + b",".join([b"[0,0,0,0,0,0,0,0,0,0]"] * scale.refused_rows) + b"]",
            b"[" + b",".join([b"0"] * scale.refused_rows) + b"]",
        )
        results.append(
            case(
                f"refused dataset body ({scale.refused_rows * 11 / 1e6:.0f}M cells, "
                f"{len(refused) / MIB:.0f} MiB JSON)",
                lambda: api.post("/v1/datasets", content=refused, headers=json_headers),
                16,
                422,
                len(refused),
            )
        )
        refused = b""

        # At the limit: N = rows x (9 + 1) cells.
        cells = scale.dataset_rows * 10
        X = rng.random((scale.dataset_rows, 9)).round(2)
        body = dataset_body(json_rows(X, "%.2f"), labels_json(scale.dataset_rows, 3))
        del X
        goal = (3 * 8 * cells + 64 * MIB) / MIB
        created: dict[str, Any] = {}

        def create() -> httpx.Response:
            response = api.post("/v1/datasets", content=body, headers=json_headers)
            created.update(response.json() if response.status_code == 201 else {})
            return response

        results.append(
            case(
                f"dataset at the limit, create (N = {cells / 1e6:g}M cells, "
                f"{len(body) / MIB:.0f} MiB JSON)",
                create,
                goal,
                201,
                len(body),
            )
        )
        body = b""
        results.append(
            case(
                f"dataset at the limit, `GET /data` (N = {cells / 1e6:g}M cells)",
                lambda: client.get(f"/v1/datasets/{created['id']}/data"),
                goal,
                200,
            )
        )

        # Wide network: predict and decision boundary.
        points = rng.normal(size=(64, 2)).round(3)
        small = api.dataset(points.tolist(), [int(v > 0) for v in points[:, 0]])
        wide = api.trained_run(api.network(2, scale.wide_units), small)
        predict_X = json_rows(rng.normal(size=(scale.predict_rows, 2)), "%.4f")
        predict_body = b'{"X":' + predict_X + b"}"
        bound = (REQUEST_MEMORY + 64 * MIB) / MIB
        results.append(
            case(
                f"predict {scale.predict_rows:,} rows, hidden layer of {scale.wide_units:,} units",
                lambda: api.post(
                    f"/v1/runs/{wide}/predict", content=predict_body, headers=json_headers
                ),
                bound,
                200,
            )
        )
        # matplotlib loads its fonts and caches on its first figure: not this request's.
        warm = api.trained_run(api.network(2, 3), small)
        client.get(f"/v1/runs/{warm}/plots/decision-boundary.png").raise_for_status()
        results.append(
            case(
                f"decision-boundary.png, hidden layer of {scale.wide_units:,} units",
                lambda: client.get(f"/v1/runs/{wide}/plots/decision-boundary.png"),
                bound,
                200,
            )
        )

        # ~10M parameters: GET /weights.
        inputs = scale.weights_inputs
        feature_rows = rng.random((8, inputs)).round(2).tolist()
        weights_data = api.dataset(feature_rows, [0, 1] * 4)
        big = api.trained_run(api.network(inputs, scale.weights_units), weights_data)
        parameters = inputs * scale.weights_units + 2 * scale.weights_units + 1
        results.append(
            case(
                f"`GET /weights`, {parameters / 1e6:.1f}M parameters",
                lambda: client.get(f"/v1/runs/{big}/weights"),
                (3 * 8 * parameters + 64 * MIB) / MIB,
                200,
            )
        )

        # A 1,000,000-unit hidden layer: predict 1,000 rows.
        huge = api.trained_run(api.network(2, scale.huge_units), small)
        huge_body = b'{"X":' + json_rows(rng.normal(size=(scale.huge_rows, 2)), "%.4f") + b"}"
        results.append(
            case(
                f"predict {scale.huge_rows:,} rows, hidden layer of {scale.huge_units:,} units",
                lambda: api.post(
                    f"/v1/runs/{huge}/predict", content=huge_body, headers=json_headers
                ),
                bound + 3 * 8 * 4 * scale.huge_units / MIB,
                200,
            )
        )

        # MNIST-shaped: 12,000 x 784 as JSON and as CSV.
        images = rng.random((scale.mnist_rows, 784)).round(3)
        labels = rng.integers(0, 10, scale.mnist_rows)
        mnist_cells = images.size + labels.size
        mnist = dataset_body(json_rows(images, "%.3f"), labels_json(scale.mnist_rows, 10))
        mnist_goal = (3 * 8 * mnist_cells + 64 * MIB) / MIB
        results.append(
            case(
                f"JSON upload {scale.mnist_rows:,} x 784 ({len(mnist) / MIB:.0f} MiB)",
                lambda: api.post("/v1/datasets", content=mnist, headers=json_headers),
                mnist_goal,
                201,
                len(mnist),
            )
        )
        mnist = b""
        csv_body = csv_text(images, labels, "%.3f")
        results.append(
            case(
                f"CSV upload {scale.mnist_rows:,} x 784 ({len(csv_body) / MIB:.0f} MiB)",
                lambda: api.post(
                    "/v1/datasets/csv",
                    files={"file": ("mnist.csv", csv_body, "text/csv")},
                    data={"target": "label"},
                ),
                mnist_goal,
                201,
                len(csv_body),
            )
        )
        csv_body = b""
        wide_csv = (
            ",".join(f"c{i}" for i in range(scale.csv_columns))
            + "\n"
            + ",".join("1" for _ in range(scale.csv_columns))
            + "\n"
        ).encode()
        results.append(
            case(
                f"CSV upload, {scale.csv_columns:,} columns ({len(wide_csv) / 1e3:.0f} KB)",
                lambda: api.post(
                    "/v1/datasets/csv",
                    files={"file": ("wide.csv", wide_csv, "text/csv")},
                    data={"target": "c0"},
                ),
                64,
                201,
                len(wide_csv),
            )
        )
    return results


def table(results: Sequence[dict[str, Any]]) -> str:
    """The README table."""
    lines = [
        "| case | status | peak RSS above baseline (goal) | RSS after | time | /healthz p50 / max |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        met = r["peak_above_mib"] < r["goal_mib"]
        peak = (
            f"{r['peak_above_mib']:.0f} MiB (< {r['goal_mib']:.0f}{'' if met else ', **missed**'})"
        )
        status = str(r["status"]) + ("" if r["status"] == r["expected_status"] else " **!**")
        after_ok = r["after_pct"] <= 10
        after = f"{r['after_pct']:+.1f}%" + ("" if after_ok else " **!**")
        speed = f", {r['payload_mb_per_s']:.0f} MB/s" if "payload_mb_per_s" in r else ""
        slow = r["healthz_max_ms"] >= HEALTHZ_GOAL_MS
        healthz = f"{r['healthz_p50_ms']:.1f} / {r['healthz_max_ms']:.0f} ms" + (
            " **!**" if slow else ""
        )
        lines.append(
            f"| {r['case']} | {status} | {peak} | {after} | {r['seconds']:.2f} s{speed} | {healthz} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the cases, print the table, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    parser.add_argument(
        "--output", "--json", type=Path, help=f"JSON path (default {RESULTS}, none with --quick)"
    )
    args = parser.parse_args(argv)
    scale = QUICK if args.quick else FULL
    env = {
        "BACKPROP_WORKERS": "1",
        "BACKPROP_MAX_DATASET_CELLS": str(scale.max_cells),
        "BACKPROP_MAX_REQUEST_MEMORY": str(REQUEST_MEMORY),
    }
    info = machine()
    with (
        tempfile.TemporaryDirectory(prefix="backprop-memory-") as workdir,
        running_server(Path(workdir), env) as server,
    ):
        try:
            results = run_cases(server, scale)
        except Exception:
            print(server.log()[-5000:], file=sys.stderr)
            raise
    text = table(results)
    output = args.output or (None if args.quick else RESULTS)
    document = {
        "command": shlex.join(["python", "benchmarks/memory.py", *(argv or sys.argv[1:])]),
        "quick": args.quick,
        "machine": info,
        "results": results,
        "table": text,
    }
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(document, indent=2) + "\n")
    print(text)
    if args.quick:
        print("\n(--quick: a smoke run; the numbers mean little)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
