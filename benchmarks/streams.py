"""Event-stream measurements for ``benchmarks/load.py`` (issue 10): subscribers, a latency
probe, the CPU after they leave, and subscribers that never read.

The subscribers (:class:`tests.support.subscribers.Subscriber`, raw sockets) run in a
child process with their own event loop, so that reading hundreds of streams does
not delay the latency probe or the pollers of the parent; the child reports what
each subscriber saw when its deadline (a ``time.monotonic`` instant, the same clock
in both processes) has passed.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection as Pipe
from typing import Any

from benchmarks.service import Connection, percentile_ms
from tests.support.subscribers import StalledSubscriber, Subscriber, cpu_seconds, rss_kib


@dataclass
class SubscriberReport:
    """What one subscriber saw."""

    status: int
    last_id: int
    progress: int
    skipped: int
    error: str | None


async def _subscribe(
    port: int, path: str, headers: Mapping[str, str], count: int, deadline: float
) -> list[SubscriberReport]:
    subscribers = [Subscriber(port, path, headers) for _ in range(count)]
    await asyncio.gather(*(s.read(deadline) for s in subscribers))
    return [
        SubscriberReport(s.status, s.last_id, s.progress, s.skipped, s.error) for s in subscribers
    ]


def _subscriber_main(
    port: int, path: str, headers: dict[str, str], count: int, deadline: float, pipe: Pipe
) -> None:
    reports = asyncio.run(_subscribe(port, path, headers, count, deadline))
    pipe.send([asdict(report) for report in reports])
    pipe.close()


class SubscriberProcess:
    """``count`` subscribers of ``path`` in a child process until ``deadline``."""

    def __init__(
        self, port: int, path: str, headers: Mapping[str, str], count: int, deadline: float
    ) -> None:
        context = multiprocessing.get_context("spawn")
        self._pipe, child = context.Pipe(duplex=False)
        self.process = context.Process(
            target=_subscriber_main,
            args=(port, path, dict(headers), count, deadline, child),
            name="sse-subscribers",
        )
        self.process.start()
        child.close()

    def reports(self, timeout: float = 120.0) -> list[SubscriberReport]:
        """Wait for the child's reports (it sends them once its deadline has passed)."""
        if not self._pipe.poll(timeout):
            self.process.kill()
            raise RuntimeError("the subscriber process did not report")
        reports = [SubscriberReport(**item) for item in self._pipe.recv()]
        self.process.join(timeout=30)
        return reports


async def probe(port: int, path: str, headers: Mapping[str, str], until: float) -> list[float]:
    """``GET path`` every 50 ms on one keep-alive connection until ``until``; latencies (s)."""
    connection = await Connection.open(port, headers)
    latencies: list[float] = []
    try:
        while time.monotonic() < until:
            started = time.perf_counter()
            status, body = await connection.get(path)
            if status != 200:
                raise RuntimeError(f"probe: {status} {body[:200]!r}")
            latencies.append(time.perf_counter() - started)
            await asyncio.sleep(0.05)
    finally:
        await connection.close()
    return latencies


def latency_summary(latencies: Sequence[float]) -> dict[str, float]:
    """p50/p99/max in ms and the number of samples."""
    return {
        "samples": len(latencies),
        "p50_ms": percentile_ms(latencies, 50),
        "p99_ms": percentile_ms(latencies, 99),
        "max_ms": max(latencies) * 1000,
    }


def subscriber_summary(
    reports: Sequence[SubscriberReport], run_epoch: int, epochs_per_second: float, seconds: float
) -> dict[str, Any]:
    """How the subscribers fared: errors, events, lag behind the run's epoch at the end."""
    ok = [r for r in reports if r.status == 200 and r.error is None]
    lags = [max(0, run_epoch - r.last_id) for r in ok] or [run_epoch]
    rate = max(epochs_per_second, 1e-9)
    return {
        "subscribers": len(reports),
        "errors": len(reports) - len(ok),
        "error_samples": [f"{r.status}: {r.error}" for r in reports if r not in ok][:3],
        "events_per_subscriber_per_s": statistics.median(r.progress for r in ok) / seconds
        if ok
        else 0.0,
        "skipped_events_median": statistics.median(r.skipped for r in ok) if ok else 0,
        "run_epoch_at_end": run_epoch,
        "lag_epochs_median": statistics.median(lags),
        "lag_epochs_max": max(lags),
        "lag_s_median": statistics.median(lags) / rate,
        "lag_s_max": max(lags) / rate,
    }


