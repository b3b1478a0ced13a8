"""Read a run's whole history through the paginated API."""

from __future__ import annotations

from typing import Any

import httpx


def full_history(client: httpx.Client, run_id: str) -> dict[str, list[Any]]:
    """Every recorded epoch, following ``X-Has-More`` pages with ``after_epoch``."""
    columns: dict[str, list[Any]] = {}
    params: dict[str, int] = {}
    while True:
        response = client.get(f"/v1/runs/{run_id}/history", params=params)
        response.raise_for_status()
        page = response.json()
        for name, values in page.items():
            columns.setdefault(name, []).extend(values)
        if response.headers.get("X-Has-More") != "true" or not page["epoch"]:
            return columns
        params = {"after_epoch": page["epoch"][-1]}
