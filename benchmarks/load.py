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
cores with the server and its workers.

Then the event streams (issue 10), on a fifth run, XOR, that records every epoch
(``history_every: 1``), with :mod:`benchmarks.streams`: a latency probe (one
``GET /v1/runs/{id}`` every 50 ms) alone, then beside ``--subscribers`` (200) SSE
subscribers for ``--seconds`` (the server's RSS and CPU, the subscribers' lag
behind the run at the end); the 200 pollers again with the 200 subscribers
beside them; the server's CPU in the 10 s after 200 subscribers disconnect; and
the server's RSS while 5 subscribers that never read stay connected for 30 s.
The subscribers run in a child process (raw sockets, one event loop), so that
reading hundreds of streams does not delay the probe or the pollers.

Writes ``benchmarks/results/load.json``; ``--quick`` is a smoke run (2 s, 2
runs, 20 pollers, 20 subscribers; it writes JSON only with ``--output``).
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

from benchmarks import streams  # noqa: E402
from benchmarks.service import machine, poll_round  # noqa: E402
from tests.support.server import ServerProcess, running_server  # noqa: E402
from tests.support.subscribers import rss_kib  # noqa: E402

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
XOR_NETWORK = {
    "name": "xor",
    "input_size": 2,
    "layers": [{"units": 3, "activation": "sigmoid"}, {"units": 1, "activation": "sigmoid"}],
    "init": {"seed": 7},
}
XOR = {"name": "xor", "X": [[0, 0], [0, 1], [1, 0], [1, 1]], "y": [[0], [1], [1], [0]]}
RSS_EVERY_S = 5.0
STALLED = 5
"""Subscribers that never read (the issue's reproduction)."""
UNBOUNDED = 1 << 62
"""Requests per poller: no bound, the clock ends the polling."""


def start_runs(client: httpx.Client, count: int, **config: Any) -> list[str]:
    """Create ``count`` long runs (``config`` added to each) and wait until every one runs."""
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
            **config,
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


def start_every_epoch_run(client: httpx.Client) -> str:
    """An XOR run that records every epoch (tens of thousands a second on a quiet machine,
    far more than a subscriber is sent); wait until it runs."""
    network = client.post("/v1/networks", json=XOR_NETWORK).json()["id"]
    dataset = client.post("/v1/datasets", json=XOR).json()["id"]
    body = {
        "network_id": network,
        "dataset_id": dataset,
        "loss": "mse",
        "optimizer": {"name": "sgd", "learning_rate": 0.5, "momentum": 0.9},
        "epochs": 100_000_000,
        "history_every": 1,
    }
    response = client.post("/v1/runs", json=body)
    response.raise_for_status()
    run: str = response.json()["id"]
    deadline = time.monotonic() + 60
    while client.get(f"/v1/runs/{run}").json()["status"] != "running":
        if time.monotonic() > deadline:
            raise RuntimeError("the every-epoch run did not start")
        time.sleep(0.2)
    return run


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


def measure(
    server: ServerProcess,
    pollers: int,
    seconds: float,
    runs_count: int,
    subscribers: int,
    quick: bool = False,
) -> dict[str, Any]:
    """Start the runs, poll, and read the server's memory and the runs' epochs around it;
    then the event streams (:func:`measure_streams`)."""
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
            sse = measure_streams(
                server, client, runs, pollers, seconds, subscribers, connect_s=1.0 if quick else 3.0
            )
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
        "sse": sse,
    }


def measure_streams(
    server: ServerProcess,
    client: httpx.Client,
    runs: Sequence[str],
    pollers: int,
    seconds: float,
    subscribers: int,
    connect_s: float = 3.0,
) -> dict[str, Any]:
    """The event-stream phases (see the module docstring) on a new every-epoch run;
    ``connect_s`` given to the subscribers to connect before each measured phase."""
    assert server.process is not None
    pid = server.process.pid
    sse_run = start_every_epoch_run(client)
    load = streams.StreamLoad(server.port, pid, sse_run, AUTH, subscribers, seconds, connect_s)
    try:
        alone = streams.subscribers_alone(load, client)
        group = streams.SubscriberProcess(
            server.port,
            f"/v1/runs/{sse_run}/events",
            AUTH,
            subscribers,
            time.monotonic() + load.connect_s + seconds,
        )
        time.sleep(load.connect_s)
        polling, _ = asyncio.run(poll_sampling_rss(server.port, pid, runs, pollers, seconds))
        beside = {
            key: polling[key]
            for key in ("requests_per_second", "p50_ms", "p99_ms", "max_ms", "errors")
        }
        reports = group.reports()
        beside["subscriber_errors"] = sum(r.error is not None or r.status != 200 for r in reports)
        leave = streams.subscribers_leave(load, client)
        stalled = streams.never_read(
            server.port,
            f"/v1/runs/{sse_run}/events",
            AUTH,
            pid,
            STALLED,
            min(30.0, seconds),
        )
    finally:
        client.post(f"/v1/runs/{sse_run}/cancel")
    return {
        "subscribers": subscribers,
        "alone": alone,
        "beside_pollers": beside,
        "disconnect": leave,
        "never_read": stalled,
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
    if "sse" in result:
        rows += streams.rows(result["sse"], result)
    lines = ["| measure | value | goal |", "|---|---|---|"]
    lines += [f"| {name} | {value} | {goal} |" for name, value, goal in rows]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, print the table, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--pollers", type=int, default=200)
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--subscribers", type=int, default=200)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="2 s, 2 runs, 20 pollers, 20 subscribers given 1 s to connect (smoke run)",
    )
    parser.add_argument(
        "--output", "--json", type=Path, help=f"JSON path (default {RESULTS}, none with --quick)"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.runs, args.pollers, args.subscribers = 2.0, 2, 20, 20
    info = machine()
    env = {
        # One more worker: the every-epoch run of the event-stream phases.
        "BACKPROP_WORKERS": str(args.runs + 1),
        "BACKPROP_API_KEYS": KEY,
        "BACKPROP_MAX_EVENT_STREAMS": str(args.subscribers + STALLED + 10),
    }
    with (
        tempfile.TemporaryDirectory(prefix="backprop-load-") as workdir,
        running_server(Path(workdir), env) as server,
    ):
        try:
            result = measure(
                server, args.pollers, args.seconds, args.runs, args.subscribers, args.quick
            )
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