def cpu_after_disconnect(pid: int, settle: float, window: float) -> dict[str, float]:
    """The server's own CPU time in ``window`` seconds, ``settle`` seconds after a disconnect."""
    time.sleep(settle)
    before = cpu_seconds(pid)
    time.sleep(window)
    used = cpu_seconds(pid) - before
    return {"settle_s": settle, "window_s": window, "cpu_s": used, "cpu_pct": 100 * used / window}


def _rss_samples(pid: int, seconds: float) -> list[int]:
    samples = [rss_kib(pid)]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(1.0)
        samples.append(rss_kib(pid))
    return samples


def never_read(
    port: int, path: str, headers: Mapping[str, str], pid: int, count: int, seconds: float
) -> dict[str, Any]:
    """The server's RSS (MiB) for ``seconds`` without, then with ``count`` subscribers that
    never read (the first window tells the growth of the rest of the server: the runs'
    history, the database's page caches)."""
    control = _rss_samples(pid, seconds)
    stalled = [StalledSubscriber(port, path, headers) for _ in range(count)]
    try:
        samples = _rss_samples(pid, seconds)
    finally:
        for subscriber in stalled:
            subscriber.close()
    return {
        "subscribers": count,
        "seconds": seconds,
        "control_growth_mib": (control[-1] - control[0]) / 1024,
        "rss_start_mib": samples[0] / 1024,
        "rss_peak_mib": max(samples) / 1024,
        "rss_end_mib": samples[-1] / 1024,
        "control_samples_mib": [round(kib / 1024, 1) for kib in control],
        "rss_samples_mib": [round(kib / 1024, 1) for kib in samples],
    }


def _epoch(client: Any, run_id: str) -> int:
    response = client.get(f"/v1/runs/{run_id}")
    response.raise_for_status()
    epoch: int = response.json()["epoch"]
    return epoch


def _sample_rss(pid: int, until: float, samples: list[float]) -> None:
    while time.monotonic() < until:
        samples.append(rss_kib(pid) / 1024)
        time.sleep(min(1.0, max(0.0, until - time.monotonic())))


async def _probe_and_sample(
    port: int, path: str, headers: Mapping[str, str], pid: int, until: float
) -> tuple[list[float], list[float]]:
    rss: list[float] = []
    sampling = asyncio.ensure_future(asyncio.to_thread(_sample_rss, pid, until, rss))
    latencies = await probe(port, path, headers, until)
    await sampling
    return latencies, rss


@dataclass
class StreamLoad:
    """Where and how hard to subscribe."""

    port: int
    pid: int
    run_id: str
    headers: Mapping[str, str]
    subscribers: int
    seconds: float
    connect_s: float = 3.0
    """Given to the subscribers to connect (and replay) before anything is measured."""


def subscribers_alone(load: StreamLoad, client: Any) -> dict[str, Any]:
    """A latency probe of ``GET /v1/runs/{id}`` alone, then beside ``load.subscribers``
    subscribers; the server's RSS and CPU, and the subscribers' lag at the end."""
    run_path = f"/v1/runs/{load.run_id}"
    baseline = asyncio.run(
        probe(load.port, run_path, load.headers, time.monotonic() + min(10.0, load.seconds))
    )
    rss_before, cpu_before = rss_kib(load.pid) / 1024, cpu_seconds(load.pid)
    deadline = time.monotonic() + load.connect_s + load.seconds
    group = SubscriberProcess(
        load.port, f"{run_path}/events", load.headers, load.subscribers, deadline
    )
    time.sleep(load.connect_s)
    epoch_start, started = _epoch(client, load.run_id), time.monotonic()
    latencies, rss = asyncio.run(
        _probe_and_sample(load.port, run_path, load.headers, load.pid, deadline - 0.2)
    )
    epoch_end, ended = _epoch(client, load.run_id), time.monotonic()
    rss_after, cpu_after = rss_kib(load.pid) / 1024, cpu_seconds(load.pid)
    reports = group.reports()
    rate = (epoch_end - epoch_start) / max(ended - started, 1e-9)
    return {
        "probe_alone": latency_summary(baseline),
        "probe_with_subscribers": latency_summary(latencies),
        "rss_before_mib": rss_before,
        "rss_peak_mib": max([rss_after, *rss]),
        "rss_after_mib": rss_after,
        "rss_samples_mib": [round(value, 1) for value in rss],
        "server_cpu_pct": 100 * (cpu_after - cpu_before) / (load.connect_s + load.seconds),
        "run_epochs_per_s": rate,
        **subscriber_summary(reports, epoch_end, rate, load.seconds + load.connect_s),
    }


