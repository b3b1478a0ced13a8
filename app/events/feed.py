"""One watched run in one API process: a poller and a bounded buffer its subscribers share.

The poller reads the run row every ``poll_seconds`` and, when the run has
progressed, the history recorded after the last epoch it saw (each read one short
session in a worker thread, where the new points are also encoded). It appends the
encoded points to :attr:`RunFeed.frames`, which keeps the newest ``capacity`` of
them, and wakes the subscribers. A subscriber is a cursor (the last epoch it sent)
into that buffer, never a copy of it: the buffer and one page of replay are what a
run costs, whatever the number of subscribers.

``floor`` is the newest epoch the feed published that the buffer no longer holds
(or the last epoch recorded before the feed started): every published point after
it is in :attr:`RunFeed.frames`. A subscriber whose cursor is older than the floor
reads the stored history from the database (:meth:`RunFeed.page`), in pages shared
by the subscribers that ask for the same one.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import anyio

from app.db.database import Database
from app.events import frames
from app.events.frames import Frame
from app.events.reads import RunSnapshot, read_after, read_sample, read_snapshot, read_start
from app.services.history import downsample_indices

logger = logging.getLogger(__name__)

LIVE_CACHE = 16
"""Live chunks kept per feed until its next change (subscribers at the same cursor share one)."""
REPLAY_PAGE = 1000
"""Points read per query while replaying the stored history to a (re)connecting client."""
PAGE_CACHE = 8
"""Full replay pages kept per feed, for subscribers that replay the same stretch."""
DELETED = {"status": "deleted"}
FAILED = {"status": "unknown", "error": "stream failed"}


@dataclass(frozen=True)
class Page:
    """Encoded stored points: ``count`` progress events ending at ``last_epoch``."""

    data: bytes
    count: int
    last_epoch: int | None


@dataclass(frozen=True)
class Sample:
    """The stored history as a new subscriber first sees it: all of it, or ``count``
    evenly spaced points of ``total`` (always with the last) when there are more."""

    data: bytes
    count: int
    total: int
    last_epoch: int | None
    status: str

    @property
    def thinned(self) -> bool:
        """Some recorded epochs are left out."""
        return self.total > self.count


@dataclass(frozen=True)
class NewPoints:
    """What a poll found: the newest ``frames``, and what they leave out."""

    frames: list[Frame]
    last_epoch: int | None
    dropped_floor: int | None
    """The newest of the new points that were not encoded (more than the buffer holds)."""


@dataclass(frozen=True)
class LiveChunk:
    """What a live subscriber at some cursor is sent now, and its new cursor."""

    data: bytes
    last_epoch: int


def thin(pending: list[Frame], batch: int) -> list[Frame]:
    """At most ``batch`` evenly spaced points of ``pending``, always with the last."""
    return [pending[i] for i in downsample_indices(len(pending), batch)]


@dataclass(eq=False)
class Subscription:
    """One open stream of one tenant on one feed."""

    feed: RunFeed
    tenant: str
    shutdown: anyio.Event | None = None
    """Set by sse-starlette when the server begins shutting down."""
    closed: bool = False

    @property
    def shutting_down(self) -> bool:
        """The server is shutting down: the stream should end now."""
        return self.feed.closing or (self.shutdown is not None and self.shutdown.is_set())


def _read_page(db: Database, run_id: str, after: int, status: str) -> Page:
    columns = read_after(db, run_id, after, REPLAY_PAGE)
    encoded = frames.progress(columns, status)
    last = encoded[-1].epoch if encoded else None
    return Page(b"".join(frame.data for frame in encoded), len(encoded), last)


def _read_sample(db: Database, run_id: str, max_points: int, status: str) -> Sample:
    columns, total = read_sample(db, run_id, max_points)
    encoded = frames.progress(columns, status)
    last = encoded[-1].epoch if encoded else None
    return Sample(b"".join(frame.data for frame in encoded), len(encoded), total, last, status)


def _read_new(db: Database, run_id: str, after: int, keep: int, status: str) -> NewPoints:
    columns = read_after(db, run_id, after, None)
    epochs = columns.get("epoch", [])
    start = max(0, len(epochs) - keep)
    return NewPoints(
        frames=frames.progress(columns, status, start),
        last_epoch=int(epochs[-1]) if epochs else None,
        dropped_floor=int(epochs[start - 1]) if start > 0 else None,
    )


@dataclass(eq=False)
class RunFeed:
    """The poller and the shared buffer of one run (see the module docstring).

    Parameters
    ----------
    db : Database
        The API's database.
    run_id : str
        The run.
    poll_seconds : float
        Interval between two polls.
    capacity : int
        Progress points kept in the buffer (the newest).
    on_stop : callable
        Called with the feed when its poller has stopped.
    """

    db: Database
    run_id: str
    poll_seconds: float
    capacity: int
    on_stop: Callable[[RunFeed], None]
    frames: list[Frame] = field(default_factory=list)
    floor: int = 0
    cursor: int = 0
    snapshot: RunSnapshot | None = None
    status_frame: bytes = b""
    status_version: int = 0
    end_frame: bytes | None = None
    closing: bool = False
    polls: int = 0
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    subscribers: set[Subscription] = field(default_factory=set)
    task: asyncio.Task[None] | None = None
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _pages: OrderedDict[tuple[int, str], asyncio.Task[Page]] = field(default_factory=OrderedDict)
    _sample: asyncio.Task[Sample] | None = None
    _live: dict[int, LiveChunk] = field(default_factory=dict)

    @property
    def stopped(self) -> bool:
        """The poller has ended (or was never started): take no new subscribers."""
        return self.task is None or self.task.done() or self.task.cancelling() > 0

    def start(self) -> None:
        """Start the poller."""
        self.task = asyncio.create_task(self._run(), name=f"events-{self.run_id}")

    def add(self, subscription: Subscription) -> None:
        """Count a subscriber in."""
        self.subscribers.add(subscription)

    def remove(self, subscription: Subscription) -> None:
        """Count a subscriber out; the poller stops at once when none is left."""
        self.subscribers.discard(subscription)
        if not self.subscribers and self.task is not None and not self.task.done():
            self.task.cancel()

    def changed(self) -> asyncio.Event:
        """An event set at the next change (take it before reading the feed's state)."""
        return self._changed

    def after(self, epoch: int) -> list[Frame]:
        """The buffered points later than ``epoch``."""
        start = bisect.bisect_right(self.frames, epoch, key=lambda frame: frame.epoch)
        return self.frames[start:]

    def live(self, after: int, batch: int) -> LiveChunk | None:
        """The buffered points after ``after`` for a live subscriber: all of them, or, when
        more than ``batch`` are waiting or some left the buffer before it sent them, a
        ``skipped`` event and an evenly spaced sample ending with the latest. Built once
        per change of the buffer for all subscribers at the same cursor."""
        chunk = self._live.get(after)
        if chunk is not None:
            return chunk
        pending = self.after(after)
        if not pending:
            return None
        parts = []
        if after < self.floor or len(pending) > batch:
            parts.append(frames.skipped(after, pending[-1].epoch))
            pending = thin(pending, batch)
        parts.extend(frame.data for frame in pending)
        chunk = LiveChunk(b"".join(parts), pending[-1].epoch)
        if len(self._live) >= LIVE_CACHE:
            self._live.clear()
        self._live[after] = chunk
        return chunk

    async def page(self, after: int) -> Page:
        """Up to :data:`REPLAY_PAGE` stored points after ``after``, read once for all
        subscribers that ask at the same time (full pages are kept a while)."""
        status = self.snapshot.status if self.snapshot is not None else "unknown"
        key = (after, status)
        task = self._pages.get(key)
        if task is None:
            task = asyncio.create_task(
                asyncio.to_thread(_read_page, self.db, self.run_id, after, status)
            )
            task.add_done_callback(partial(self._page_done, key))
            self._pages[key] = task
            while len(self._pages) > PAGE_CACHE:
                self._pages.popitem(last=False)
        else:
            self._pages.move_to_end(key)
        return await asyncio.shield(task)

    async def sample(self, max_points: int) -> Sample:
        """The stored history for a subscriber without ``Last-Event-ID`` (see :class:`Sample`),
        shared by the subscribers that come while it leaves no gap before the buffer."""
        status = self.snapshot.status if self.snapshot is not None else "unknown"
        task = self._sample
        if task is None or not self._sample_usable(task, status):
            task = asyncio.create_task(
                asyncio.to_thread(_read_sample, self.db, self.run_id, max_points, status)
            )
            self._sample = task
        return await asyncio.shield(task)

    def _sample_usable(self, task: asyncio.Task[Sample], status: str) -> bool:
        if not task.done():
            return True
        if task.cancelled() or task.exception() is not None:
            return False
        sample = task.result()
        return sample.status == status and (sample.last_epoch or 0) >= self.floor

    def _page_done(self, key: tuple[int, str], task: asyncio.Task[Page]) -> None:
        # A short page can grow as the run records more: only full pages are kept.
        if self._pages.get(key) is not task:
            return
        if task.cancelled() or task.exception() is not None or task.result().count < REPLAY_PAGE:
            del self._pages[key]

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def _set_snapshot(self, snapshot: RunSnapshot) -> None:
        if self.snapshot is None or snapshot.status != self.snapshot.status:
            self.status_frame = frames.status(snapshot.as_dict())
            self.status_version += 1
        self.snapshot = snapshot
        if snapshot.terminal:
            self.end_frame = frames.end(snapshot.as_dict())

    def _append(self, new: NewPoints) -> None:
        self._live.clear()
        if new.dropped_floor is not None:
            self.frames = list(new.frames)
            self.floor = new.dropped_floor
        else:
            self.frames.extend(new.frames)
            excess = len(self.frames) - self.capacity
            if excess > 0:
                self.floor = self.frames[excess - 1].epoch
                del self.frames[:excess]
        if new.last_epoch is not None:
            self.cursor = new.last_epoch

    def _shutting_down(self) -> bool:
        return any(s.shutdown is not None and s.shutdown.is_set() for s in self.subscribers)

    async def _run(self) -> None:
        try:
            snapshot, self.cursor = await asyncio.to_thread(read_start, self.db, self.run_id)
            self.polls += 1
            self.floor = self.cursor
            if snapshot is None:
                self.end_frame = frames.end(DELETED)
            else:
                self._set_snapshot(snapshot)
            self.ready.set()
            while self.end_frame is None and self.subscribers:
                await asyncio.sleep(self.poll_seconds)
                if self._shutting_down():
                    self.closing = True
                    return
                await self._poll()
                self._notify()
        except asyncio.CancelledError:
            raise
        except Exception:  # a broken poll ends the streams; clients reconnect
            logger.exception("event poller for run %s failed", self.run_id)
            self.end_frame = frames.end(FAILED)
        finally:
            self.ready.set()
            self._notify()
            self.on_stop(self)

    async def _poll(self) -> None:
        snapshot = await asyncio.to_thread(read_snapshot, self.db, self.run_id)
        self.polls += 1
        if snapshot is None:
            self.end_frame = frames.end(DELETED)
            return
        # Read the history after the row: the final chunk is committed with the
        # terminal status, so a terminal row means the history read sees all of it.
        if snapshot.epoch > self.cursor or snapshot.terminal:
            new = await asyncio.to_thread(
                _read_new, self.db, self.run_id, self.cursor, self.capacity, snapshot.status
            )
            self.polls += 1
            self._append(new)
        self._set_snapshot(snapshot)
