"""Load: 200 concurrent pollers for 60 s while 4 runs train (issue 5).

``.venv/bin/python benchmarks/load.py`` starts ``backprop serve`` on a free
loopback port (4 local workers, a fresh SQLite file in a temporary directory,
API keys on), starts 4 long runs, waits until all 4 are running, then runs 200
pollers that ``GET /v1/runs/{id}`` back to back (each sends its next request
when the previous one is answered), spread over the 4 runs, for ``--seconds``
(60). Each poller holds its own keep-alive connection (200 connections, opened
before the clock starts), driven by one asyncio loop with the small HTTP/1.1
client of ``benchmarks/service.py`` (:class:`benchmarks.service.Connection`):
``httpx.AsyncClient`` costs more CPU per request than the server, and on 2
shared cores the pollers would mostly measure themselves.

Reported: requests/s, p50/p99 latency, errors (any non-200 status or transport
error; the first few are printed), the server process's RSS (``/proc``) at the
start and the end of the polling (and every 5 s between), and the epochs each run
trained meanwhile (did training keep going under the load?). The runs are
cancelled afterwards and the server stopped. The pollers share the machine's
cores with the server and its workers. Writes ``benchmarks/results/load.json``; ``--quick`` is a 5 s
smoke run with 20 pollers (it writes JSON only with ``--output``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

# ``python benchmarks/load.py`` puts this directory first on sys.path, where
# benchmarks/engine.py would shadow the ``engine`` package: use the repository root.
ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "benchmarks"]
sys.path.insert(0, str(ROOT))

from benchmarks.service import machine, poll_round  # noqa: E402
from tests.support.server import ServerProcess, running_server  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "load.json"
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
RSS_EVERY_S = 5.0
UNBOUNDED = 1 << 62
"""Requests per poller: no bound, the clock ends the polling."""


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


def snapshot(client: httpx.Client, runs: Sequence[str]) -> dict[str, Any]:
    """Each run's status and epoch, and how long reading them took."""
    started = time.perf_counter()
    bodies = []
    for run in runs:
        response = client.get(f"/v1/runs/{run}")
        response.raise_for_status()
        bodies.append(response.json())
    return {
        "at": time.monotonic(),
        "read_ms": 1000 * (time.perf_counter() - started),
        "statuses": [body["status"] for body in bodies],
        "epochs": [body["epoch"] for body in bodies],
    }


async def poll_sampling_rss(
    port: int, pid: int, runs: Sequence[str], pollers: int, seconds: float
) -> tuple[dict[str, Any], list[tuple[float, float]]]:
    """:func:`poll_round` back to back, and the server's RSS (MiB) every few seconds meanwhile.

    The samples tell a leak (steady growth) from warm-up (growth that levels off).
    """
    samples: list[tuple[float, float]] = []
    polling = asyncio.ensure_future(poll_round(port, runs, 0.0, seconds, UNBOUNDED, pollers, AUTH))
    started = time.monotonic()
    while not polling.done():
        samples.append((time.monotonic() - started, rss_kib(pid) / 1024))
        await asyncio.wait({polling}, timeout=RSS_EVERY_S)
    return polling.result(), samples


def measure(server: ServerProcess, pollers: int, seconds: float, runs_count: int) -> dict[str, Any]:
    """Start the runs, poll, and read the server's memory and the runs' epochs around it."""
    assert server.process is not None
    pid = server.process.pid
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=120) as client:
        runs = start_runs(client, runs_count)
        time.sleep(1.0)  # every worker well into training
        try:
            before = snapshot(client, runs)
            rss_start = rss_kib(pid)
            load_start = os.getloadavg()
            polling, rss_samples = asyncio.run(
                poll_sampling_rss(server.port, pid, runs, pollers, seconds)
            )
            load_end = os.getloadavg()
            rss_end = rss_kib(pid)
            after = snapshot(client, runs)
        finally:
            for run in runs:
                client.post(f"/v1/runs/{run}/cancel")
    window = after["at"] - before["at"]
    advanced = [b - a for a, b in zip(before["epochs"], after["epochs"], strict=True)]
    return {
        "pollers": pollers,
        "runs": runs_count,
        **{key: polling[key] for key in ("requests", "seconds", "requests_per_second")},
        **{key: polling[key] for key in ("p50_ms", "p99_ms", "max_ms")},
        "errors": polling["errors"],
        "error_samples": polling["error_samples"],
        "rss_start_mib": rss_start / 1024,
        "rss_end_mib": rss_end / 1024,
        "rss_growth_pct": 100 * (rss_end - rss_start) / rss_start,
        "rss_samples_mib": [[round(t, 1), round(mib, 1)] for t, mib in rss_samples],
        "loadavg_start": list(load_start),
        "loadavg_end": list(load_end),
        "statuses_before": before["statuses"],
        "statuses_after": after["statuses"],
        "epochs_before": before["epochs"],
        "epochs_after": after["epochs"],
        "epochs_advanced": advanced,
        "epochs_window_s": window,
        "kept_training": all(n > 0 for n in advanced)
        and all(status == "running" for status in after["statuses"]),
        "first_gets_after_ms": after["read_ms"],
    }


