"""The ``idempotency_key`` table: claim a key, store its response, replay it.

One row per (tenant, key). :func:`begin` is the arbiter between concurrent
requests with one key: it inserts the row as ``in_flight`` in its own short
transaction, and the primary key lets exactly one insert win (SQLite serializes
writers with ``BEGIN IMMEDIATE``; on PostgreSQL the second insert waits for the
first to commit and then violates the key). The loser reads the winner's row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from app.db.models import IdempotencyKey, utcnow

IN_FLIGHT = "in_flight"
DONE = "done"


@dataclass(frozen=True)
class Began:
    """The key is this request's: run it, then :func:`complete` or :func:`release`."""


@dataclass(frozen=True)
class InFlight:
    """The first request with this key is still running."""


@dataclass(frozen=True)
class Mismatch:
    """The key was used for a different request."""


@dataclass(frozen=True)
class Replay:
    """The stored response of the first request with this key."""

    status_code: int
    headers: list[tuple[str, str]]
    body: bytes


Outcome = Began | InFlight | Mismatch | Replay


@dataclass(frozen=True)
class KeyTimes:
    """How long a key is remembered and how long a request holds it (seconds)."""

    ttl_seconds: float
    lock_seconds: float


def _fresh(owner: str, key: str, request_hash: str, times: KeyTimes) -> IdempotencyKey:
    now = utcnow()
    return IdempotencyKey(
        owner=owner,
        key=key,
        request_hash=request_hash,
        state=IN_FLIGHT,
        created_at=now,
        locked_until=now + timedelta(seconds=times.lock_seconds),
        expires_at=now + timedelta(seconds=times.ttl_seconds),
    )


def _decide(
    session: Session, row: IdempotencyKey, request_hash: str, times: KeyTimes
) -> Outcome | None:
    """What an existing row means for this request; None: it is dead, start afresh."""
    now = utcnow()
    if row.expires_at <= now:
        return None
    if row.request_hash != request_hash:
        return Mismatch()
    if row.state == DONE:
        headers = [(str(name), str(value)) for name, value in row.response_headers or []]
        return Replay(int(row.status_code or 200), headers, row.response_body or b"")
    if row.locked_until > now:
        return InFlight()
    return None  # the first request's server died with the key held


def begin(*, session: Session, owner: str, key: str, request_hash: str, times: KeyTimes) -> Outcome:
    """Claim ``key`` for this request, or say why not (a write transaction).

    Returns
    -------
    Outcome
        :class:`Began` (a new or taken-over key), :class:`InFlight`,
        :class:`Mismatch` or :class:`Replay`.
    """
    for _ in range(2):  # a lost insert race is decided by re-reading the winner's row
        row = session.get(IdempotencyKey, (owner, key), with_for_update=True)
        if row is not None:
            outcome = _decide(session, row, request_hash, times)
            if outcome is not None:
                session.rollback()
                return outcome
            session.delete(row)
            session.flush()
        session.add(_fresh(owner, key, request_hash, times))
        try:
            session.commit()
        except IntegrityError:
            session.rollback()
            continue
        return Began()
    return InFlight()


def complete(
    *,
    session: Session,
    owner: str,
    key: str,
    status_code: int,
    headers: list[tuple[str, str]],
    body: bytes,
) -> None:
    """Store the response of the request that holds ``key``."""
    row = session.get(IdempotencyKey, (owner, key), with_for_update=True)
    if row is None or row.state != IN_FLIGHT:
        session.rollback()
        return
    row.state = DONE
    row.status_code = status_code
    row.response_headers = [list(pair) for pair in headers]
    row.response_body = body
    session.add(row)
    session.commit()


def release(*, session: Session, owner: str, key: str) -> None:
    """Forget ``key`` (its request failed or its answer is not to be replayed)."""
    session.execute(
        delete(IdempotencyKey).where(
            col(IdempotencyKey.owner) == owner,
            col(IdempotencyKey.key) == key,
            col(IdempotencyKey.state) == IN_FLIGHT,
        )
    )
    session.commit()


def prune(*, session: Session) -> int:
    """Delete expired keys; return how many."""
    result: Any = session.execute(
        delete(IdempotencyKey).where(col(IdempotencyKey.expires_at) < utcnow())
    )
    session.commit()
    return int(result.rowcount or 0)
