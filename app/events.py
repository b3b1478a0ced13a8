"""Server-Sent Events for ``GET /v1/runs/{id}/events``: one shared poller per run.

The database is polled by one asyncio task per run per API process, whatever the
number of subscribers: every ``poll_seconds`` it reads the run row and, when the
run has progressed, the history recorded after the last epoch it saw (in a
worker thread, one short session, so no connection is held between polls). It
fans the new points out to each subscriber's queue and stops when the last
subscriber leaves.

A subscriber first registers its queue, then (once the poller has read its
starting point) replays the stored history after its ``Last-Event-ID`` from the
database, then forwards the live points later than the last one it sent: the
replay is read after the poller's starting point, so nothing falls between the
two, and the epoch check drops what both delivered. Event ids are epochs.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from sqlmodel import col, func, select

from app.db import Database
from app.models import Run, RunHistoryChunk
from app.services import history as history_service

logger = logging.getLogger(__name__)

TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
REPLAY_PAGE = 1000
"""Points read per query while replaying the stored history to a (re)connecting client."""


@dataclass
class RunSnapshot:
    """The run row's fields the stream reports."""

    status: str
    epoch: int
    stop_reason: str | None
    error: dict[str, Any] | None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "status": self.status,
            "epoch": self.epoch,
            "stop_reason": self.stop_reason,
            "error": self.error,
        }


@dataclass
class Message:
    """One item for a subscriber: a history point, a status change, or the end."""

    kind: str  # "progress" | "status" | "end"
    data: dict[str, Any]
    epoch: int | None = None


def format_event(message: Message) -> str:
    """The SSE wire form: ``id`` (epochs only), ``event`` and one ``data`` line."""
    lines = []
    if message.epoch is not None:
        lines.append(f"id: {message.epoch}")
    lines.append(f"event: {message.kind}")
    lines.append("data: " + json.dumps(message.data, separators=(",", ":")))
    return "\n".join(lines) + "\n\n"


def points(columns: dict[str, list[Any]], status: str) -> list[Message]:
    """History columns as one progress message per recorded epoch."""
    out = []
    names = list(columns)
    for i, epoch in enumerate(columns.get("epoch", [])):
        data = {name: columns[name][i] for name in names}
        data["status"] = status
        out.append(Message("progress", data, int(epoch)))
    return out


def _snapshot(row: Any) -> RunSnapshot:
    error = dict(row[3]) if row[3] is not None else None
    return RunSnapshot(status=row[0], epoch=int(row[1]), stop_reason=row[2], error=error)


def _read_snapshot(db: Database, run_id: str) -> RunSnapshot | None:
    with db.reading() as session:
        row = session.exec(
            select(Run.status, Run.epoch, Run.stop_reason, Run.error).where(Run.id == run_id)
        ).first()
    return None if row is None else _snapshot(row)


def _read_start(db: Database, run_id: str) -> tuple[RunSnapshot | None, int]:
    """The run and its last recorded epoch (the poller's starting point)."""
    with db.reading() as session:
        row = session.exec(
            select(Run.status, Run.epoch, Run.stop_reason, Run.error).where(Run.id == run_id)
        ).first()
        last = session.exec(
            select(func.max(col(RunHistoryChunk.last_epoch))).where(
                RunHistoryChunk.run_id == run_id
            )
        ).one()
    return (None if row is None else _snapshot(row)), int(last or 0)


def _read_after(db: Database, run_id: str, after: int, limit: int | None) -> dict[str, list[Any]]:
    with db.reading() as session:
        return history_service.read_history(
            session=session, run_id=run_id, after_epoch=after, limit=limit
        )


