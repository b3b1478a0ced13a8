"""Webhook notifications of runs and sweeps: enqueued with the terminal transition,
delivered later.

:func:`enqueue` is called inside every transaction that makes a run terminal
(the API's cancel, the worker's finish or failure, the sweep of expired
leases), so a notification exists exactly when its run's terminal status is
committed, and survives any crash after it. :mod:`app.jobs.notifier` delivers
them; this module holds their database work and the tenants' signing secrets.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from app.db.ids import new_id
from app.db.models import RunNotification, Sweep, WebhookSecret, utcnow
from app.jobs.lifecycle import TERMINAL, Status

PENDING = "pending"
DELIVERED = "delivered"
FAILED = "failed"
SECRET_PREFIX = "whsec_"
MAX_LOGGED_ATTEMPTS = 50
"""Attempts kept in ``attempt_log`` (the newest; ``attempts`` counts them all)."""


@dataclass(frozen=True)
class Ended:
    """A run that has just been made terminal, as its transition's UPDATE returned it."""

    run_id: str
    owner: str
    status: Status | str
    config: Mapping[str, Any] | None


def notify_url(config: Mapping[str, Any] | None) -> str | None:
    """The run's ``notify_url`` (kept in its config), or None."""
    url = (config or {}).get("notify_url")
    return str(url) if url else None


def enqueue(session: Session, ended: Iterable[Ended]) -> int:
    """Add a pending notification for each terminal run with a ``notify_url``
    (in the caller's transaction, not committed here); return how many."""
    now = utcnow()
    added = 0
    for run in ended:
        url = notify_url(run.config)
        if url is None or Status(run.status) not in TERMINAL:
            continue
        session.add(
            RunNotification(
                id=new_id("notification"),
                run_id=run.run_id,
                owner=run.owner,
                event=f"run.{Status(run.status).value}",
                url=url,
                status=PENDING,
                created_at=now,
                next_attempt_at=now,
            )
        )
        added += 1
    return added


def enqueue_sweep(session: Session, sweep: Sweep) -> bool:
    """Add the pending webhook of a sweep made terminal, if it has a ``notify_url`` (in the
    caller's transaction, not committed here); True if one was added."""
    url = sweep.spec.get("notify_url")
    if not url:
        return False
    now = utcnow()
    session.add(
        RunNotification(
            id=new_id("notification"),
            sweep_id=sweep.id,
            owner=sweep.owner,
            event=f"sweep.{sweep.status}",
            url=str(url),
            status=PENDING,
            created_at=now,
            next_attempt_at=now,
        )
    )
    return True


def list_for_run(*, session: Session, run_id: str) -> list[RunNotification]:
    """A run's notifications, oldest first (the caller checked the run's owner)."""
    return _oldest_first(session, col(RunNotification.run_id) == run_id)


def list_for_sweep(*, session: Session, sweep_id: str) -> list[RunNotification]:
    """A sweep's own notifications, oldest first (the caller checked the sweep's owner)."""
    return _oldest_first(session, col(RunNotification.sweep_id) == sweep_id)


def _oldest_first(session: Session, where: Any) -> list[RunNotification]:
    statement = select(RunNotification).where(where).order_by(col(RunNotification.id))
    return list(session.exec(statement).all())


def due_ids(*, session: Session, limit: int) -> list[tuple[str, datetime]]:
    """Pending notifications whose next attempt is due: ``(id, next_attempt_at)``."""
    statement = (
        select(RunNotification.id, RunNotification.next_attempt_at)
        .where(
            col(RunNotification.status) == PENDING, col(RunNotification.next_attempt_at) <= utcnow()
        )
        .order_by(col(RunNotification.next_attempt_at))
        .limit(limit)
    )
    return [(str(row[0]), row[1]) for row in session.exec(statement).all()]


def claim(*, session: Session, notification_id: str, seen: datetime, hold_seconds: float) -> bool:
    """Take a due notification for one attempt: push its next attempt ``hold_seconds``
    away, conditional on it being unchanged since it was seen (one API server wins)."""
    result: Any = session.execute(
        update(RunNotification)
        .where(
            col(RunNotification.id) == notification_id,
            col(RunNotification.status) == PENDING,
            col(RunNotification.next_attempt_at) == seen,
        )
        .values(next_attempt_at=utcnow() + timedelta(seconds=hold_seconds))
    )
    session.commit()
    return bool(result.rowcount == 1)


def record_attempt(
    *,
    session: Session,
    notification_id: str,
    attempt: dict[str, Any],
    status: str,
    next_attempt_at: datetime | None,
) -> None:
    """Log one attempt and set the outcome (``pending`` with its next attempt, or final)."""
    row = session.get(RunNotification, notification_id, with_for_update=True)
    if row is None:  # its run was deleted meanwhile
        session.rollback()
        return
    row.attempts += 1
    row.attempt_log = [*row.attempt_log, attempt][-MAX_LOGGED_ATTEMPTS:]
    row.status = status
    if status == DELIVERED:
        row.delivered_at = utcnow()
    if next_attempt_at is not None:
        row.next_attempt_at = next_attempt_at
    session.add(row)
    session.commit()


def freeze_body(*, session: Session, notification_id: str, body: bytes) -> bytes:
    """Store the body to send (once: every retry sends the same bytes); return the stored one."""
    row = session.get(RunNotification, notification_id, with_for_update=True)
    if row is None:
        session.rollback()
        return body
    if row.body is None:
        row.body = body
        session.add(row)
        session.commit()
        return body
    session.rollback()
    return row.body


def _new_secret() -> str:
    return SECRET_PREFIX + secrets.token_hex(32)


def get_secret(*, session: Session, owner: str) -> WebhookSecret:
    """``owner``'s signing secret, made on first use (a write session)."""
    row = session.get(WebhookSecret, owner)
    if row is not None:
        return row
    row = WebhookSecret(owner=owner, secret=_new_secret(), created_at=utcnow())
    session.add(row)
    try:
        session.commit()
    except IntegrityError:  # made concurrently: use that one
        session.rollback()
        made = session.get(WebhookSecret, owner)
        assert made is not None
        return made
    return row


def rotate_secret(*, session: Session, owner: str) -> WebhookSecret:
    """Replace ``owner``'s signing secret; notifications sent from now on use the new one."""
    row = session.get(WebhookSecret, owner, with_for_update=True)
    if row is None:
        row = WebhookSecret(owner=owner, secret=_new_secret(), created_at=utcnow())
    else:
        row.secret = _new_secret()
        row.created_at = utcnow()
    session.add(row)
    session.commit()
    return row
