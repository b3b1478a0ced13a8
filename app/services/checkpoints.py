"""Checkpoint reads shared by the API and the workers."""

from __future__ import annotations

from sqlmodel import Session, col, select

from app.db.models import Checkpoint


def latest_checkpoint(session: Session, run_id: str) -> Checkpoint | None:
    """The run's checkpoint of the highest epoch (the newest among equal epochs), or None."""
    return session.exec(
        select(Checkpoint)
        .where(Checkpoint.run_id == run_id)
        .order_by(col(Checkpoint.epoch).desc(), col(Checkpoint.id).desc())
        .limit(1)
    ).first()
