"""The delete rule shared by networks and datasets: 409 with the count of runs that
use it, unless ``?cascade=true``; never while one of those runs is unfinished."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import case
from sqlmodel import Session, col, func, select

from app.db.models import Run
from app.errors import ConflictError
from app.jobs.lifecycle import UNFINISHED


@dataclass(frozen=True)
class RunsUsing:
    """The runs that use a network or dataset: how many, how many unfinished, and one
    of those (the oldest) to name."""

    total: int
    unfinished: int
    example: str | None


def count_runs(session: Session, *conditions: Any) -> RunsUsing:
    """The runs matching ``conditions``."""
    is_unfinished = col(Run.status).in_(UNFINISHED)
    unfinished = func.sum(case((is_unfinished, 1), else_=0))
    row = session.exec(select(func.count(), unfinished).select_from(Run).where(*conditions)).one()
    example = None
    if row[1]:
        example = session.exec(select(func.min(Run.id)).where(*conditions, is_unfinished)).one()
    return RunsUsing(total=int(row[0]), unfinished=int(row[1] or 0), example=example)


def refuse_unless_cascade(what: str, using: RunsUsing, cascade: bool) -> None:
    """The shared delete rule of networks and datasets (the transaction is the caller's).

    Raises
    ------
    ConflictError
        Runs use it and ``cascade`` is false; or ``cascade`` and some of them are
        queued, running or paused.
    """
    runs, unfinished = using.total, using.unfinished
    if runs and not cascade:
        raise ConflictError(
            f"{what} is used by {runs} run{'s' if runs != 1 else ''}; delete them first, "
            "or pass ?cascade=true to delete them with it"
        )
    if unfinished:
        raise ConflictError(
            f"{what} is used by {unfinished} queued, running or paused "
            f"run{'s' if unfinished != 1 else ''} (such as {using.example!r}); cancel them "
            "first (or DELETE /v1/runs/{id}?force=true)"
        )
