"""Lease semantics and history chunks, on a real database (no HTTP)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from app.api.schemas import DatasetCreate, NetworkCreate, RunCreate
from app.datasets.parsing import parse_json
from app.db.database import Database
from app.db.models import DEFAULT_OWNER, Checkpoint, Run, RunArrays, utcnow
from app.jobs.lifecycle import Action, Status
from app.services import datasets, execution, history, networks, runs
from tests.conftest import XOR_NETWORK, XOR_X, XOR_Y


@pytest.fixture
def db(database_url: str) -> Any:
    database = Database(database_url)
    yield database
    database.dispose()


@pytest.fixture
def run_id(db: Database) -> str:
    with db.writing() as session:
        net = networks.create_network(
            session=session,
            owner=DEFAULT_OWNER,
            network_in=NetworkCreate(**XOR_NETWORK),
            max_parameters=1000,
        )
        body = DatasetCreate(name="xor", X=XOR_X, y=XOR_Y)
        parsed = parse_json(body.X, body.y)
        ds = datasets.create_dataset(
            session=session, owner=DEFAULT_OWNER, name="xor", parsed=parsed
        )
        run = runs.create_run(
            session=session,
            owner=DEFAULT_OWNER,
            run_in=RunCreate(network_id=net.id, dataset_id=ds.id, epochs=10),
            limits=runs.RunLimits(max_run_work=1000, max_active_runs=10),
        )
        return run.id


def _claim(db: Database, run_id: str, owner: str, supervisor: str | None = None) -> bool:
    with db.writing() as session:
        return execution.claim_run(
            session=session, run_id=run_id, owner=owner, lease_seconds=30, supervisor=supervisor
        )


def _expire(db: Database, run_id: str) -> None:
    with db.writing() as session:
        run = session.get(Run, run_id)
        assert run is not None
        run.lease_expires_at = utcnow() - timedelta(seconds=1)
        session.add(run)
        session.commit()


def _status(db: Database, run_id: str) -> Run:
    with db.reading() as session:
        run = session.get(Run, run_id)
        assert run is not None
        return run


def test_claim_is_exclusive_while_the_lease_lives(db: Database, run_id: str) -> None:
    assert _claim(db, run_id, "a")
    assert not _claim(db, run_id, "b")
    run = _status(db, run_id)
    assert (run.status, run.lease_owner, run.attempts) == ("running", "a", 1)
    with db.writing() as session:
        assert execution.renew_lease(
            session=session, run_id=run_id, owner="b", lease_seconds=5
        ) == (
            False,
            None,
        )
        assert execution.renew_lease(
            session=session, run_id=run_id, owner="a", lease_seconds=5
        ) == (
            True,
            None,
        )


def test_expired_lease_can_be_taken_over_and_old_owner_is_fenced(db: Database, run_id: str) -> None:
    assert _claim(db, run_id, "a")
    _expire(db, run_id)
    assert not _claim(db, run_id, "b"), "the sweep decides what an expiry means first"
    with db.writing() as session:
        assert execution.sweep_expired(session=session, max_attempts=3) == [
            execution.Swept(run_id, Status.QUEUED, counted=True)
        ]
    assert _claim(db, run_id, "b")
    progress = execution.Progress(epoch=5, loss=0.1, val_loss=None, best_loss=0.1)
    with db.writing() as session:
        owned, _ = execution.flush(
            session=session,
            run_id=run_id,
            owner="a",
            lease_seconds=5,
            batch=execution.Batch(progress=progress),
            keep_auto=3,
        )
    assert not owned
    assert _status(db, run_id).epoch == 0


def test_sweep_requeues_then_fails_after_max_attempts(db: Database, run_id: str) -> None:
    assert _claim(db, run_id, "a")
    _expire(db, run_id)
    with db.writing() as session:
        assert execution.sweep_expired(session=session, max_attempts=2) == [
            execution.Swept(run_id, Status.QUEUED, counted=True)
        ]
    assert _status(db, run_id).status == "queued"
    assert _claim(db, run_id, "b")
    _expire(db, run_id)
    with db.writing() as session:
        assert execution.sweep_expired(session=session, max_attempts=2) == [
            execution.Swept(run_id, Status.FAILED, counted=True)
        ]
    run = _status(db, run_id)
    assert run.status == "failed" and run.error is not None
    assert run.error["code"] == "worker_lost"


def test_sweep_cancels_a_dead_run_that_was_asked_to_cancel(db: Database, run_id: str) -> None:
    assert _claim(db, run_id, "a")
    with db.writing() as session:
        assert runs.cancel_run(session=session, owner=DEFAULT_OWNER, run_id=run_id).cancel_requested
    _expire(db, run_id)
    with db.writing() as session:
        execution.sweep_expired(session=session, max_attempts=3)
    assert _status(db, run_id).status == "cancelled"


def _write_chunk(db: Database, run_id: str, epochs: list[int]) -> None:
    chunk = history.make_chunk(
        run_id,
        {"epoch": epochs, "loss": [e / 10 for e in epochs], "val_loss": [None] * len(epochs)},
    )
    with db.writing() as session:
        session.add(chunk)
        session.commit()


def test_history_truncation_and_queries(db: Database, run_id: str) -> None:
    _write_chunk(db, run_id, [1, 2, 3])
    _write_chunk(db, run_id, [4, 5, 6, 7])
    _write_chunk(db, run_id, [8, 9])
    with db.writing() as session:
        history.truncate_after(session=session, run_id=run_id, epoch=5)
        session.commit()
    _write_chunk(db, run_id, [6, 7, 8])
    with db.reading() as session:
        full = history.read_history(session=session, run_id=run_id)
        assert full["epoch"] == [1, 2, 3, 4, 5, 6, 7, 8]
        assert full["loss"] == [e / 10 for e in full["epoch"]]
        assert full["val_loss"] == [None] * 8
        after = history.read_history(session=session, run_id=run_id, after_epoch=3, limit=2)
        assert after["epoch"] == [4, 5]
        first = history.read_history(session=session, run_id=run_id, limit=4)
        assert first["epoch"] == [1, 2, 3, 4]
        sampled = history.read_history(session=session, run_id=run_id, max_points=3)
        assert sampled["epoch"] == [1, 5, 8]


def test_truncate_to_zero_drops_everything(db: Database, run_id: str) -> None:
    _write_chunk(db, run_id, [1, 2, 3])
    with db.writing() as session:
        history.truncate_after(session=session, run_id=run_id, epoch=0)
        session.commit()
    with db.reading() as session:
        assert history.read_history(session=session, run_id=run_id)["epoch"] == []


@pytest.mark.parametrize(("n", "k"), [(10, 3), (1000, 1000), (5, 10), (1_000_000, 1000), (7, 1)])
def test_downsample_keeps_first_and_last(n: int, k: int) -> None:
    index = history.downsample_indices(n, k)
    assert len(index) == min(n, k)
    assert index[-1] == n - 1
    assert np.all(np.diff(index) > 0)
    if k > 1:
        assert index[0] == 0


def _flush(
    db: Database, run_id: str, epochs: list[int], pending: execution.PendingCheckpoint, **kw: Any
) -> tuple[bool, str | None]:
    chunk = history.make_chunk(
        run_id,
        {"epoch": epochs, "loss": [e / 10 for e in epochs], "val_loss": [None] * len(epochs)},
    )
    progress = execution.Progress(epoch=epochs[-1], loss=0.1, val_loss=None, best_loss=0.1)
    with db.writing() as session:
        return execution.flush(
            session=session,
            run_id=run_id,
            owner="a",
            lease_seconds=30,
            batch=execution.Batch(progress=progress, chunk=chunk, checkpoints=[pending]),
            keep_auto=3,
            **kw,
        )


def test_a_batch_written_again_after_an_unknown_outcome_is_stored_once(
    db: Database, run_id: str
) -> None:
    """A worker whose COMMIT answer was lost writes the batch again, grown by new epochs."""
    assert _claim(db, run_id, "a")
    pending = execution.PendingCheckpoint(
        id="checkpoint_retry",
        epoch=3,
        kind="scheduled",
        loss=0.3,
        val_loss=None,
        state=b"state",
        weights=b"weights",
    )
    assert _flush(db, run_id, [1, 2, 3], pending) == (True, None)
    with pytest.raises(IntegrityError):  # a plain second write would repeat rows
        _flush(db, run_id, [1, 2, 3, 4, 5], pending)
    assert _flush(db, run_id, [1, 2, 3, 4, 5], pending, replace=True) == (True, None)
    with db.reading() as session:
        assert history.read_history(session=session, run_id=run_id)["epoch"] == [1, 2, 3, 4, 5]
        stored = session.exec(select(Checkpoint).where(Checkpoint.run_id == run_id)).all()
        assert [checkpoint.id for checkpoint in stored] == ["checkpoint_retry"]
    assert _status(db, run_id).epoch == 5


def _pending(epoch: int, kind: str = "auto") -> execution.PendingCheckpoint:
    return execution.PendingCheckpoint(
        id=f"checkpoint_{kind}_{epoch}",
        epoch=epoch,
        kind=kind,
        loss=0.1,
        val_loss=None,
        state=b"state",
        weights=b"weights",
    )


def _stopped_batch(run_id: str) -> execution.Batch:
    """Epochs 1-4 recorded every 2 epochs, training stopped at 5 (off the grid)."""
    return execution.Batch(
        progress=execution.Progress(epoch=5, loss=0.1, val_loss=None, best_loss=0.1),
        chunk=history.make_chunk(
            run_id, {"epoch": [2, 4], "loss": [0.2, 0.4], "val_loss": [None] * 2}
        ),
        tail=history.make_chunk(run_id, {"epoch": [5], "loss": [0.5], "val_loss": [None]}),
        ending=_pending(5),
    )


@pytest.mark.parametrize(
    ("request_", "action", "status"),
    [
        (None, "stop", "queued"),
        ("pause", "stop", "paused"),
        ("cancel", "stop", "cancelled"),
        ("pause", "succeed", "succeeded"),
        ("cancel", "succeed", "succeeded"),
    ],
)
def test_the_final_write_decides_from_the_stored_request(
    db: Database, run_id: str, request_: str | None, action: str, status: str
) -> None:
    """What the worker stopped for does not matter: the request stored at the write does.
    The tail epoch and the final weights are stored only when the run ended."""
    assert _claim(db, run_id, "a")
    with db.writing() as session:
        run = session.get(Run, run_id)
        assert run is not None
        run.requested = request_
        session.add(run)
        session.commit()
    with db.writing() as session:
        written = execution.finish(
            session=session,
            run_id=run_id,
            owner="a",
            action=Action(action),
            batch=_stopped_batch(run_id),
            keep_auto=3,
            stop_reason="completed" if action == "succeed" else None,
            final_weights=lambda: b"final",
        )
    assert written == status
    run = _status(db, run_id)
    ended = status in ("succeeded", "cancelled")
    assert run.requested is None and run.lease_owner is None and run.lease_supervisor is None
    assert run.attempts == (1 if ended else 0), "a hand-back is not an attempt"
    assert (run.finished_at is not None) == ended
    assert run.stop_reason == {"cancelled": "cancelled", "succeeded": "completed"}.get(status)
    with db.reading() as session:
        epochs = history.read_history(session=session, run_id=run_id)["epoch"]
        (checkpoint,) = session.exec(select(Checkpoint).where(Checkpoint.run_id == run_id)).all()
        arrays = session.get(RunArrays, run_id)
    assert epochs == ([2, 4, 5] if ended else [2, 4])
    assert (checkpoint.epoch, checkpoint.kind) == (5, "final" if ended else "auto")
    assert arrays is not None and arrays.final_weights == (b"final" if ended else None)


def test_a_stop_by_a_worker_that_lost_its_lease_writes_nothing(db: Database, run_id: str) -> None:
    assert _claim(db, run_id, "a")
    before = _status(db, run_id).model_dump()
    with db.writing() as session:
        assert (
            execution.finish(
                session=session,
                run_id=run_id,
                owner="b",
                action=Action.STOP,
                batch=_stopped_batch(run_id),
                keep_auto=3,
            )
            is None
        )
    assert _status(db, run_id).model_dump() == before
