"""Names, tags and metadata of runs, networks and datasets: store, patch, filter lists.

A tagged object keeps its tags twice, written in one transaction: as a JSON list in
its own row (what responses show, no extra read per listed row) and as rows of its
``*_tag`` table, ``(object id, tag)`` with an index on ``(owner, tag, object id)``.
A ``?tag=`` filter is a semi-join on that index (``id IN (SELECT object_id FROM
run_tag WHERE owner = ? AND tag = ?)``, one per tag, all must match): the same SQL
and the same plan on SQLite and PostgreSQL. JSON containment would need a
different query per database (``json_each`` vs ``@>``) and scans rows on SQLite.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import delete
from sqlmodel import Session, SQLModel, col, select
from sqlmodel.sql.expression import SelectOfScalar

from app.api.schemas import LabelsPatch
from app.db.models import Dataset, DatasetTag, Network, NetworkTag, Run, RunTag, Sweep, SweepTag
from app.errors import InvalidInputError

Labelled = TypeVar("Labelled", Network, Dataset, Run, Sweep)

_TAG_TABLES: dict[type[SQLModel], tuple[type[SQLModel], str]] = {
    Network: (NetworkTag, "network_id"),
    Dataset: (DatasetTag, "dataset_id"),
    Run: (RunTag, "run_id"),
    Sweep: (SweepTag, "sweep_id"),
}


@dataclass(frozen=True)
class ListFilters:
    """The filters every list takes: all tags, a name prefix, a creation time range."""

    tags: tuple[str, ...] = ()
    name_prefix: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None


def _tag_table(model: type[SQLModel]) -> tuple[type[SQLModel], Any]:
    table, key = _TAG_TABLES[model]
    return table, getattr(table, key)


def add_tags(session: Session, row: Labelled, tags: list[str]) -> None:
    """Add the tag rows of a new ``row`` (no commit; the row is added first)."""
    table, key = _TAG_TABLES[type(row)]
    session.add_all(table(**{key: row.id, "tag": tag, "owner": row.owner}) for tag in tags)


def _replace_tags(session: Session, row: Labelled, tags: list[str]) -> None:
    table, key_column = _tag_table(type(row))
    session.exec(delete(table).where(key_column == row.id))
    session.flush()
    add_tags(session, row, tags)
    row.tags = list(tags)


def patch(*, session: Session, row: Labelled, patch_in: LabelsPatch) -> Labelled:
    """Apply the fields given in ``patch_in`` to ``row`` and commit.

    Raises
    ------
    InvalidInputError
        ``name: null`` for a network or dataset (they always have a name).
    """
    given = patch_in.model_fields_set
    # Row lock first (PostgreSQL; SQLite writers are serialized already): two PATCHes of
    # one object would otherwise both delete the old tag rows and insert the same new ones.
    session.refresh(row, with_for_update=True)
    if "name" in given:
        if patch_in.name is None and not isinstance(row, Run):
            raise InvalidInputError(("body", "name"), "a network or dataset needs a name")
        row.name = patch_in.name
    if "tags" in given:
        _replace_tags(session, row, patch_in.tags)
    if "metadata" in given:
        row.meta = dict(patch_in.metadata)
    session.add(row)
    session.commit()
    session.refresh(row)
    return row


def check_time_range(filters: ListFilters) -> None:
    """422 when ``created_after`` is not before ``created_before``."""
    after, before = filters.created_after, filters.created_before
    if after is not None and before is not None and after >= before:
        raise InvalidInputError(
            ("query", "created_before"), "must be later than created_after (an empty range)"
        )


def filtered(
    statement: SelectOfScalar[Any], model: type[Labelled], owner: str, filters: ListFilters
) -> SelectOfScalar[Any]:
    """``statement`` (of ``model`` rows of ``owner``) narrowed by ``filters``."""
    check_time_range(filters)
    table, key_column = _tag_table(model)
    for tag in filters.tags:
        tagged = select(key_column).where(
            col(table.owner) == owner,  # type: ignore[attr-defined]
            col(table.tag) == tag,  # type: ignore[attr-defined]
        )
        statement = statement.where(col(model.id).in_(tagged))
    if filters.name_prefix is not None:
        statement = statement.where(
            col(model.name).startswith(filters.name_prefix, autoescape=True)
        )
    if filters.created_after is not None:
        statement = statement.where(col(model.created_at) > filters.created_after)
    if filters.created_before is not None:
        statement = statement.where(col(model.created_at) < filters.created_before)
    return statement
