"""One subscriber's stream: exact replay after its ``Last-Event-ID``, then the live feed.

**Replay** sends every epoch stored when the subscriber connected, after its
cursor, exactly once, in pages: from the database while the cursor is older than the
feed's buffer, then from the buffer. **Live**, each time the feed changes, the
subscriber sends the points after its cursor; when more than ``batch`` are waiting,
or some were dropped from the buffer before it sent them (it read too slowly, or
its replay took long on a run that records fast), it sends a ``skipped`` event and
an evenly spaced sample of them that ends with the latest. Status changes coalesce into the latest status. Ids are epochs,
strictly increasing: none is sent twice.

Each step's events go out as one chunk (one ``send``), of at most one page.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable

from app.events import frames
from app.events.feed import DELETED, FAILED, REPLAY_PAGE, Subscription
from app.events.frames import Frame

logger = logging.getLogger(__name__)


def _join(parts: list[Frame]) -> bytes:
    return b"".join(frame.data for frame in parts)


class _Cursor:
    """Where one subscriber is: the last epoch and the status version it sent."""

    def __init__(self, subscription: Subscription, after: int | None, batch: int) -> None:
        self.subscription = subscription
        self.feed = subscription.feed
        self.fresh = after is None
        self.epoch = after or 0
        self.batch = batch
        self.status_version = self.feed.status_version
        # The replay ends here: the last epoch the feed had read when the subscriber came.
        self.target = self.feed.cursor

    async def start(self) -> bytes:
        """A subscriber without ``Last-Event-ID``: the stored history, or a sample of it."""
        sample = await self.feed.sample(self.batch)
        self.fresh = False
        if sample.last_epoch is None:
            return b""
        self.epoch = self.target = sample.last_epoch
        if sample.thinned:
            return frames.skipped(0, sample.last_epoch) + sample.data
        return sample.data

    async def replay(self) -> bytes | None:
        """The next page of the exact replay, or None once the subscriber is live."""
        feed = self.feed
        if self.fresh:
            return await self.start()
        while self.epoch < self.target and not self.subscription.shutting_down:
            if self.epoch >= feed.floor:
                part = feed.after(self.epoch)[:REPLAY_PAGE]
                if not part:
                    return None
                self.epoch = part[-1].epoch
                return _join(part)
            page = await feed.page(self.epoch)
            if page.last_epoch is None:  # the stored history ends before the floor
                self.epoch = feed.floor  # (a resumed run truncated it): nothing to replay
                continue
            self.epoch = page.last_epoch
            return page.data
        return None

    def _progress(self) -> list[bytes]:
        chunk = self.feed.live(self.epoch, self.batch)
        if chunk is None:
            return []
        self.epoch = chunk.last_epoch
        return [chunk.data]

    async def live(self) -> tuple[bytes, bool]:
        """The next live chunk (waiting for the feed to change) and whether it is the last."""
        feed = self.feed
        while True:
            changed = feed.changed()
            if self.subscription.shutting_down:
                return b"", True  # no end event: EventSource reconnects with Last-Event-ID
            parts = self._progress()
            if feed.status_version != self.status_version:
                parts.append(feed.status_frame)
                self.status_version = feed.status_version
            if feed.end_frame is not None:
                return b"".join([*parts, feed.end_frame]), True
            if feed.stopped:  # closed by the app's shutdown
                return b"".join(parts), True
            if parts:
                return b"".join(parts), False
            await changed.wait()


async def run_events(
    subscription: Subscription,
    after: int | None,
    *,
    batch: int,
    retry_ms: int,
    release: Callable[[Subscription], None],
) -> AsyncIterator[bytes]:
    """The encoded events of one subscriber, from after epoch ``after`` to the end.

    Parameters
    ----------
    subscription : Subscription
        The subscriber's place on its run's feed (released when the stream ends).
    after : int or None
        The ``Last-Event-ID``: every stored epoch after it is replayed. None (no
        header): the stored history, or an evenly spaced sample of it when it has
        more than ``batch`` points.
    batch : int
        Most progress events per live step; more are thinned.
    retry_ms : int
        The ``retry:`` sent first.
    release : callable
        Gives the subscription back (idempotent).
    """
    feed = subscription.feed
    try:
        yield frames.retry(retry_ms)
        await feed.ready.wait()
        if feed.snapshot is None:  # deleted, or the first read failed
            yield feed.end_frame or frames.end(DELETED)
            return
        cursor = _Cursor(subscription, after, batch)
        yield feed.status_frame
        while (page := await cursor.replay()) is not None:
            if page:
                yield page
        last = False
        while not last:
            chunk, last = await cursor.live()
            if chunk:
                yield chunk
    except Exception:  # a failed replay read ends the stream; the client resumes
        logger.exception("event stream of run %s failed", feed.run_id)
        yield frames.end(FAILED)
    finally:
        release(subscription)
