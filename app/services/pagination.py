"""Cursor pagination over time-sortable ids (newest first)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy.orm import InstrumentedAttribute
from sqlmodel import Session, col
from sqlmodel.sql.expression import SelectOfScalar

T = TypeVar("T")

DEFAULT_LIMIT = 20
MAX_LIMIT = 100


@dataclass(frozen=True)
class PageResult(Generic[T]):
    """Rows of one page and the cursor of the next."""

    data: Sequence[T]
    has_more: bool
    next_after: str | None


def paginate(
    *,
    session: Session,
    statement: SelectOfScalar[T],
    id_column: InstrumentedAttribute[str] | Any,
    limit: int,
    after: str | None,
) -> PageResult[T]:
    """Return one page of ``statement`` ordered by id, newest first.

    Parameters
    ----------
    session : Session
        Open session.
    statement : select
        The filtered query, without ordering or limit.
    id_column : column
        The id column to order and page on.
    limit : int
        Page size (already validated, 1..100).
    after : str or None
        The ``next_after`` of the previous page.
    """
    column = col(id_column)
    if after is not None:
        statement = statement.where(column < after)
    rows = list(session.exec(statement.order_by(column.desc()).limit(limit + 1)))
    has_more = len(rows) > limit
    rows = rows[:limit]
    next_after = getattr(rows[-1], "id", None) if has_more and rows else None
    return PageResult(data=rows, has_more=has_more, next_after=next_after)
