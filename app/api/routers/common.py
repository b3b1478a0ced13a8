"""Query parameters shared by list endpoints."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, Query
from pydantic import BeforeValidator

from app.api.schemas import MAX_TAG_LENGTH, MAX_TAGS
from app.errors import InvalidInputError
from app.services.labels import ListFilters
from app.services.pagination import DEFAULT_LIMIT, MAX_LIMIT

DB_INT_MAX = 2**31 - 1
"""Largest value of an ``INTEGER`` column on PostgreSQL (int4; SQLite's hold 64 bits):
the upper bound of query parameters compared with such a column (epochs)."""

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"Page size, at most {MAX_LIMIT}.")]
After = Annotated[
    str | None, Query(description="The next_after of the previous page.", max_length=64)
]
DEFAULT = DEFAULT_LIMIT

_NUMBER = re.compile(r"\s*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\s*")


def _iso_only(value: Any) -> Any:
    """Refuse a number where a date-time is due: pydantic would read ``21385279`` as
    Unix seconds, which the documented ISO 8601 parameter is not."""
    if isinstance(value, str) and _NUMBER.fullmatch(value):
        raise ValueError("must be an ISO 8601 date-time such as 2026-12-01T00:00:00Z")
    return value


DateTime = Annotated[datetime, BeforeValidator(_iso_only)]


def list_filters(
    tag: Annotated[
        list[str] | None,
        Query(
            max_length=MAX_TAGS,
            description="Only objects with this tag; repeat it for several (all must match).",
        ),
    ] = None,
    name_prefix: Annotated[
        str | None, Query(min_length=1, max_length=200, description="Names starting so.")
    ] = None,
    created_after: Annotated[
        DateTime | None, Query(description="Created strictly later (ISO 8601; naive = UTC).")
    ] = None,
    created_before: Annotated[
        DateTime | None, Query(description="Created strictly earlier (ISO 8601; naive = UTC).")
    ] = None,
) -> ListFilters:
    """The filters of every list (runs, networks, datasets)."""
    for index, value in enumerate(tag or []):
        if not value or len(value) > MAX_TAG_LENGTH:
            raise InvalidInputError(
                ("query", "tag", index), f"a tag has 1 to {MAX_TAG_LENGTH} characters"
            )
    return ListFilters(
        tags=tuple(dict.fromkeys(tag or [])),
        name_prefix=name_prefix,
        created_after=created_after,
        created_before=created_before,
    )


Filters = Annotated[ListFilters, Depends(list_filters)]
Cascade = Annotated[
    bool,
    Query(description="Also delete the runs that use it (their history and checkpoints)."),
]
