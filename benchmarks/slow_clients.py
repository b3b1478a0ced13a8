"""Slow clients: /healthz latency while 200 stalled connections are open (issue 10).

``.venv/bin/python benchmarks/slow_clients.py`` starts ``backprop serve`` on a free
loopback port (default settings: 10 s body and header timeouts; API keys on, no
workers, a fresh SQLite file in a temporary directory) and times ``GET /healthz``
from one keep-alive connection, back to back with a 20 ms pause, in three phases:

baseline
    ``--baseline-seconds`` (10) with nothing else connected (after a few requests to
    each route timed, whose first answers build state lazily).
steady
    ``--seconds`` (30) while ``--connections`` (200) hostile connections stay open:
    half *stalled bodies* (``POST /v1/networks``, ``Content-Length: 100``, one byte,
    then nothing), half *slow heads* (a request line, then a header line every
    second and never the end of the head; every other one after a complete request,
    a 404, on the same keep-alive connection). Each one the server answers (408) is
    replaced at once, so the count stays at ``--connections``; the first openings
    are spread over one timeout, so about connections / timeout are answered and
    replaced each second. The clock starts once all are open.
burst
    The same, all opened at once: their 408s and replacements come in bursts of
    ``--connections`` once per timeout (the worst case for the event loop).

Once a second, ``GET /v1/networks`` (with the key) and ``GET /metrics`` are timed
too. Reported: /healthz p50/p99/max per phase (and the number of answers over 50
ms), the ratio of p99 to the baseline's, the /v1 and /metrics latencies and
statuses, the hostile connections' answers (how many 408s; the earliest and latest
from opening to the 408, floored by the timeout: a keep-alive head's clock starts
when the client has read the previous response, a little after the server's), and
the load average. The probe is the small HTTP/1.1 client of ``benchmarks/service.py``
(:class:`Connection`); the hostile connections run in a child process
(``--fleet``), so that their client work never delays the probe's reads. Writes
``benchmarks/results/slow_clients.json``; ``--quick`` is a smoke run (20
connections, 2 s timeouts, 2-3 s phases; JSON only with ``--output``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# ``python benchmarks/slow_clients.py`` puts this directory first on sys.path, where
# benchmarks/engine.py would shadow the ``engine`` package: use the repository root.
ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "benchmarks"]
sys.path.insert(0, str(ROOT))

from benchmarks.service import Connection, machine, percentile_ms, verdict  # noqa: E402
from tests.support.server import ServerProcess, running_server  # noqa: E402
from tests.support.slow_clients import (  # noqa: E402
    KEEP_ALIVE_REQUEST,
    SLOW_HEAD_LINE,
    SLOW_HEAD_START,
    STALLED_BODY,
)

RESULTS = ROOT / "benchmarks" / "results" / "slow_clients.json"
KEY = "slow-clients-benchmark-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
GOAL_MS = 50.0
PROBE_PAUSE_S = 0.02
DRIP_S = 1.0


@dataclass
class Answers:
    """What the hostile connections received."""

    timeouts: list[float] = field(default_factory=list)
    """Seconds from opening to a 408, per answered connection."""
    other: list[str] = field(default_factory=list)
    """Any other first line (or error), per connection."""


async def _read_response(reader: asyncio.StreamReader) -> bytes:
    """One whole response (head and body, by Content-Length)."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return head + await reader.readexactly(length)


