"""The feeds of one API process, the per-tenant cap on open streams, and the response.

The response is sse-starlette's :class:`~sse_starlette.EventSourceResponse`: it
sends the subscriber's encoded events as they come, a ``: keep-alive`` comment
every ``keepalive_seconds``, notices a client's disconnect at once (it listens for
``http.disconnect``; the stream's task group is cancelled and the subscription is
released), gives up on a client whose socket takes nothing for
``send_timeout_seconds``, and ends the stream when the server begins shutting down
(uvicorn gives an application no other sign before its connections close: the
library learns it from uvicorn's signal handler and sets the response's shutdown
event; the run's poller sees it within a poll interval and the stream closes
cleanly, before uvicorn's graceful timeout).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

import anyio
from sse_starlette import EventSourceResponse
from sse_starlette.sse import SendTimeoutError
from starlette.types import Receive, Scope, Send

from app.config import Settings
from app.db.database import Database
from app.events import frames
from app.events.feed import RunFeed, Subscription
from app.events.stream import run_events

logger = logging.getLogger(__name__)

SHUTDOWN_GRACE_SECONDS = 3.0
"""After the server begins shutting down, streams that have not ended by themselves
(a client that reads nothing) are cancelled after this long."""


class StreamLimitError(Exception):
    """The tenant has as many open streams as it may (HTTP 429)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(
            f"too many open event streams: this tenant already has {limit}, the limit "
            "set by BACKPROP_MAX_EVENT_STREAMS; close one (or raise the setting) and retry"
        )


@dataclass(frozen=True)
class StreamSettings:
    """How the event streams of one process behave (see :class:`app.config.Settings`)."""

    poll_seconds: float = 0.5
    keepalive_seconds: float = 15.0
    buffer_points: int = 2000
    batch_points: int = 500
    max_streams: int = 100
    send_timeout_seconds: float = 30.0

    @classmethod
    def from_settings(cls, settings: Settings) -> StreamSettings:
        """The settings' ``event_*`` fields."""
        return cls(
            buffer_points=settings.event_buffer_points,
            batch_points=settings.event_batch_points,
            max_streams=settings.max_event_streams,
            send_timeout_seconds=settings.event_send_timeout_seconds,
        )


class RunEventsResponse(EventSourceResponse):
    """sse-starlette's response; a client that stopped reading is closed with a warning
    (not an exception trace)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except SendTimeoutError:
            logger.warning(
                "closing an event stream (%s): the client took no data for %.0f s",
                scope.get("path", ""),
                self.send_timeout or 0,
            )


class EventHub:
    """The run feeds of one API process (``app.state.event_hub``).

    Parameters
    ----------
    db : Database
        The API's database.
    settings : StreamSettings
        Intervals, buffer sizes and the per-tenant cap.
    """

    def __init__(self, db: Database, settings: StreamSettings | None = None) -> None:
        self.db = db
        self.settings = settings or StreamSettings()
        self.feeds: dict[str, RunFeed] = {}
        self.open_streams: dict[str, int] = {}
        self.total_polls = 0

    @property
    def poll_seconds(self) -> float:
        """Interval between two polls of a watched run."""
        return self.settings.poll_seconds

    def open(self, tenant: str, run_id: str) -> Subscription:
        """Subscribe ``tenant`` to the run's feed (started when it is the first).

        Raises
        ------
        StreamLimitError
            The tenant has ``max_streams`` open streams in this process.
        """
        limit = self.settings.max_streams
        if self.open_streams.get(tenant, 0) >= limit:
            raise StreamLimitError(limit)
        feed = self.feeds.get(run_id)
        if feed is None or feed.stopped:
            feed = RunFeed(
                db=self.db,
                run_id=run_id,
                poll_seconds=self.settings.poll_seconds,
                capacity=self.settings.buffer_points,
                on_stop=self._forget,
            )
            self.feeds[run_id] = feed
            subscription = Subscription(feed, tenant)
            feed.add(subscription)
            feed.start()
        else:
            subscription = Subscription(feed, tenant)
            feed.add(subscription)
        self.open_streams[tenant] = self.open_streams.get(tenant, 0) + 1
        return subscription

    def release(self, subscription: Subscription) -> None:
        """Close a subscription (idempotent): its feed stops when it was the last."""
        if subscription.closed:
            return
        subscription.closed = True
        subscription.feed.remove(subscription)
        left = self.open_streams.get(subscription.tenant, 0) - 1
        if left > 0:
            self.open_streams[subscription.tenant] = left
        else:
            self.open_streams.pop(subscription.tenant, None)

    def response(self, subscription: Subscription, after: int | None) -> RunEventsResponse:
        """The ``text/event-stream`` response of a subscription: after epoch ``after``, or
        (None) from a sample of the stored history."""
        shutdown = anyio.Event()
        subscription.shutdown = shutdown
        settings = self.settings
        return RunEventsResponse(
            run_events(
                subscription,
                after,
                batch=settings.batch_points,
                retry_ms=int(settings.poll_seconds * 2000),
                release=self.release,
            ),
            headers={"Cache-Control": "no-cache"},
            ping=settings.keepalive_seconds,
            sep=frames.SEPARATOR,
            ping_message_factory=frames.keepalive,
            send_timeout=settings.send_timeout_seconds,
            shutdown_event=shutdown,
            shutdown_grace_period=SHUTDOWN_GRACE_SECONDS,
        )

    def _forget(self, feed: RunFeed) -> None:
        self.total_polls += feed.polls
        if self.feeds.get(feed.run_id) is feed:
            del self.feeds[feed.run_id]

    def polls(self) -> int:
        """Polls (database reads) made so far by all feeds, finished or not."""
        return self.total_polls + sum(feed.polls for feed in self.feeds.values())

    async def aclose(self) -> None:
        """Stop every feed (the app's shutdown); their streams end."""
        feeds = list(self.feeds.values())
        for feed in feeds:
            feed.closing = True
            if feed.task is not None:
                feed.task.cancel()
        for feed in feeds:
            if feed.task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await feed.task
