"""The queue is fair between tenants (issue 10, defect 7), with the local process pool.

Tenant A queues 12 runs, then tenant B queues one: with one worker, B's run must
be the next claim after A's run in progress, not the 13th (tests/support/fairness.py).
Celery deliveries make the same choice (tests/app/test_celery.py,
tests/integration/test_fair_queue_celery.py). The ordering rule itself
(:func:`app.services.execution.next_queued_run_id`) is checked on the database below.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from app.db.database import Database
from app.db.models import Network, Run, utcnow
from app.services import execution
from tests.support.fairness import API_KEYS, b_is_served_next


def test_a_second_tenant_is_served_after_the_run_in_progress_not_after_the_queue(
    make_client: Callable[..., Any],
) -> None:
    with make_client(workers=1, api_keys=API_KEYS) as client:
        b_is_served_next(client)


def _queue(db: Database, rows: list[tuple[str, str, str, datetime | None]]) -> None:
    """Insert runs ``(id, owner, status, started_at)`` of one network."""
    now = utcnow()
    with db.writing() as session:
        if session.get(Network, "net_1") is None:
            session.add(
                Network(
                    id="net_1",
                    owner="x",
                    name="n",
                    spec={},
                    input_size=1,
                    output_size=1,
                    n_parameters=1,
                    created_at=now,
                )
            )
            session.flush()
        for run_id, owner, status, started in rows:
            session.add(
                Run(
                    id=run_id,
                    owner=owner,
                    status=status,
                    network_id="net_1",
                    config={},
                    epochs=1,
                    created_at=now,
                    started_at=started,
                )
            )
        session.commit()


def _next(db: Database, exclude: tuple[str, ...] = ()) -> str | None:
    with db.reading() as session:
        return execution.next_queued_run_id(session=session, exclude=exclude)


def test_the_fairest_run_is_the_oldest_of_the_least_served_tenant(database_url: str) -> None:
    db = Database(database_url)
    hour = datetime(2026, 1, 1, tzinfo=UTC)
    try:
        assert _next(db) is None
        _queue(
            db,
            [
                # a: one running run, two queued (the oldest queued runs of all)
                ("run_a_running", "a", "running", hour),
                ("run_a_1", "a", "queued", None),
                ("run_a_2", "a", "queued", None),
                # b: nothing running; its latest run started at 02:00
                ("run_b_done", "b", "succeeded", hour + timedelta(hours=2)),
                ("run_b_1", "b", "queued", None),
                # c: nothing running; its latest run started at 01:00
                ("run_c_old", "c", "succeeded", hour),
                ("run_c_done", "c", "failed", hour + timedelta(hours=1)),
                ("run_c_1", "c", "queued", None),
                ("run_c_2", "c", "queued", None),
                # d: nothing running, never started one, nothing queued
                ("run_d_done", "d", "cancelled", None),
            ],
        )
        # Fewest running first (b, c), then the one served longest ago (c), oldest first.
        assert _next(db) == "run_c_1"
        assert _next(db, exclude=("run_c_1",)) == "run_c_2"
        assert _next(db, exclude=("run_c_1", "run_c_2")) == "run_b_1"
        # Only a has queued runs left: a running run does not keep them waiting.
        assert _next(db, exclude=("run_c_1", "run_c_2", "run_b_1")) == "run_a_1"
        # A tenant that never started a run goes before one that did.
        _queue(db, [("run_e_1", "e", "queued", None)])
        assert _next(db) == "run_e_1"
    finally:
        db.dispose()