async def _hostile(port: int, kind: str, answers: Answers, opened: asyncio.Event) -> None:
    """One hostile connection, until the server answers it (then it returns)."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError as exc:
        answers.other.append(f"{kind}: connect: {exc}")
        opened.set()
        await asyncio.sleep(DRIP_S)  # no busy loop of failing connects
        return
    try:
        start = time.monotonic()
        if kind == "keep-alive head":
            writer.write(KEEP_ALIVE_REQUEST)
            await _read_response(reader)
            start = time.monotonic()
        writer.write(STALLED_BODY if kind == "stalled body" else SLOW_HEAD_START)
        await writer.drain()
        opened.set()
        answer = asyncio.ensure_future(reader.readline())
        while kind != "stalled body" and not answer.done():
            await asyncio.wait([answer], timeout=DRIP_S)
            if not answer.done():
                writer.write(SLOW_HEAD_LINE)
                with contextlib.suppress(ConnectionError):
                    await writer.drain()
        line = await answer
        if line.startswith(b"HTTP/1.1 408 "):
            answers.timeouts.append(time.monotonic() - start)
        else:
            answers.other.append(f"{kind}: {line!r}")
    except (ConnectionError, asyncio.IncompleteReadError) as exc:
        answers.other.append(f"{kind}: {type(exc).__name__}")
    finally:
        opened.set()
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def _keep_open(
    port: int, kind: str, answers: Answers, first: asyncio.Event, stop: asyncio.Event
) -> None:
    """Hold one hostile connection of ``kind`` open until ``stop``: reopen when answered.
    ``first`` is set once the first one is open."""
    opened = first
    while not stop.is_set():
        task = asyncio.ensure_future(_hostile(port, kind, answers, opened))
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait([task, stopping], return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not task.done():
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        opened = asyncio.Event()


async def _probe(port: int, seconds: float) -> dict[str, Any]:
    """Time /healthz back to back (and /v1/networks, /metrics once a second)."""
    health = await Connection.open(port)
    api = await Connection.open(port, AUTH)
    samples: dict[str, list[float]] = {"healthz": [], "v1": [], "metrics": []}
    statuses: dict[str, list[int]] = {name: [] for name in samples}
    deadline = time.perf_counter() + seconds
    next_api = time.perf_counter()
    try:
        while time.perf_counter() < deadline:
            targets = [("healthz", health, "/healthz")]
            if time.perf_counter() >= next_api:
                targets += [("v1", api, "/v1/networks"), ("metrics", api, "/metrics")]
                next_api += 1.0
            for name, connection, path in targets:
                started = time.perf_counter()
                status, _ = await connection.get(path)
                samples[name].append(time.perf_counter() - started)
                statuses[name].append(status)
            await asyncio.sleep(PROBE_PAUSE_S)
    finally:
        await health.close()
        await api.close()
    return {
        name: {
            "requests": len(values),
            "p50_ms": percentile_ms(values, 50),
            "p99_ms": percentile_ms(values, 99),
            "max_ms": max(values) * 1000,
            "over_goal": sum(1 for value in values if value * 1000 >= GOAL_MS),
            "non_200": sum(1 for status in statuses[name] if status != 200),
        }
        for name, values in samples.items()
    }


def _kinds(connections: int) -> list[str]:
    heads = connections // 2
    return ["stalled body"] * (connections - heads) + [
        "keep-alive head" if i % 2 else "head" for i in range(heads)
    ]


async def _fleet(port: int, connections: int, stagger: float) -> None:
    """The hostile connections (``--fleet`` mode, a process of their own): open them
    (spread evenly over ``stagger`` seconds), print ``open`` once all are open, hold
    them until stdin closes, then print what they received as JSON."""
    answers = Answers()
    stop = asyncio.Event()
    firsts = [asyncio.Event() for _ in range(connections)]

    async def hold(index: int, kind: str) -> None:
        await asyncio.sleep(stagger * index / connections)
        await _keep_open(port, kind, answers, firsts[index], stop)

    holders = [asyncio.ensure_future(hold(i, kind)) for i, kind in enumerate(_kinds(connections))]
    await asyncio.gather(*(first.wait() for first in firsts))
    print("open", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    stop.set()
    await asyncio.gather(*holders)
    print(json.dumps({"timeouts": answers.timeouts, "other": answers.other}), flush=True)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _timed_probe(port: int, seconds: float, pids: dict[str, int]) -> dict[str, Any]:
    """:func:`_probe`, plus the CPU the processes in ``pids`` used meanwhile (ms/s)."""
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    started = time.perf_counter()
    probe = asyncio.run(_probe(port, seconds))
    elapsed = time.perf_counter() - started
    for name, pid in pids.items():
        probe[f"{name}_cpu_ms_per_s"] = 1000 * (cpu_seconds(pid) - before[name]) / elapsed
    return probe


def _attack(
    port: int, server_pid: int, connections: int, seconds: float, stagger: float
) -> dict[str, Any]:
    """Probe while the hostile connections are open. They run in a child process, so
    that their client work never delays the probe's reads on this process's loop."""
    fleet = subprocess.Popen(
        [sys.executable, __file__, "--fleet", str(port), str(connections), str(stagger)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert fleet.stdin is not None and fleet.stdout is not None
    try:
        ready = fleet.stdout.readline().strip()
        if ready != "open":
            raise RuntimeError(f"the hostile connections did not open: {ready!r}")
        probe = _timed_probe(port, seconds, {"server": server_pid, "fleet": fleet.pid})
        fleet.stdin.close()
        answers = json.loads(fleet.stdout.readline())
    finally:
        if fleet.poll() is None:
            fleet.kill()
        fleet.wait(timeout=60)
    timeouts: list[float] = answers["timeouts"]
    return {
        **probe,
        "stagger_seconds": stagger,
        "answers_408": len(timeouts),
        "seconds_to_408_min": min(timeouts, default=float("nan")),
        "seconds_to_408_max": max(timeouts, default=float("nan")),
        "other_answers": answers["other"][:20],
        "other_answer_count": len(answers["other"]),
    }


async def _warm_up(port: int) -> None:
    """First requests build lazily made state (route tables, pools): not measured."""
    connection = await Connection.open(port, AUTH)
    try:
        for path in ("/healthz", "/v1/networks", "/metrics", "/favicon.ico") * 5:
            await connection.get(path)
    finally:
        await connection.close()


def _measure(port: int, server_pid: int, args: argparse.Namespace) -> dict[str, Any]:
    n = args.connections
    asyncio.run(_warm_up(port))
    return {
        "baseline": _timed_probe(port, args.baseline_seconds, {"server": server_pid}),
        # Openings spread over one timeout: about connections / timeout answered (and
        # replaced) per second, the steady state of a patient attacker.
        "steady": _attack(port, server_pid, n, args.seconds, stagger=args.timeout),
        # All opened at once: their 408s (and the replacements) come in bursts.
        "burst": _attack(port, server_pid, n, args.seconds, stagger=0.0),
    }


def _latency_row(label: str, row: dict[str, Any], goal: bool) -> str:
    slow = f", {row['over_goal']} over {GOAL_MS:.0f} ms" if "over_goal" in row else ""
    verdict_text = f"< {GOAL_MS:.0f} ms: {verdict(row['max_ms'] < GOAL_MS)}" if goal else ""
    return (
        f"| {label}: p50 / p99 / max | {row['p50_ms']:.1f} / {row['p99_ms']:.1f} / "
        f"{row['max_ms']:.1f} ms ({row['requests']} requests, {row['non_200']} not 200{slow}) "
        f"| {verdict_text} |"
    )


def table(result: dict[str, Any]) -> str:
    """The Markdown table of ``result``."""
    n = result["connections"]
    base = result["baseline"]["healthz"]
    rows = [
        "| measurement | value | goal |",
        "|---|---|---|",
        _latency_row("/healthz, nothing else connected", base, goal=False),
        f"| server CPU meanwhile | {result['baseline']['server_cpu_ms_per_s']:.0f} ms/s | |",
    ]
    for phase, how in (("steady", "opened over one timeout"), ("burst", "opened at once")):
        attack = result[phase]
        health = attack["healthz"]
        ratio = health["p99_ms"] / base["p99_ms"] if base["p99_ms"] else float("nan")
        rows.append(_latency_row(f"/healthz, {n} stalled connections {how}", health, goal=True))
        rows.append(f"| p99 of that / p99 with nothing connected | {ratio:.2f} | |")
        rows.append(
            f"| server CPU meanwhile (the hostile clients' own) | "
            f"{attack['server_cpu_ms_per_s']:.0f} ms/s ({attack['fleet_cpu_ms_per_s']:.0f} ms/s) | |"
        )
        for name, path in (("v1", "GET /v1/networks"), ("metrics", "GET /metrics")):
            row = attack[name]
            works = verdict(row["non_200"] == 0 and row["requests"] > 0)
            rows.append(
                f"| {path} meanwhile: p50 / max | {row['p50_ms']:.1f} / {row['max_ms']:.1f} ms "
                f"({row['requests']} requests, {row['non_200']} not 200) | works: {works} |"
            )
        every = verdict(attack["other_answer_count"] == 0 and attack["answers_408"] > 0)
        rows.append(
            f"| their answers (timeout {result['timeout_seconds']:g} s) | {attack['answers_408']} "
            f"408s, {attack['seconds_to_408_min']:.2f}-{attack['seconds_to_408_max']:.2f} s after "
            f"opening; {attack['other_answer_count']} other | every one 408: {every} |"
        )
    load = result["machine"]
    rows.append(
        f"| load average at start / end (1 min; {load['cpus']} cores) | "
        f"{load['loadavg_at_start'][0]:.1f} / {load['loadavg_at_end'][0]:.1f} | |"
    )
    return "\n".join(rows)


def _run(server: ServerProcess, args: argparse.Namespace) -> dict[str, Any]:
    assert server.process is not None
    return _measure(server.port, server.process.pid, args)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, print the table, write the JSON."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--fleet"]:
        asyncio.run(_fleet(int(argv[1]), int(argv[2]), float(argv[3])))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--baseline-seconds", type=float, default=10.0)
    parser.add_argument("--timeout", type=float, default=10.0, help="body and header timeouts")
    parser.add_argument(
        "--quick", action="store_true", help="20 connections, 2 s timeouts, 2-3 s phases"
    )
    parser.add_argument(
        "--output", "--json", type=Path, help=f"JSON path (default {RESULTS}, none with --quick)"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.connections, args.seconds, args.baseline_seconds, args.timeout = 20, 3.0, 2.0, 2.0
    info = machine()
    env = {
        "BACKPROP_WORKERS": "0",
        "BACKPROP_API_KEYS": KEY,
        "BACKPROP_BODY_TIMEOUT_SECONDS": str(args.timeout),
        "BACKPROP_HEADER_TIMEOUT_SECONDS": str(args.timeout),
    }
    with (
        tempfile.TemporaryDirectory(prefix="backprop-slow-") as workdir,
        running_server(Path(workdir), env) as server,
    ):
        try:
            result = _run(server, args)
        except Exception:
            print(server.log()[-5000:], file=sys.stderr)
            raise
    info["loadavg_at_end"] = list(os.getloadavg())
    result.update(
        command=shlex.join(["python", "benchmarks/slow_clients.py", *argv]),
        quick=args.quick,
        connections=args.connections,
        timeout_seconds=args.timeout,
        machine=info,
    )
    output = args.output or (None if args.quick else RESULTS)
    text = table(result)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps({**result, "table": text}, indent=2) + "\n")
    print(text)
    for phase in ("steady", "burst"):
        if result[phase]["other_answers"]:
            print(f"\nOther answers ({phase}):", *result[phase]["other_answers"], sep="\n  ")
    if args.quick:
        print("\n(--quick: a smoke run; the numbers mean little)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
