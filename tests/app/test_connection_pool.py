"""The API's database connections are reused under load, not opened and closed per burst.

With fewer pooled connections kept than requests admitted at once
(:data:`app.edge.limits.MAX_CONCURRENT_REQUESTS`), every request beyond the kept ones
ran on an overflow connection that was closed when it was handed back: 200
pollers opened and closed ~30 SQLite connections a second, and the churn
(connection setup, SQLite's per-connection memory) fragmented the heap: the
server's RSS crept up for minutes (``benchmarks/load.py``).
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from sqlalchemy import event

from app.edge.limits import MAX_CONCURRENT_REQUESTS
from tests.conftest import create_xor, run_body

POLLERS = 100
REQUESTS_PER_POLLER = 15
SPARE = 4
"""Connections allowed beyond the admitted requests (lifespan, the executor's reads)."""


def test_polling_reuses_pooled_connections(client: Any) -> None:
    network_id, dataset_id = create_xor(client)
    run = client.post("/v1/runs", json=run_body(network_id, dataset_id)).json()["id"]
    app = client.app
    opened: list[object] = []
    closed: list[object] = []
    event.listen(app.state.db.reader, "connect", lambda conn, _record: opened.append(conn))
    event.listen(app.state.db.reader, "close", lambda conn, _record: closed.append(conn))

    async def poll() -> list[int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:

            async def poller() -> list[int]:
                return [
                    (await http.get(f"/v1/runs/{run}")).status_code
                    for _ in range(REQUESTS_PER_POLLER)
                ]

            results = await asyncio.gather(*(poller() for _ in range(POLLERS)))
        return [code for codes in results for code in codes]

    # On the app's own event loop (the one its lifespan and middlewares run on).
    codes = client.portal.call(poll)
    assert codes == [200] * (POLLERS * REQUESTS_PER_POLLER)
    assert len(opened) <= MAX_CONCURRENT_REQUESTS + SPARE, (len(opened), len(closed))
    assert closed == []
