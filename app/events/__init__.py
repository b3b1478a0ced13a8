"""Server-Sent Events for ``GET /v1/runs/{id}/events``, bounded per run and per subscriber.

- :mod:`app.events.feed`: one poller per watched run per API process, and a bounded
  buffer of encoded points that its subscribers share (each holds a cursor into it).
- :mod:`app.events.stream`: one subscriber's events: exact replay after its
  ``Last-Event-ID``, then the live feed, thinned when it falls behind.
- :mod:`app.events.frames`: the wire form (sse-starlette's ``ServerSentEvent``).
- :mod:`app.events.hub`: the feeds of the process, the per-tenant cap on open
  streams, and the response (sse-starlette's ``EventSourceResponse``).
"""

from app.events.hub import EventHub, StreamLimitError, StreamSettings

__all__ = ["EventHub", "StreamLimitError", "StreamSettings"]
