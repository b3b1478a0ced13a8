"""BACKPROP_MAX_ACTIVE_RUNS under concurrency, and on resume (issue 5).

Every test runs on SQLite and on PostgreSQL (tests/app/conftest.py), through the
real app and database, without workers: queued runs stay queued.

Concurrent requests come from threads released together by a barrier, all
through the one TestClient: each request enters the app's event loop at once and
its (sync) route runs in the app's thread pool, so the routes really overlap (as
they would under uvicorn) and only the database can keep the count exact.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlmodel import col, func, select

from app.db.database import Database
from app.db.models import DEFAULT_OWNER, Run
from tests.conftest import create_xor, run_body

CAP = 3
EXTRA = 5
ROUNDS = 5  # each round is one burst of CAP + EXTRA creates against an empty quota


@pytest.fixture
def capped(make_client: Callable[..., Any]) -> Iterator[TestClient]:
    """The app with workers=0 (runs stay queued) and a cap of CAP active runs."""
    with make_client(max_active_runs=CAP, workers=0) as client:
        yield client


def _active_in_database(client: TestClient) -> int:
    """Queued plus running runs of the default tenant, counted by the test itself."""
    db: Database = client.app.state.db  # type: ignore[attr-defined]
    with db.reading() as session:
        statement = (
            select(func.count())
            .select_from(Run)
            .where(Run.owner == DEFAULT_OWNER, col(Run.status).in_(("queued", "running")))
        )
        return int(session.exec(statement).one())


def _status(client: TestClient, run_id: str) -> str:
    response = client.get(f"/v1/runs/{run_id}")
    assert response.status_code == 200, response.text
    status: str = response.json()["status"]
    return status


def _all_at_once(calls: list[Callable[[], httpx.Response]]) -> list[httpx.Response]:
    """Run every call in its own thread, all released together; results in order."""
    barrier = threading.Barrier(len(calls))

    def released(call: Callable[[], httpx.Response]) -> httpx.Response:
        barrier.wait(timeout=30)
        return call()

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        futures = [pool.submit(released, call) for call in calls]
        return [future.result(timeout=120) for future in futures]


def _assert_refused(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert int(response.headers["retry-after"]) > 0
    assert "BACKPROP_MAX_ACTIVE_RUNS" in response.json()["detail"]


def _create(client: TestClient, body: dict[str, Any]) -> Callable[[], httpx.Response]:
    return lambda: client.post("/v1/runs", json=body)


def _resume(client: TestClient, run_id: str) -> Callable[[], httpx.Response]:
    return lambda: client.post(f"/v1/runs/{run_id}/resume")


def test_concurrent_creates_never_exceed_the_cap(capped: TestClient) -> None:
    body = run_body(*create_xor(capped), epochs=10)
    for round_ in range(ROUNDS):
        responses = _all_at_once([_create(capped, body) for _ in range(CAP + EXTRA)])
        accepted = [r for r in responses if r.status_code == 202]
        codes = sorted(r.status_code for r in responses)
        assert len(accepted) == CAP, f"round {round_}: {codes}"
        for response in responses:
            if response.status_code != 202:
                _assert_refused(response)
        assert _active_in_database(capped) == CAP, f"round {round_}"
        for response in accepted:  # free the quota for the next round
            run_id = response.json()["id"]
            assert capped.post(f"/v1/runs/{run_id}/cancel").json()["status"] == "cancelled"
        assert _active_in_database(capped) == 0


def test_resume_at_the_cap_is_refused_and_the_run_stays_paused(capped: TestClient) -> None:
    body = run_body(*create_xor(capped), epochs=10)
    paused_id = capped.post("/v1/runs", json=body).json()["id"]
    assert capped.post(f"/v1/runs/{paused_id}/pause").json()["status"] == "paused"
    others = [capped.post("/v1/runs", json=body) for _ in range(CAP)]
    assert [r.status_code for r in others] == [202] * CAP  # a paused run does not count

    refused = capped.post(f"/v1/runs/{paused_id}/resume")
    _assert_refused(refused)
    assert _status(capped, paused_id) == "paused"
    assert _active_in_database(capped) == CAP
    # Resuming a run that is already queued changes nothing, so it is not refused.
    queued_id = others[0].json()["id"]
    again = capped.post(f"/v1/runs/{queued_id}/resume")
    assert again.status_code == 200, again.text
    assert again.json()["status"] == "queued"

    # Below the cap, the same resume is accepted and the run counts again.
    assert capped.post(f"/v1/runs/{queued_id}/cancel").json()["status"] == "cancelled"
    resumed = capped.post(f"/v1/runs/{paused_id}/resume")
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["status"] == "queued"
    assert _active_in_database(capped) == CAP
    _assert_refused(capped.post("/v1/runs", json=body))


def test_concurrent_resumes_and_creates_never_exceed_the_cap(capped: TestClient) -> None:
    body = run_body(*create_xor(capped), epochs=10)
    paused_ids = []
    for _ in range(CAP):
        run_id = capped.post("/v1/runs", json=body).json()["id"]
        assert capped.post(f"/v1/runs/{run_id}/pause").json()["status"] == "paused"
        paused_ids.append(run_id)
    assert capped.post("/v1/runs", json=body).status_code == 202  # one place taken
    free = CAP - 1

    calls = [_resume(capped, run_id) for run_id in paused_ids]
    calls += [_create(capped, body) for _ in range(EXTRA)]
    responses = _all_at_once(calls)
    succeeded = [r for r in responses if r.status_code in (200, 202)]
    codes = [r.status_code for r in responses]
    assert len(succeeded) == free, codes
    for response in responses:
        if response not in succeeded:
            _assert_refused(response)
    assert _active_in_database(capped) == CAP
    for run_id, response in zip(paused_ids, responses[:CAP], strict=True):
        assert _status(capped, run_id) == ("queued" if response.status_code == 200 else "paused")
