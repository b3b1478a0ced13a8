"""The delete rule shared by networks and datasets: 409 with the count of runs that
use it, unless ``?cascade=true``; never while one of those runs is unfinished."""

from __future__ import annotations

from typing import Any

from sqlalchemy import case
from sqlmodel import Session, col, func, select

from app.errors import ConflictError
from app.lifecycle import UNFINISHED
from app.models import Run


def count_runs(session: Session, *conditions: Any) -> tuple[int, int]:
    """``(runs, unfinished runs)`` matching ``conditions``."""
    unfinished = func.sum(case((col(Run.status).in_(UNFINISHED), 1), else_=0))
    row = session.exec(select(func.count(), unfinished).select_from(Run).where(*conditions)).one()
    return int(row[0]), int(row[1] or 0)


def refuse_unless_cascade(what: str, runs: int, unfinished: int, cascade: bool) -> None:
    """The shared delete rule of networks and datasets (the transaction is the caller's).

    Raises
    ------
    ConflictError
        Runs use it and ``cascade`` is false; or ``cascade`` and some of them are
        queued, running or paused.
    """
    if runs and not cascade:
        raise ConflictError(
            f"{what} is used by {runs} run{'s' if runs != 1 else ''}; delete them first, "
            "or pass ?cascade=true to delete them with it"
        )
    if unfinished:
        raise ConflictError(
            f"{what} is used by {unfinished} queued, running or paused "
            f"run{'s' if unfinished != 1 else ''}; cancel them first "
            "(or DELETE /v1/runs/{id}?force=true)"
        )
