"""Issue 10, defect 5, on the database: an expired lease uses an attempt only when the
worker died while its supervisor lived; times are the database's clock."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, text

from app.api.schemas import DatasetCreate, NetworkCreate, RunCreate
from app.datasets.parsing import parse_json
from app.db.clock import db_now
from app.db.database import Database
from app.db.models import DEFAULT_OWNER, Run, Supervisor, utcnow
from app.jobs.lifecycle import Status
from app.jobs.supervisor import SupervisorHeartbeat
from app.services import datasets, execution, networks, runs, supervisors
from tests.conftest import XOR_NETWORK, XOR_X, XOR_Y

SUPERVISOR = "serve:host:1:abcd"


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    yield database
    database.dispose()


def _new_run(db: Database) -> str:
    with db.writing() as session:
        net = networks.create_network(
            session=session,
            owner=DEFAULT_OWNER,
            network_in=NetworkCreate(**XOR_NETWORK),
            max_parameters=1000,
        )
        body = DatasetCreate(name="xor", X=XOR_X, y=XOR_Y)
        ds = datasets.create_dataset(
            session=session, owner=DEFAULT_OWNER, name="xor", parsed=parse_json(body.X, body.y)
        )
        run = runs.create_run(
            session=session,
            owner=DEFAULT_OWNER,
            run_in=RunCreate(network_id=net.id, dataset_id=ds.id, epochs=10),
            limits=runs.RunLimits(max_run_work=1000, max_active_runs=10),
        )
        return run.id


def _claimed(db: Database, supervisor: str | None = SUPERVISOR, request: str | None = None) -> str:
    """A run claimed by worker ``w`` of ``supervisor``, its lease expired 1 s ago."""
    run_id = _new_run(db)
    with db.writing() as session:
        assert execution.claim_run(
            session=session, run_id=run_id, owner="w", lease_seconds=30, supervisor=supervisor
        )
    with db.writing() as session:
        run = session.get(Run, run_id)
        assert run is not None and run.lease_supervisor == supervisor
        run.lease_expires_at = utcnow() - timedelta(seconds=1)
        run.requested = request
        session.add(run)
        session.commit()
    return run_id


def _supervisor(db: Database, beat_at: datetime, expires_at: datetime) -> None:
    with db.writing() as session:
        row = session.get(Supervisor, SUPERVISOR) or Supervisor(
            id=SUPERVISOR, kind="serve", host="host", pid=1, started_at=beat_at
        )
        row.beat_at, row.expires_at = beat_at, expires_at
        session.add(row)
        session.commit()


def _sweep(db: Database, max_attempts: int = 3) -> list[execution.Swept]:
    with db.writing() as session:
        return execution.sweep_expired(session=session, max_attempts=max_attempts)


def _run(db: Database, run_id: str) -> Run:
    with db.reading() as session:
        run = session.get(Run, run_id)
        assert run is not None
        return run


def test_a_worker_dying_while_its_supervisor_lives_uses_an_attempt(db: Database) -> None:
    run_id = _claimed(db)
    now = utcnow()
    _supervisor(db, beat_at=now, expires_at=now + timedelta(seconds=10))  # beat after expiry
    assert _sweep(db, max_attempts=2) == [execution.Swept(run_id, Status.QUEUED, counted=True)]
    assert _run(db, run_id).attempts == 1
    with db.writing() as session:  # the second claim, lost the same way, is the last
        assert execution.claim_run(
            session=session, run_id=run_id, owner="w2", lease_seconds=-1, supervisor=SUPERVISOR
        )
    _supervisor(db, beat_at=utcnow() + timedelta(seconds=1), expires_at=now + timedelta(seconds=10))
    assert _sweep(db, max_attempts=2) == [execution.Swept(run_id, Status.FAILED, counted=True)]
    run = _run(db, run_id)
    assert run.attempts == 2 and run.error is not None and run.error["code"] == "worker_lost"
    assert run.lease_owner is None and run.lease_supervisor is None


def test_a_dead_service_does_not_use_the_attempt(db: Database) -> None:
    """The supervisor's last beat was before the lease expired and it has expired itself:
    the whole service died, the run goes back to the queue with its claim given back."""
    run_id = _claimed(db)
    now = utcnow()
    _supervisor(db, beat_at=now - timedelta(seconds=5), expires_at=now - timedelta(seconds=2))
    assert _sweep(db, max_attempts=1) == [execution.Swept(run_id, Status.QUEUED, counted=False)]
    run = _run(db, run_id)
    assert (run.status, run.attempts, run.lease_owner) == ("queued", 0, None)


def test_a_missing_supervisor_row_is_a_dead_one(db: Database) -> None:
    run_id = _claimed(db, supervisor="serve:gone:2:ffff")
    assert _sweep(db, max_attempts=1) == [execution.Swept(run_id, Status.QUEUED, counted=False)]


def test_a_lease_without_a_supervisor_counts_as_before(db: Database) -> None:
    run_id = _claimed(db, supervisor=None)
    assert _sweep(db, max_attempts=1) == [execution.Swept(run_id, Status.FAILED, counted=True)]


def test_undecided_until_the_supervisor_beats_or_expires(db: Database) -> None:
    """A supervisor that is still within its own expiry but has not beaten since the
    lease expired may be alive or dead: the sweep waits for either to show."""
    run_id = _claimed(db)
    now = utcnow()
    _supervisor(db, beat_at=now - timedelta(seconds=2), expires_at=now + timedelta(seconds=30))
    assert _sweep(db) == []
    assert _run(db, run_id).status == "running"
    _supervisor(db, beat_at=now - timedelta(seconds=2), expires_at=now - timedelta(seconds=1))
    assert _sweep(db) == [execution.Swept(run_id, Status.QUEUED, counted=False)]


@pytest.mark.parametrize(
    ("request_", "status"), [("pause", Status.PAUSED), ("cancel", Status.CANCELLED)]
)
def test_a_pending_request_decides_the_swept_run(
    db: Database, request_: str, status: Status
) -> None:
    run_id = _claimed(db, request=request_)
    now = utcnow()
    _supervisor(db, beat_at=now - timedelta(seconds=5), expires_at=now - timedelta(seconds=2))
    assert _sweep(db, max_attempts=1) == [execution.Swept(run_id, status, counted=False)]
    run = _run(db, run_id)
    assert run.requested is None and run.lease_owner is None
    assert (run.finished_at is not None) == (status == Status.CANCELLED)


def test_a_cancel_wins_over_used_up_attempts(db: Database) -> None:
    run_id = _claimed(db, request="cancel")
    now = utcnow()
    _supervisor(db, beat_at=now, expires_at=now + timedelta(seconds=10))
    assert _sweep(db, max_attempts=1) == [execution.Swept(run_id, Status.CANCELLED, counted=True)]
    assert _run(db, run_id).stop_reason == "cancelled"


def test_heartbeats_insert_then_refresh_and_old_rows_are_pruned(db: Database) -> None:
    for _ in range(2):
        with db.writing() as session:
            supervisors.beat(
                session=session, supervisor_id="s1", kind="serve", host="h", pid=3, ttl_seconds=4
            )
    with db.reading() as session:
        row = session.get(Supervisor, "s1")
        assert row is not None
        assert abs((row.expires_at - row.beat_at).total_seconds() - 4) < 0.01
        assert abs((row.beat_at - utcnow()).total_seconds()) < 5
    day = timedelta(days=1, seconds=1)
    _supervisor(db, beat_at=utcnow() - day, expires_at=utcnow() - day)
    with db.writing() as session:
        assert supervisors.prune(session=session) == 1
    with db.reading() as session:
        assert session.get(Supervisor, SUPERVISOR) is None and session.get(Supervisor, "s1")


def test_the_database_clock_is_utc_whatever_the_session_time_zone(db: Database) -> None:
    with db.writing() as session:
        if session.get_bind().dialect.name == "postgresql":
            session.execute(text("SET TIME ZONE 'Asia/Tokyo'"))
        now, later = session.execute(select(db_now(session), db_now(session, 30))).one()
    now, later = now.replace(tzinfo=None), later.replace(tzinfo=None)  # naive UTC, both
    assert abs((now - utcnow().replace(tzinfo=None)).total_seconds()) < 5
    assert (later - now).total_seconds() == pytest.approx(30, abs=0.01)


def _beat_at(db: Database, supervisor_id: str) -> datetime:
    with db.reading() as session:
        row = session.get(Supervisor, supervisor_id)
        assert row is not None
        return row.beat_at


def _expire_lease(db: Database, run_id: str) -> None:
    with db.writing() as session:
        run = session.get(Run, run_id)
        assert run is not None
        run.lease_expires_at = utcnow()
        session.add(run)
        session.commit()


def test_after_its_own_outage_a_supervisor_gives_its_workers_a_lease_to_renew(
    db: Database, database_url: str, tmp_path: Path
) -> None:
    """A database outage stops the workers' renewals and the supervisor's beats alike.
    The supervisor's first beats after it keep it alive without moving ``beat_at``, so a
    lease that expired during the outage is not yet blamed on its (living) worker; once
    the supervisor has reached the database for a whole lease, it is."""
    heartbeat = SupervisorHeartbeat(
        database_url=database_url, kind="serve", lease_seconds=1.0, poll_seconds=1.0
    )
    reachable = heartbeat.db
    try:
        assert heartbeat.beat()
        before = _beat_at(db, heartbeat.id)
        run_id = _claimed(db, supervisor=heartbeat.id)
        heartbeat.db = Database(f"sqlite:///{tmp_path / 'gone' / 'backprop.db'}")  # unreachable
        assert not heartbeat.beat()
        _expire_lease(db, run_id)  # during the outage, after the last beat
        heartbeat.db.dispose()
        heartbeat.db = reachable
        time.sleep(0.05)
        assert heartbeat.beat()  # back: alive, but its beat does not blame the worker yet
        assert _beat_at(db, heartbeat.id) == before
        assert _sweep(db) == []
        assert _run(db, run_id).status == "running"
        time.sleep(1.1)  # a whole lease of reaching the database without a renewal
        assert heartbeat.beat()
        assert _beat_at(db, heartbeat.id) > before
        assert _sweep(db) == [execution.Swept(run_id, Status.QUEUED, counted=True)]
    finally:
        reachable.dispose()
