"""Load: 200 concurrent pollers for 60 s while 4 runs train (issue 5).

``.venv/bin/python benchmarks/load.py`` starts ``backprop serve`` on a free
loopback port (4 local workers, a fresh SQLite file in a temporary directory,
API keys on), starts 4 long runs, waits until all 4 are running, then runs 200
asyncio pollers (one ``httpx.AsyncClient``, up to 200 keep-alive connections)
that ``GET /v1/runs/{id}`` back to back, spread over the 4 runs, for
``--seconds`` (60). Reported: requests/s, p50/p99 latency, errors (any
non-200 or transport error), and the server process's RSS (``/proc``) at the
start of the polling and at the end. The runs are cancelled afterwards and
the server stopped. The client shares the machine's cores with the server and
its workers. ``--quick`` is a 5 s smoke run with 20 pollers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.server import ServerProcess, running_server

KEY = "load-benchmark-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
NETWORK = {
    "name": "load",
    "input_size": 8,
    "layers": [
        {"units": 32, "activation": "tanh"},
        {"units": 1, "activation": "sigmoid"},
    ],
    "init": {"seed": 1},
}


def rss_kib(pid: int) -> int:
    """The resident set size of ``pid`` in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def start_runs(client: httpx.Client, count: int) -> list[str]:
    """Create ``count`` long runs and wait until every one is running."""
    network = client.post("/v1/networks", json=NETWORK).json()["id"]
    X = [[((i * 7 + j * 3) % 11) / 10 for j in range(8)] for i in range(256)]
    y = [[float(sum(row) > 4)] for row in X]
    dataset = client.post("/v1/datasets", json={"name": "load", "X": X, "y": y}).json()["id"]
    runs = []
    for seed in range(count):
        body = {
            "network_id": network,
            "dataset_id": dataset,
            "loss": "binary_cross_entropy",
            "optimizer": {"name": "adam", "learning_rate": 0.001},
            "epochs": 10_000_000,
            "batch_size": 32,
            "seed": seed,
        }
        response = client.post("/v1/runs", json=body)
        response.raise_for_status()
        runs.append(response.json()["id"])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        statuses = [client.get(f"/v1/runs/{run}").json()["status"] for run in runs]
        if all(status == "running" for status in statuses):
            return runs
        time.sleep(0.2)
    raise RuntimeError(f"runs did not all start: {statuses}")


async def poll(url: str, runs: list[str], pollers: int, seconds: float) -> dict[str, Any]:
    """``pollers`` tasks GET the runs back to back for ``seconds``."""
    latencies: list[float] = []
    errors: dict[str, int] = {}
    limits = httpx.Limits(max_connections=pollers, max_keepalive_connections=pollers)
    async with httpx.AsyncClient(base_url=url, headers=AUTH, limits=limits, timeout=30.0) as client:
        stop = time.monotonic() + seconds

        async def poller(index: int) -> None:
            path = f"/v1/runs/{runs[index % len(runs)]}"
            while time.monotonic() < stop:
                started = time.perf_counter()
                try:
                    response = await client.get(path)
                    if response.status_code != 200:
                        errors[str(response.status_code)] = (
                            errors.get(str(response.status_code), 0) + 1
                        )
                except httpx.HTTPError as exc:
                    errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                latencies.append(time.perf_counter() - started)

        began = time.monotonic()
        await asyncio.gather(*(poller(i) for i in range(pollers)))
        elapsed = time.monotonic() - began
    latencies.sort()
    return {
        "requests": len(latencies),
        "seconds": elapsed,
        "requests_per_s": len(latencies) / elapsed,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))],
        "errors": errors,
    }


def measure(server: ServerProcess, pollers: int, seconds: float, runs_count: int) -> dict[str, Any]:
    """Start the runs, poll, and read the server's memory around the polling."""
    assert server.process is not None
    pid = server.process.pid
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=30) as client:
        runs = start_runs(client, runs_count)
    rss_start = rss_kib(pid)
    result = asyncio.run(poll(server.url, runs, pollers, seconds))
    rss_end = rss_kib(pid)
    started = time.perf_counter()
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=120) as client:
        epochs = [client.get(f"/v1/runs/{run}").json()["epoch"] for run in runs]
        result["first_get_after_ms"] = 1000 * (time.perf_counter() - started)
        for run in runs:
            client.post(f"/v1/runs/{run}/cancel")
    result.update(
        pollers=pollers,
        runs=runs_count,
        rss_start_mib=rss_start / 1024,
        rss_end_mib=rss_end / 1024,
        rss_growth_pct=100 * (rss_end - rss_start) / rss_start,
        epochs_trained_by_end=epochs,
    )
    return result


def table(result: dict[str, Any]) -> str:
    """The README table."""
    errors = sum(result["errors"].values())
    rows = [
        ("pollers / training runs", f"{result['pollers']} / {result['runs']}"),
        ("duration", f"{result['seconds']:.0f} s"),
        ("requests", f"{result['requests']:,}"),
        ("requests/s", f"{result['requests_per_s']:.0f}"),
        ("p50 / p99 latency", f"{result['p50_ms']:.0f} ms / {result['p99_ms']:.0f} ms"),
        ("errors", f"{errors} {result['errors'] or ''}".strip()),
        (
            "server RSS start → end",
            f"{result['rss_start_mib']:.1f} → {result['rss_end_mib']:.1f} MiB "
            f"({result['rss_growth_pct']:+.1f}%)",
        ),
    ]
    lines = ["| measure | value |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    return "\n".join(lines)


def main() -> int:
    """Run the benchmark and print the table (and the JSON with ``--json``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--pollers", type=int, default=200)
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--quick", action="store_true", help="5 s, 20 pollers (smoke run)")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.pollers = 5.0, 20
    env = {"BACKPROP_WORKERS": str(args.runs), "BACKPROP_API_KEYS": KEY}
    with tempfile.TemporaryDirectory() as workdir, running_server(Path(workdir), env) as server:
        try:
            result = measure(server, args.pollers, args.seconds, args.runs)
        except Exception:
            print(server.log()[-5000:], file=sys.stderr)
            raise
    print(table(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