def subscribers_leave(load: StreamLoad, client: Any) -> dict[str, Any]:
    """``load.subscribers`` subscribers for ``connect_s`` + a few seconds, then gone: the
    server's CPU in the 10 s from 1 s after."""
    deadline = time.monotonic() + load.connect_s + min(10.0, load.seconds)
    group = SubscriberProcess(
        load.port, f"/v1/runs/{load.run_id}/events", load.headers, load.subscribers, deadline
    )
    reports = group.reports()
    after = cpu_after_disconnect(load.pid, settle=1.0, window=min(10.0, load.seconds))
    return {
        "read_s": load.connect_s + min(10.0, load.seconds),
        "errors": sum(r.error is not None or r.status != 200 for r in reports),
        **after,
        "run_epoch": _epoch(client, load.run_id),
    }


def rows(sse: Mapping[str, Any], pollers_alone: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """The event-stream rows of the README table (``sse`` as :func:`benchmarks.load`
    measured it; ``pollers_alone`` the pollers' figures without subscribers)."""
    n = sse["subscribers"]
    alone, beside = sse["alone"], sse["beside_pollers"]
    leave, stalled = sse["disconnect"], sse["never_read"]
    base, probed = alone["probe_alone"], alone["probe_with_subscribers"]
    cost = alone["rss_peak_mib"] - alone["rss_before_mib"]
    return [
        (
            f"`GET /v1/runs/{{id}}` p50 / p99 (max), probe every 50 ms: alone → {n} subscribers",
            f"{base['p50_ms']:.0f} / {base['p99_ms']:.0f} ({base['max_ms']:.0f}) ms → "
            f"{probed['p50_ms']:.0f} / **{probed['p99_ms']:.0f}** ({probed['max_ms']:.0f}) ms",
            "p99 < 100 ms",
        ),
        (
            f"server RSS before → peak with {n} subscribers",
            f"{alone['rss_before_mib']:.1f} → {alone['rss_peak_mib']:.1f} MiB (**{cost:+.1f} MiB**)",
            "< 100 MiB",
        ),
        (
            "server CPU with the subscribers; their errors",
            f"{alone['server_cpu_pct']:.0f}% of a core; {alone['errors']}",
            "0 errors",
        ),
        (
            "run recording every epoch; subscribers' lag behind it at the end (median / max)",
            f"{alone['run_epochs_per_s']:,.0f} epochs/s; {alone['lag_epochs_median']:,.0f} / "
            f"{alone['lag_epochs_max']:,.0f} epochs (**{alone['lag_s_median']:.1f}** / "
            f"{alone['lag_s_max']:.1f} s)",
            "",
        ),
        (
            "progress events per subscriber per s; `skipped` events (median)",
            f"{alone['events_per_subscriber_per_s']:,.0f}; {alone['skipped_events_median']:,.0f}",
            "",
        ),
        (
            f"{pollers_alone['pollers']} pollers alone → beside {n} subscribers: requests/s, p50 / p99",
            f"{pollers_alone['requests_per_second']:.0f}, {pollers_alone['p50_ms']:.0f} / "
            f"{pollers_alone['p99_ms']:.0f} ms → {beside['requests_per_second']:.0f}, "
            f"{beside['p50_ms']:.0f} / {beside['p99_ms']:.0f} ms "
            f"(errors {beside['errors']} + {beside['subscriber_errors']})",
            "",
        ),
        (
            f"server CPU {leave['settle_s']:.0f} to {leave['settle_s'] + leave['window_s']:.0f} s "
            f"after {n} subscribers disconnect",
            f"**{leave['cpu_s']:.2f} s** in {leave['window_s']:.0f} s ({leave['cpu_pct']:.1f}%)",
            "~0",
        ),
        (
            f"server RSS with {stalled['subscribers']} subscribers that never read, "
            f"{stalled['seconds']:.0f} s: start → peak → end (the {stalled['seconds']:.0f} s "
            "before, without them)",
            f"{stalled['rss_start_mib']:.1f} → {stalled['rss_peak_mib']:.1f} → "
            f"{stalled['rss_end_mib']:.1f} MiB ({stalled['control_growth_mib']:+.1f} MiB)",
            "bounded",
        ),
    ]