def table(result: dict[str, Any]) -> str:
    """The README table."""
    errors = f"**{result['errors']}**"
    if result["error_samples"]:
        errors += " (first: " + "; ".join(f"`{e}`" for e in result["error_samples"]) + ")"
    advanced = result["epochs_advanced"]
    window = result["epochs_window_s"]
    training = (
        f"all {result['runs']} still running" if result["kept_training"] else "**not all training**"
    )
    rows = [
        (
            "pollers (keep-alive connections) / training runs",
            f"{result['pollers']} / {result['runs']}",
            "",
        ),
        ("duration", f"{result['seconds']:.1f} s", ""),
        ("requests", f"{result['requests']:,}", ""),
        ("requests/s", f"**{result['requests_per_second']:.0f}**", ""),
        (
            "p50 / p99 (max) latency",
            f"{result['p50_ms']:.0f} ms / {result['p99_ms']:.0f} ms ({result['max_ms']:.0f} ms)",
            "",
        ),
        ("errors (non-200 or transport)", errors, "0"),
        (
            "server RSS start → end",
            f"{result['rss_start_mib']:.1f} → {result['rss_end_mib']:.1f} MiB "
            f"(**{result['rss_growth_pct']:+.1f}%**)",
            "< 10%",
        ),
        (
            f"server RSS every {RSS_EVERY_S:.0f} s (MiB)",
            " ".join(f"{mib:.1f}" for _, mib in result["rss_samples_mib"]),
            "",
        ),
        (
            f"epochs trained per run during the {window:.0f} s window",
            ", ".join(f"{n:,}" for n in advanced)
            + f" ({sum(advanced) / window:,.0f} epochs/s in all; {training})",
            "",
        ),
        (
            "load average (1 min) start → end",
            f"{result['loadavg_start'][0]:.1f} → {result['loadavg_end'][0]:.1f}",
            "",
        ),
    ]
    lines = ["| measure | value | goal |", "|---|---|---|"]
    lines += [f"| {name} | {value} | {goal} |" for name, value, goal in rows]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, print the table, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--pollers", type=int, default=200)
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--quick", action="store_true", help="5 s, 20 pollers (smoke run)")
    parser.add_argument(
        "--output", "--json", type=Path, help=f"JSON path (default {RESULTS}, none with --quick)"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.pollers = 5.0, 20
    info = machine()
    env = {"BACKPROP_WORKERS": str(args.runs), "BACKPROP_API_KEYS": KEY}
    with (
        tempfile.TemporaryDirectory(prefix="backprop-load-") as workdir,
        running_server(Path(workdir), env) as server,
    ):
        try:
            result = measure(server, args.pollers, args.seconds, args.runs)
        except Exception:
            print(server.log()[-5000:], file=sys.stderr)
            raise
        log = server.log()
    info["loadavg_at_end"] = list(os.getloadavg())
    result.update(
        command=shlex.join(["python", "benchmarks/load.py", *(argv or sys.argv[1:])]),
        quick=args.quick,
        machine=info,
        server_log_tail=log[-2000:],
    )
    output = args.output or (None if args.quick else RESULTS)
    text = table(result)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps({**result, "table": text}, indent=2) + "\n")
    print(text)
    if result["error_samples"]:
        print("\nFirst errors:", *result["error_samples"], sep="\n  ")
    if args.quick:
        print("\n(--quick: a smoke run; the numbers mean little)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
