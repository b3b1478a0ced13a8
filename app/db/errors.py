"""Which database errors mean "the database cannot serve us right now".

A restarted or unreachable PostgreSQL, a read-only database (a failover to a
standby, ``default_transaction_read_only``), a full disk, or a SQLite file
locked past the busy timeout are conditions of the *service*, not of the
request or the run: the API answers 503 with ``Retry-After`` and workers keep
their unwritten progress and retry. Every other database error (an integrity
violation, a bug) is not classified here and stays an error.
"""

from __future__ import annotations

from sqlalchemy import exc as sa_exc

RETRY_AFTER_SECONDS = 5
"""``Retry-After`` of a 503 caused by the database."""

# PostgreSQL SQLSTATEs (https://www.postgresql.org/docs/current/errcodes-appendix.html)
_READ_ONLY_STATES = {"25006"}  # read_only_sql_transaction
_FULL_STATES = {"53100"}  # disk_full
_UNREACHABLE_CLASSES = ("08", "57")  # connection exception, operator intervention
_BUSY_STATES = {"53300", "55P03", "57014", "40001", "40P01"}  # overload, lock, timeout, retry
_SCHEMA_MARKERS = ("no such table", "no such column", "syntax error")  # SQLite: bugs, not outages


def _sqlstate(error: BaseException) -> str:
    return str(getattr(getattr(error, "orig", None), "sqlstate", None) or "")


def unavailable_reason(error: BaseException) -> str | None:
    """Why the database cannot serve us, or None when ``error`` is not such a condition.

    Parameters
    ----------
    error : BaseException
        Anything raised while using the database.

    Returns
    -------
    str or None
        A short reason for users and logs (``"the database is read-only"``, ...).
    """
    if isinstance(error, sa_exc.TimeoutError):  # the connection pool is exhausted
        return "the database has no free connection"
    if not isinstance(error, sa_exc.DBAPIError):
        return None
    state = _sqlstate(error)
    text = str(getattr(error, "orig", error)).lower()
    if state in _READ_ONLY_STATES or "readonly database" in text or "read-only" in text:
        return "the database is read-only"
    if state in _FULL_STATES or "disk is full" in text or "no space left" in text:
        return "the database's disk is full"
    if state in _BUSY_STATES or "database is locked" in text:
        return "the database is busy"
    if "disk i/o error" in text:
        return "the database's storage failed (I/O error)"
    if error.connection_invalidated or state.startswith(_UNREACHABLE_CLASSES):
        return "the database is unreachable"
    if isinstance(error, sa_exc.InterfaceError | sa_exc.OperationalError) and not any(
        marker in text for marker in _SCHEMA_MARKERS
    ):
        return "the database is unreachable"
    return None


def is_unavailable(error: BaseException) -> bool:
    """True when ``error`` is a temporary condition of the database (see the module)."""
    return unavailable_reason(error) is not None
