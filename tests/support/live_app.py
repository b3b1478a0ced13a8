"""Serve an in-process app with uvicorn on a thread (real HTTP, streaming responses).

Starlette's TestClient buffers a response until the app finishes it, which hides
what a streaming client sees; this serves the same app over a socket instead, and
the test keeps access to ``app.state`` (the database engine, the event hub).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from tests.support.server import free_port


@dataclass
class LiveApp:
    """A running app: its URL and the app object."""

    app: FastAPI
    url: str


@contextmanager
def serve_app(app: FastAPI) -> Iterator[LiveApp]:
    """Run ``app`` (with its lifespan) on 127.0.0.1 until the block ends."""
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield LiveApp(app=app, url=f"http://127.0.0.1:{port}")
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@dataclass
class Event:
    """One parsed Server-Sent Event."""

    event: str = "message"
    id: str | None = None
    data: Any = None
    comments: list[str] = field(default_factory=list)


def iter_events(response: httpx.Response) -> Iterator[Event]:
    """Parse a ``text/event-stream`` response (keep-alive comments are skipped)."""
    current = Event()
    seen = False
    for line in response.iter_lines():
        if line == "":
            if seen:
                yield current
            current, seen = Event(), False
        elif line.startswith(":"):
            continue
        else:
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            seen = True
            if name == "event":
                current.event = value
            elif name == "id":
                current.id = value
            elif name == "data":
                current.data = json.loads(value)
            elif name == "retry":
                seen = False