@dataclass
class RunPoller:
    """Polls one run for all of its subscribers in this process."""

    hub: EventHub
    run_id: str
    subscribers: set[asyncio.Queue[Message]] = field(default_factory=set)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    snapshot: RunSnapshot | None = None
    cursor: int = 0
    polls: int = 0
    task: asyncio.Task[None] | None = None

    def publish(self, message: Message) -> None:
        for queue in self.subscribers:
            queue.put_nowait(message)

    async def run(self) -> None:
        db = self.hub.db
        try:
            self.snapshot, self.cursor = await asyncio.to_thread(_read_start, db, self.run_id)
            self.polls += 1
            self.ready.set()
            while self.subscribers and self.snapshot is not None:
                if self.snapshot.status in TERMINAL:
                    self.publish(Message("end", self.snapshot.as_dict()))
                    return
                await asyncio.sleep(self.hub.poll_seconds)
                await self._poll()
        except asyncio.CancelledError:
            raise
        except Exception:  # a broken poll ends the streams; clients reconnect
            logger.exception("event poller for run %s failed", self.run_id)
            self.publish(Message("end", {"status": "unknown", "error": "stream failed"}))
        finally:
            self.ready.set()
            self.hub.forget(self)

    async def _poll(self) -> None:
        db = self.hub.db
        snapshot = await asyncio.to_thread(_read_snapshot, db, self.run_id)
        self.polls += 1
        if snapshot is None:  # deleted
            self.publish(Message("end", {"status": "deleted"}))
            self.snapshot = None
            return
        # Read the history after the row: the final chunk is committed with the
        # terminal status, so a terminal row means the history read sees all of it.
        if snapshot.epoch > self.cursor or snapshot.status in TERMINAL:
            columns = await asyncio.to_thread(_read_after, db, self.run_id, self.cursor, None)
            self.polls += 1
            for message in points(columns, snapshot.status):
                self.publish(message)
            if columns.get("epoch"):
                self.cursor = int(columns["epoch"][-1])
        if self.snapshot is None or snapshot.status != self.snapshot.status:
            self.publish(Message("status", snapshot.as_dict()))
        self.snapshot = snapshot


class EventHub:
    """The pollers of one API process (``app.state.event_hub``).

    Parameters
    ----------
    db : Database
        The API's database.
    poll_seconds : float
        Interval between two polls of a run that has subscribers.
    keepalive_seconds : float
        A comment line is sent after this long without an event.
    """

    def __init__(
        self, db: Database, *, poll_seconds: float = 0.5, keepalive_seconds: float = 15.0
    ) -> None:
        self.db = db
        self.poll_seconds = poll_seconds
        self.keepalive_seconds = keepalive_seconds
        self.pollers: dict[str, RunPoller] = {}
        self.total_polls = 0

    def forget(self, poller: RunPoller) -> None:
        self.total_polls += poller.polls
        if self.pollers.get(poller.run_id) is poller:
            del self.pollers[poller.run_id]

    def subscribe(self, run_id: str) -> tuple[RunPoller, asyncio.Queue[Message]]:
        """Register a queue with the run's poller (started when it is the first)."""
        poller = self.pollers.get(run_id)
        if poller is None or poller.task is None or poller.task.done():
            poller = RunPoller(hub=self, run_id=run_id)
            self.pollers[run_id] = poller
        queue: asyncio.Queue[Message] = asyncio.Queue()
        poller.subscribers.add(queue)
        if poller.task is None:
            poller.task = asyncio.create_task(poller.run(), name=f"events-{run_id}")
        return poller, queue

    def unsubscribe(self, poller: RunPoller, queue: asyncio.Queue[Message]) -> None:
        """Remove a queue; the poller stops by itself at its next turn when none is left."""
        poller.subscribers.discard(queue)

    def polls(self) -> int:
        """Polls (database reads) made so far by all pollers, finished or not."""
        return self.total_polls + sum(p.polls for p in self.pollers.values())

    async def stream(self, run_id: str, last_event_id: int) -> AsyncIterator[str]:
        """The SSE text of one subscriber, from after epoch ``last_event_id`` to the end."""
        poller, queue = self.subscribe(run_id)
        try:
            yield f"retry: {int(self.poll_seconds * 2000)}\n\n"
            await poller.ready.wait()
            sent = last_event_id
            if poller.snapshot is None:  # deleted meanwhile
                yield format_event(Message("end", {"status": "deleted"}))
                return
            if poller.snapshot is not None:
                yield format_event(Message("status", poller.snapshot.as_dict()))
                status = poller.snapshot.status
                while True:  # replay, a page at a time
                    columns = await asyncio.to_thread(
                        _read_after, self.db, run_id, sent, REPLAY_PAGE
                    )
                    replay = points(columns, status)
                    for message in replay:
                        yield format_event(message)
                    if replay:
                        sent = int(replay[-1].epoch or sent)
                    if len(replay) < REPLAY_PAGE:
                        break
            while True:
                try:
                    message = await asyncio.wait_for(queue.get(), self.keepalive_seconds)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                if message.epoch is not None:
                    if message.epoch <= sent:
                        continue
                    sent = message.epoch
                yield format_event(message)
                if message.kind == "end":
                    return
        finally:
            self.unsubscribe(poller, queue)
