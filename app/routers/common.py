"""Query parameters shared by list endpoints."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

from app.services.pagination import DEFAULT_LIMIT, MAX_LIMIT

DB_INT_MAX = 2**31 - 1
"""Largest value of an ``INTEGER`` column on PostgreSQL (int4; SQLite's hold 64 bits):
the upper bound of query parameters compared with such a column (epochs)."""

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"Page size, at most {MAX_LIMIT}.")]
After = Annotated[
    str | None, Query(description="The next_after of the previous page.", max_length=64)
]
DEFAULT = DEFAULT_LIMIT
