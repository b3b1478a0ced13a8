"""Every terminal transition enqueues exactly one webhook, in its own transaction."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlmodel import select

from app.api.schemas import DatasetCreate, NetworkCreate, RunCreate
from app.datasets.parsing import parse_json
from app.db.database import Database
from app.db.models import DEFAULT_OWNER, Run, RunNotification, utcnow
from app.jobs.lifecycle import Action, Status
from app.services import datasets, execution, networks, runs
from tests.conftest import XOR_NETWORK, XOR_X, XOR_Y

URL = "http://127.0.0.1:9/hook"


@pytest.fixture
def db(database_url: str) -> Any:
    database = Database(database_url)
    yield database
    database.dispose()


def _create(db: Database, notify_url: str | None = URL) -> str:
    with db.writing() as session:
        net = networks.create_network(
            session=session,
            owner=DEFAULT_OWNER,
            network_in=NetworkCreate(**XOR_NETWORK),
            max_parameters=1000,
        )
        parsed = parse_json(DatasetCreate(name="xor", X=XOR_X, y=XOR_Y).X, XOR_Y)
        ds = datasets.create_dataset(
            session=session, owner=DEFAULT_OWNER, name="xor", parsed=parsed
        )
        run = runs.create_run(
            session=session,
            owner=DEFAULT_OWNER,
            run_in=RunCreate(network_id=net.id, dataset_id=ds.id, epochs=10, notify_url=notify_url),
            limits=runs.RunLimits(
                max_run_work=1000, max_active_runs=10, webhook_allow_private=True
            ),
        )
        return run.id


def _claim(db: Database, run_id: str, owner: str = "worker-a") -> None:
    with db.writing() as session:
        assert execution.claim_run(
            session=session, run_id=run_id, owner=owner, lease_seconds=30, supervisor=None
        )


def _notifications(db: Database, run_id: str) -> list[RunNotification]:
    with db.reading() as session:
        statement = select(RunNotification).where(RunNotification.run_id == run_id)
        return list(session.exec(statement).all())


def _batch(epoch: int) -> execution.Batch:
    return execution.Batch(
        progress=execution.Progress(epoch=epoch, loss=0.1, val_loss=None, best_loss=0.1)
    )


def test_finish_enqueues_with_the_runs_tenant(db: Database) -> None:
    run_id = _create(db)
    _claim(db, run_id)
    assert _notifications(db, run_id) == []
    with db.writing() as session:
        status = execution.finish(
            session=session,
            run_id=run_id,
            owner="worker-a",
            action=Action.SUCCEED,
            batch=_batch(10),
            keep_auto=3,
            stop_reason="completed",
        )
    assert status == Status.SUCCEEDED
    (notification,) = _notifications(db, run_id)
    assert notification.event == "run.succeeded" and notification.url == URL
    assert notification.owner == DEFAULT_OWNER  # not the lease holder
    assert notification.status == "pending" and notification.attempts == 0


def test_a_fenced_finish_enqueues_nothing(db: Database) -> None:
    run_id = _create(db)
    _claim(db, run_id)
    with db.writing() as session:
        status = execution.finish(
            session=session,
            run_id=run_id,
            owner="someone-else",
            action=Action.SUCCEED,
            batch=_batch(10),
            keep_auto=3,
        )
    assert status is None
    assert _notifications(db, run_id) == []


def test_stop_hand_back_enqueues_nothing_then_cancel_does(db: Database) -> None:
    run_id = _create(db)
    _claim(db, run_id)
    with db.writing() as session:
        status = execution.finish(
            session=session,
            run_id=run_id,
            owner="worker-a",
            action=Action.STOP,
            batch=_batch(3),
            keep_auto=3,
        )
    assert status == Status.QUEUED
    assert _notifications(db, run_id) == []
    with db.writing() as session:
        runs.cancel_run(session=session, owner=DEFAULT_OWNER, run_id=run_id)
    assert [n.event for n in _notifications(db, run_id)] == ["run.cancelled"]


def test_fail_enqueues(db: Database) -> None:
    run_id = _create(db)
    _claim(db, run_id)
    with db.writing() as session:
        assert execution.fail(
            session=session, run_id=run_id, owner="worker-a", code="error", message="boom"
        )
    assert [n.event for n in _notifications(db, run_id)] == ["run.failed"]


def test_sweep_enqueues_only_terminal_outcomes(db: Database) -> None:
    run_id = _create(db)
    for attempt in range(2):
        _claim(db, run_id, f"worker-{attempt}")
        with db.writing() as session:
            run = session.get(Run, run_id)
            assert run is not None
            run.lease_expires_at = utcnow() - timedelta(seconds=1)
            session.add(run)
            session.commit()
        with db.writing() as session:
            (swept,) = execution.sweep_expired(session=session, max_attempts=2)
        expected = [] if attempt == 0 else ["run.failed"]
        assert swept.status == (Status.QUEUED if attempt == 0 else Status.FAILED)
        assert [n.event for n in _notifications(db, run_id)] == expected


def test_runs_without_notify_url_enqueue_nothing(db: Database) -> None:
    run_id = _create(db, notify_url=None)
    with db.writing() as session:
        runs.cancel_run(session=session, owner=DEFAULT_OWNER, run_id=run_id)
    assert _notifications(db, run_id) == []
