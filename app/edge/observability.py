"""Request logs and Prometheus metrics of the API.

- :class:`RequestLogMiddleware` (pure ASGI): one log line per HTTP request
  (``event="http.request"``: method, route, path, status, duration, the run id when
  the request names or creates one) and the request-latency histogram, whose labels
  take bounded values only (known methods, route templates, status codes).
- ``GET /metrics`` (Prometheus text format, ``prometheus-client``): request latency
  by route, plus the run table read at scrape time (:class:`RunCollector`), which is
  where the workers' progress shows up whatever machine they run on: runs by
  status, queue depth, epochs trained, epochs per second, expired leases.

Each app has its own :class:`~prometheus_client.CollectorRegistry`, so several apps
in one process (tests) never share or collide on metrics.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlmodel import col, func, select

from app.db.database import Database
from app.db.models import Run, utcnow
from app.jobs.lifecycle import Status

logger = logging.getLogger("backprop.http")

RUN_STATUSES = tuple(status.value for status in Status)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_RUN_IN_PATH = re.compile(r"/v1/runs/(run_[0-9A-Za-z]+)")
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE"})
"""Methods that get a label value of their own; any other is counted as ``other``."""
OTHER_METHOD = "other"
UNMATCHED_ROUTE = "unmatched"

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[Message], Any]
ASGIApp = Callable[[Scope, Receive, Send], Any]


class RequestLogMiddleware:
    """Log every HTTP request once and observe its latency.

    Parameters
    ----------
    app : ASGI app
        The wrapped application.
    latency : Histogram
        ``backprop_http_request_duration_seconds`` with labels method, route, status.
    """

    def __init__(self, app: ASGIApp, latency: Histogram) -> None:
        self.app = app
        self.latency = latency

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        # 500 if the app raises before answering; 499 (nginx's "client closed request")
        # if it returns without an answer: the connection ended before the request was
        # complete (a disconnect, or a shutdown while its body was still arriving).
        status: int | None = None
        location: str | None = None

        async def send_wrapper(message: Message) -> None:
            nonlocal status, location
            if message["type"] == "http.response.start":
                status = int(message["status"])
                for key, value in message.get("headers", ()):
                    if key.lower() == b"location":
                        location = value.decode("latin-1")
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except BaseException:
            status = status or 500
            raise
        finally:
            self._record(scope, status or 499, location, time.perf_counter() - start)

    def _record(self, scope: Scope, status: int, location: str | None, elapsed: float) -> None:
        route = scope.get("route")
        template = getattr(route, "path", None) or UNMATCHED_ROUTE
        method = str(scope.get("method", ""))
        # Label values come only from fixed sets (methods, our route templates, status
        # codes): a client making up methods or paths adds no series.
        method_label = method if method in KNOWN_METHODS else OTHER_METHOD
        self.latency.labels(method_label, template, str(status)).observe(elapsed)
        path = str(scope.get("path", ""))
        extra: dict[str, Any] = {
            "event": "http.request",
            "method": method,
            "path": path,
            "route": template,
            "status": status,
            "duration_ms": round(elapsed * 1000, 3),
        }
        client = scope.get("client")
        if client:
            extra["client"] = client[0]
        match = _RUN_IN_PATH.match(path) or (_RUN_IN_PATH.match(location) if location else None)
        if match:
            extra["run_id"] = match.group(1)
        logger.info("%s %s %d %.1f ms", method, path, status, elapsed * 1000, extra=extra)


class RunCollector(Collector):
    """Run metrics read from the database at each scrape (every worker's progress).

    The epochs-per-second gauge is the growth of the epochs counter between two
    scrapes at least one second apart (it is also ``rate(backprop_epochs_total[1m])``).
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self._lock = threading.Lock()
        self._last: tuple[float, float] | None = None
        self._rate = 0.0

    def _epochs_per_second(self, total: float) -> float:
        now = time.monotonic()
        with self._lock:
            if self._last is None:
                self._last = (now, total)
            elif now - self._last[0] >= 1.0:
                then, before = self._last
                self._rate = max(0.0, (total - before) / (now - then))
                self._last = (now, total)
            return self._rate

    def collect(self) -> Iterable[Metric]:
        """Query the run table and yield the metric families."""
        with self.db.reading() as session:
            rows = session.exec(
                select(Run.status, func.count(), func.coalesce(func.sum(Run.epoch), 0)).group_by(
                    col(Run.status)
                )
            ).all()
            expired = session.exec(
                select(func.count()).where(
                    Run.status == Status.RUNNING, col(Run.lease_expires_at) < utcnow()
                )
            ).one()
        counts = dict.fromkeys(RUN_STATUSES, 0)
        epochs = 0.0
        for status, count, epoch_sum in rows:
            counts[str(status)] = int(count)
            epochs += float(epoch_sum)
        runs = GaugeMetricFamily("backprop_runs", "Runs by status.", labels=["status"])
        for status, count in counts.items():
            runs.add_metric([status], count)
        yield runs
        yield GaugeMetricFamily(
            "backprop_queue_depth",
            "Runs waiting for a worker (status queued).",
            counts[Status.QUEUED],
        )
        yield CounterMetricFamily(
            "backprop_epochs",
            "Epochs trained by the runs in the database (all workers).",
            value=epochs,
        )
        yield GaugeMetricFamily(
            "backprop_epochs_per_second",
            "Epochs trained per second across all workers, between the last two scrapes.",
            self._epochs_per_second(epochs),
        )
        yield GaugeMetricFamily(
            "backprop_expired_leases",
            "Running runs whose worker stopped renewing the lease (about to be re-queued).",
            int(expired),
        )


def install_observability(app: FastAPI, get_db: Callable[[], Database]) -> CollectorRegistry:
    """Add the request-log middleware and ``GET /metrics`` to ``app``.

    Parameters
    ----------
    app : FastAPI
        The application.
    get_db : callable
        Returns the app's database (created in the lifespan, after this call).
    """
    registry = CollectorRegistry()
    latency = Histogram(
        "backprop_http_request_duration_seconds",
        "HTTP request latency by method, route template and status.",
        ["method", "route", "status"],
        buckets=LATENCY_BUCKETS,
        registry=registry,
    )
    runs = _LazyRunCollector(get_db)
    registry.register(runs)
    app.add_middleware(RequestLogMiddleware, latency=latency)

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        """Prometheus metrics (text exposition format)."""
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    app.state.metrics_registry = registry
    return registry


class _LazyRunCollector(Collector):
    """A :class:`RunCollector` created on the first scrape (the database opens later)."""

    def __init__(self, get_db: Callable[[], Database]) -> None:
        self._get_db = get_db
        self._collector: RunCollector | None = None

    def describe(self) -> Iterable[Metric]:
        """No description up front: registration must not touch the database."""
        return []

    def collect(self) -> Iterable[Metric]:
        """Delegate to the :class:`RunCollector` of the app's database."""
        if self._collector is None:
            self._collector = RunCollector(self._get_db())
        return self._collector.collect()
