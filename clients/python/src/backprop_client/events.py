"""The events of ``GET /v1/runs/{id}/events`` (Server-Sent Events, read with httpx-sse)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from httpx_sse import ServerSentEvent

END = "end"
"""The last event of a stream: the run succeeded, failed or was cancelled."""


@dataclass(frozen=True)
class RunEvent:
    """One event of a run's stream.

    Attributes
    ----------
    event : str
        ``status`` (the run's status changed), ``progress`` (one recorded epoch),
        ``skipped`` (epochs left out because the reader fell behind; the full record
        is in :meth:`Client.history`) or ``end`` (the last event).
    id : int or None
        The epoch of a ``progress`` event (the stream resumes after it); None otherwise.
    data : dict
        The event's JSON: ``epoch``, ``status``, and ``loss``/``val_loss``/``metrics``
        for ``progress``, ``stop_reason``/``error`` for ``status`` and ``end``.
    """

    event: str
    id: int | None
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def epoch(self) -> int | None:
        """The epoch the event is about (``until_epoch`` for ``skipped``)."""
        value = self.data.get("epoch", self.data.get("until_epoch"))
        return value if isinstance(value, int) else None

    @property
    def status(self) -> str | None:
        """The run's status, when the event carries it."""
        value = self.data.get("status")
        return value if isinstance(value, str) else None

    @property
    def loss(self) -> float | None:
        """The epoch's training loss (``progress`` events)."""
        value = self.data.get("loss")
        return float(value) if isinstance(value, int | float) else None


def parse_event(sse: ServerSentEvent) -> RunEvent:
    """A :class:`RunEvent` from one decoded Server-Sent Event."""
    try:
        data = json.loads(sse.data) if sse.data else {}
    except json.JSONDecodeError:
        data = {"text": sse.data}
    # The id of an SSE stream carries over to later events; only progress events have one.
    has_id = sse.event == "progress" and sse.id.isdigit()
    event_id = int(sse.id) if has_id else None
    return RunEvent(sse.event, event_id, data if isinstance(data, dict) else {"value": data})
