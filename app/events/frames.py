"""The wire form of a run's events, framed once by sse-starlette and shared.

Every frame is the bytes of one Server-Sent Event, built with
:class:`sse_starlette.ServerSentEvent` (``id:``, ``event:``, ``data:``, ``\\n``
line ends, the order and bytes of the stream before the library). A progress
frame is built once per recorded epoch by the run's feed and then sent, as is,
to every subscriber at that point: formatting does not grow with subscribers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sse_starlette import ServerSentEvent

SEPARATOR = "\n"
KEEPALIVE_COMMENT = "keep-alive"


@dataclass(frozen=True, slots=True)
class Frame:
    """One encoded progress event and the epoch it carries (its ``id``)."""

    epoch: int
    data: bytes


def encode(kind: str, data: Mapping[str, Any], epoch: int | None = None) -> bytes:
    """One event: ``id`` (progress events only: the epoch), ``event`` and one ``data`` line."""
    return ServerSentEvent(
        data=json.dumps(data, separators=(",", ":")),
        event=kind,
        id=None if epoch is None else str(epoch),
        sep=SEPARATOR,
    ).encode()


def retry(milliseconds: int) -> bytes:
    """The ``retry:`` field that opens every stream (EventSource's reconnect delay)."""
    return ServerSentEvent(retry=milliseconds, sep=SEPARATOR).encode()


def keepalive() -> ServerSentEvent:
    """The ``: keep-alive`` comment sse-starlette sends every ping interval."""
    return ServerSentEvent(comment=KEEPALIVE_COMMENT, sep=SEPARATOR)


def progress(columns: Mapping[str, list[Any]], status: str, start: int = 0) -> list[Frame]:
    """History columns from row ``start`` on as progress frames, one per recorded epoch.

    Parameters
    ----------
    columns : mapping of str to list
        ``epoch`` and the recorded values, as :func:`app.services.history.read_history`
        returns them (equal lengths).
    status : str
        The run's status, sent in every point's data.
    start : int
        The first row to encode.
    """
    names = list(columns)
    epochs = columns.get("epoch", [])
    frames = []
    for i in range(start, len(epochs)):
        data = {name: columns[name][i] for name in names}
        data["status"] = status
        epoch = int(epochs[i])
        frames.append(Frame(epoch, encode("progress", data, epoch)))
    return frames


def skipped(after_epoch: int, until_epoch: int) -> bytes:
    """Some recorded epochs in ``(after_epoch, until_epoch]`` are not sent: the progress
    events that follow, up to ``until_epoch``, are an evenly spaced sample of them."""
    return encode("skipped", {"after_epoch": after_epoch, "until_epoch": until_epoch})


def status(snapshot: Mapping[str, Any]) -> bytes:
    """A ``status`` event (no id)."""
    return encode("status", snapshot)


def end(data: Mapping[str, Any]) -> bytes:
    """The ``end`` event (no id); the stream closes after it."""
    return encode("end", data)
