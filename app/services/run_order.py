"""Sort orders of ``GET /v1/runs`` and keyset pagination under each of them.

``sort`` is a key, descending with a leading ``-``: ``created_at`` (the default is
``-created_at``), ``loss``, ``val_loss``, ``best_loss``, ``best_epoch``, ``epoch``,
``name``, or ``metric:<name>`` for any recorded metric (``metric:accuracy``; the
prefix keeps metric names apart from the run's own fields). Runs without a value
(a queued run has no loss) come last in either direction; ties are broken by the
id, in the sort's direction.

The creation orders page on the id (ids begin with the creation millisecond),
with ``after`` = the last id as before. Every other order pages on the pair
(value, id) of the last row: ``next_after`` is an opaque token that also names
the order, so a token is refused with another ``sort``.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, or_
from sqlmodel import Session, col
from sqlmodel.sql.expression import SelectOfScalar

from app.db.models import Run
from app.errors import InvalidInputError
from app.services.pagination import PageResult, paginate

COLUMN_KEYS = ("loss", "val_loss", "best_loss", "best_epoch", "epoch", "name")
METRIC_PREFIX = "metric:"
METRIC_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
SORT_DESCRIPTION = (
    "created_at, loss, val_loss, best_loss, best_epoch, epoch, name or metric:<name> "
    "(a recorded metric, e.g. metric:accuracy); a leading - sorts descending. "
    "Runs without the value come last; ties are broken by id."
)


@dataclass(frozen=True)
class RunOrder:
    """A parsed ``sort``: its key and direction."""

    key: str
    descending: bool

    @property
    def text(self) -> str:
        """The ``sort`` value this order was parsed from."""
        return ("-" if self.descending else "") + self.key

    def value_of(self, run: Run) -> Any:
        """The sort value of ``run`` (None when it has none)."""
        if self.key.startswith(METRIC_PREFIX):
            value = (run.metrics or {}).get(self.key[len(METRIC_PREFIX) :])
            return value if isinstance(value, int | float) else None
        value = getattr(run, self.key)
        return None if isinstance(value, float) and not math.isfinite(value) else value

    def expression(self) -> ColumnElement[Any]:
        """The SQL value sorted on."""
        if self.key.startswith(METRIC_PREFIX):
            name = self.key[len(METRIC_PREFIX) :]
            metric: ColumnElement[Any] = col(Run.metrics)[name].as_float()
            return metric
        column: ColumnElement[Any] = Run.__table__.c[self.key]  # type: ignore[attr-defined]
        return column


def parse_sort(sort: str) -> RunOrder:
    """Parse ``sort``; 422 at ``query.sort`` naming the accepted keys."""
    descending = sort.startswith("-")
    key = sort[1:] if descending else sort
    valid = key == "created_at" or key in COLUMN_KEYS
    if key.startswith(METRIC_PREFIX):
        valid = METRIC_NAME.match(key[len(METRIC_PREFIX) :]) is not None
    if not valid:
        raise InvalidInputError(("query", "sort"), f"unknown sort {sort!r}; use {SORT_DESCRIPTION}")
    return RunOrder(key=key, descending=descending)


def _encode(order: RunOrder, value: Any, run_id: str) -> str:
    raw = json.dumps({"s": order.text, "v": value, "id": run_id}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode(order: RunOrder, token: str) -> tuple[Any, str]:
    bad = InvalidInputError(
        ("query", "after"), f"not a next_after of a list sorted by {order.text!r}"
    )
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        cursor = json.loads(raw)
    except (binascii.Error, ValueError):
        raise bad from None
    if not isinstance(cursor, dict) or cursor.get("s") != order.text:
        raise bad
    value, run_id = cursor.get("v"), cursor.get("id")
    expected: tuple[type, ...] = (str,) if order.key == "name" else (int, float)
    if not isinstance(run_id, str) or not (value is None or isinstance(value, expected)):
        raise bad
    if isinstance(value, bool):
        raise bad
    return value, run_id


def _after(order: RunOrder, value: Any, run_id: str) -> ColumnElement[bool]:
    """Rows after (value, id) in ``order`` with nulls last."""
    expression, ids = order.expression(), col(Run.id)
    if value is None:  # among the nulls, which come last
        return and_(expression.is_(None), ids < run_id if order.descending else ids > run_id)
    beyond = expression < value if order.descending else expression > value
    tie = and_(expression == value, ids < run_id if order.descending else ids > run_id)
    return or_(beyond, tie, expression.is_(None))


def page_runs(
    *,
    session: Session,
    statement: SelectOfScalar[Run],
    order: RunOrder,
    limit: int,
    after: str | None,
) -> PageResult[Run]:
    """One page of ``statement`` (filtered runs) in ``order``."""
    if order.key == "created_at":
        if not order.descending:
            ids = col(Run.id)
            if after is not None:
                statement = statement.where(ids > after)
            rows = list(session.exec(statement.order_by(ids.asc()).limit(limit + 1)))
            return _page(rows, limit, lambda run: run.id)
        return paginate(
            session=session, statement=statement, id_column=Run.id, limit=limit, after=after
        )
    if after is not None:
        statement = statement.where(_after(order, *_decode(order, after)))
    expression = order.expression()
    direction = expression.desc() if order.descending else expression.asc()
    tie = col(Run.id).desc() if order.descending else col(Run.id).asc()
    rows = list(session.exec(statement.order_by(direction.nulls_last(), tie).limit(limit + 1)))
    return _page(rows, limit, lambda run: _encode(order, order.value_of(run), run.id))


def _page(rows: list[Run], limit: int, cursor: Any) -> PageResult[Run]:
    has_more = len(rows) > limit
    rows = rows[:limit]
    return PageResult(
        data=rows, has_more=has_more, next_after=cursor(rows[-1]) if has_more and rows else None
    )
