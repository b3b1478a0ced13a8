"""The database's clock, for the times that processes on different machines compare.

A lease's expiry is written by a worker and compared by a sweeper on another
machine; a supervisor's heartbeat is compared with a lease's expiry. With each
process using its own clock, a skew of a few seconds between machines would
expire live leases early or count a dead service's runs as their own fault. So
these times are the database server's: PostgreSQL's ``now()`` (the start of the
transaction, in UTC). SQLite has no server: every process using the file runs
on the same machine and shares its clock, so the time is that machine's.
Values are naive UTC, as :class:`app.db.models.UTCDateTime` stores them.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import DateTime, func, literal
from sqlmodel import Session

from app.db.models import UTCDateTime, utcnow


def db_now(session: Session, plus_seconds: float = 0.0) -> Any:
    """A SQL expression for the database's current time, plus ``plus_seconds``.

    Parameters
    ----------
    session : Session
        The session whose database's clock to use.
    plus_seconds : float
        Seconds to add (a lease or heartbeat expiry).
    """
    offset = timedelta(seconds=plus_seconds)
    if session.get_bind().dialect.name == "postgresql":
        now = func.timezone("UTC", func.now(), type_=DateTime())
        return now + offset if plus_seconds else now
    return literal(utcnow() + offset, UTCDateTime())
