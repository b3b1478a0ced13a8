"""Supervisor rows: who supervises workers, and their heartbeats (the database's clock)."""

from __future__ import annotations

from sqlalchemy import update
from sqlmodel import Session, col, delete

from app.db.clock import db_now
from app.db.models import Supervisor, utcnow

PRUNE_AFTER_SECONDS = 24 * 3600.0
"""Rows of supervisors silent this long are deleted (a dead one's leases were long swept)."""


def beat(
    *,
    session: Session,
    supervisor_id: str,
    kind: str,
    host: str,
    pid: int,
    ttl_seconds: float,
    steady: bool = True,
) -> None:
    """Record that the supervisor lives (inserting its row the first time).

    ``expires_at`` = now + ``ttl_seconds``: until then it counts as alive even
    without a new beat. ``beat_at`` moves only on a ``steady`` beat: one of a
    supervisor that has reached the database for a whole lease, so that its
    workers had a lease's time to renew theirs (after an outage of the database,
    a worker's lease may have expired while nobody could write).
    """
    values = {"expires_at": db_now(session, ttl_seconds)}
    if steady:
        values["beat_at"] = db_now(session)
    found = session.execute(
        update(Supervisor)
        .where(col(Supervisor.id) == supervisor_id)
        .values(**values)
        .returning(col(Supervisor.id))
    ).first()
    if found is None:
        now = utcnow()
        session.add(
            Supervisor(
                id=supervisor_id,
                kind=kind,
                host=host[:255],
                pid=pid,
                started_at=now,
                beat_at=now,
                expires_at=now,
            )
        )
        session.flush()
        session.execute(
            update(Supervisor).where(col(Supervisor.id) == supervisor_id).values(**values)
        )
    session.commit()


def prune(*, session: Session) -> int:
    """Delete the rows of supervisors silent for :data:`PRUNE_AFTER_SECONDS`."""
    result = session.execute(
        delete(Supervisor)
        .where(col(Supervisor.expires_at) < db_now(session, -PRUNE_AFTER_SECONDS))
        .returning(col(Supervisor.id))
    )
    count = len(result.all())
    session.commit()
    return count


def retire(*, session: Session, supervisor_id: str) -> None:
    """Delete the row of a supervisor that stops (its workers handed their runs back)."""
    session.execute(delete(Supervisor).where(col(Supervisor.id) == supervisor_id))
    session.commit()
