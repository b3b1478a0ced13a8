"""Build FastAPI's route tables before the first request instead of during it.

FastAPI (0.165) builds each included router's effective routes (dependency trees,
pydantic fields of every parameter and response) lazily, the first time a request is
matched against that router, on the event loop's thread. In ``backprop serve`` that
first request waited 65-190 ms, and so did every request that arrived meanwhile:
``/healthz`` among them. :func:`build_route_tables` sends one request that no route
matches straight to the router (not through the middleware: nothing is logged or
counted), which walks and builds every table; the objects built then belong to the
startup heap ``gc.freeze`` keeps out of full collections.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI
    from starlette.types import Message

logger = logging.getLogger(__name__)

UNROUTED_PATH = "/\x00route-tables"
"""A path no route has (a NUL byte cannot come from a real request line)."""


def _unrouted_scope() -> dict[str, object]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": UNROUTED_PATH,
        "raw_path": UNROUTED_PATH.encode("latin-1"),
        "root_path": "",
        "query_string": b"",
        "headers": [],
        "client": None,
        "server": None,
    }


async def _send_unrouted(app: FastAPI) -> int:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app.router(_unrouted_scope(), receive, send)
    return int(sent[0]["status"]) if sent else 0


def build_route_tables(app: FastAPI) -> int:
    """Match one request that no route has against ``app``'s router, which builds every
    included router's route table; returns the status it answered (404).

    Call it outside any running event loop (it runs its own), before serving."""
    status = asyncio.run(_send_unrouted(app))
    if status != 404:
        logger.warning("building the route tables: the unrouted request answered %s", status)
    return status
