"""The run lifecycle table (app/jobs/lifecycle.py), and the API following it for every state."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, get_args

import pytest
from fastapi.testclient import TestClient

from app.api.schemas import RunStatus
from app.db.models import Run, utcnow
from app.jobs import lifecycle
from app.jobs.lifecycle import (
    CANCELLED,
    CANCELLING,
    FAILED,
    PAUSED,
    PAUSING,
    QUEUED,
    RUNNING,
    STATES,
    SUCCEEDED,
    Action,
    Request,
    State,
    Status,
)
from tests.conftest import create_xor, run_body

A = Action
EXPECTED: dict[tuple[State, Action], State] = {
    (QUEUED, A.PAUSE): PAUSED,
    (QUEUED, A.RESUME): QUEUED,
    (QUEUED, A.CANCEL): CANCELLED,
    (QUEUED, A.CLAIM): RUNNING,
    (RUNNING, A.PAUSE): PAUSING,
    (RUNNING, A.RESUME): RUNNING,
    (RUNNING, A.CANCEL): CANCELLING,
    (RUNNING, A.STOP): QUEUED,
    (RUNNING, A.SUCCEED): SUCCEEDED,
    (RUNNING, A.FAIL): FAILED,
    (RUNNING, A.LOSE): QUEUED,
    (RUNNING, A.GIVE_UP): FAILED,
    (PAUSING, A.PAUSE): PAUSING,
    (PAUSING, A.RESUME): RUNNING,
    (PAUSING, A.CANCEL): CANCELLING,
    (PAUSING, A.STOP): PAUSED,
    (PAUSING, A.SUCCEED): SUCCEEDED,
    (PAUSING, A.FAIL): FAILED,
    (PAUSING, A.LOSE): PAUSED,
    (PAUSING, A.GIVE_UP): FAILED,
    (CANCELLING, A.CANCEL): CANCELLING,
    (CANCELLING, A.STOP): CANCELLED,
    (CANCELLING, A.SUCCEED): SUCCEEDED,
    (CANCELLING, A.FAIL): FAILED,
    (CANCELLING, A.LOSE): CANCELLED,
    (CANCELLING, A.GIVE_UP): CANCELLED,
    (PAUSED, A.PAUSE): PAUSED,
    (PAUSED, A.RESUME): QUEUED,
    (PAUSED, A.CANCEL): CANCELLED,
    (SUCCEEDED, A.CANCEL): SUCCEEDED,
    (FAILED, A.CANCEL): FAILED,
    (CANCELLED, A.CANCEL): CANCELLED,
}
"""Every allowed transition, written out (the specification the table must match)."""
EXPECTED_REFUSED = {
    (CANCELLING, A.PAUSE),
    (CANCELLING, A.RESUME),
    *((state, action) for state in lifecycle.TERMINAL_STATES for action in (A.PAUSE, A.RESUME)),
}
"""Every API action answered 409."""


def test_the_table_is_exactly_the_specification() -> None:
    assert dict(lifecycle.TRANSITIONS) == EXPECTED
    assert set(lifecycle.REFUSED) == EXPECTED_REFUSED


@pytest.mark.parametrize(("state", "action"), sorted(EXPECTED, key=str))
def test_every_allowed_transition(state: State, action: Action) -> None:
    assert lifecycle.apply(state, action) == EXPECTED[(state, action)]


@pytest.mark.parametrize(("state", "action"), sorted(EXPECTED_REFUSED, key=str))
def test_every_refused_api_action_says_why(state: State, action: Action) -> None:
    with pytest.raises(lifecycle.TransitionRefusedError) as refused:
        lifecycle.apply(state, action)
    why = refused.value.why
    assert ("being cancelled" in why) if state == CANCELLING else (f"is {state.status}" in why)


@pytest.mark.parametrize("state", STATES, ids=str)
def test_worker_and_sweep_actions_only_apply_to_what_they_can_reach(state: State) -> None:
    """Their writes are fenced by the lease (running) or the claim (queued): anything
    else cannot happen, and asking the table is a bug."""
    for action in (*lifecycle.WORKER_ACTIONS, *lifecycle.SWEEP_ACTIONS):
        reachable = state == QUEUED if action == A.CLAIM else state in lifecycle.RUNNING_STATES
        if reachable:
            lifecycle.apply(state, action)
        else:
            with pytest.raises(KeyError):
                lifecycle.apply(state, action)


def test_every_api_action_is_answered_in_every_state() -> None:
    for state in STATES:
        for action in lifecycle.API_ACTIONS:
            allowed = (state, action) in lifecycle.TRANSITIONS
            assert allowed != ((state, action) in lifecycle.REFUSED), (state, action)


def test_only_running_runs_have_a_request_and_terminal_states_are_final() -> None:
    for (state, action), target in lifecycle.TRANSITIONS.items():
        assert target in STATES
        if target.request is not None:
            assert target.status == Status.RUNNING
        if state.status in lifecycle.TERMINAL:
            assert target == state, (state, action)
    reachable = {QUEUED}
    while True:
        more = {
            target for (state, _), target in lifecycle.TRANSITIONS.items() if state in reachable
        }
        if more <= reachable:
            break
        reachable |= more
    assert reachable == set(STATES)


def test_the_outcome_of_a_stop_is_the_stored_request() -> None:
    assert lifecycle.outcome_by_request(A.STOP) == {
        None: Status.QUEUED,
        Request.PAUSE: Status.PAUSED,
        Request.CANCEL: Status.CANCELLED,
    }
    assert lifecycle.outcome_by_request(A.LOSE) == lifecycle.outcome_by_request(A.STOP)
    assert lifecycle.outcome_by_request(A.GIVE_UP) == {
        None: Status.FAILED,
        Request.PAUSE: Status.FAILED,
        Request.CANCEL: Status.CANCELLED,
    }


def test_the_api_contract_lists_every_status() -> None:
    assert set(get_args(RunStatus)) == {status.value for status in Status}
    assert lifecycle.state_of("running", "pause") == PAUSING
    assert lifecycle.state_of("paused", None) == PAUSED


# -- the API follows the table, in every state, on both databases ----------------------


def _put_in_state(client: TestClient, run_id: str, state: State) -> None:
    """Write ``state`` into the run row as a worker and the API would have left it."""
    db = client.app.state.db  # type: ignore[attr-defined]
    with db.writing() as session:
        run = session.get(Run, run_id)
        assert run is not None
        run.status = state.status
        run.requested = state.request
        running = state.status == Status.RUNNING
        run.lease_owner = "worker-x" if running else None
        run.lease_expires_at = utcnow() + timedelta(seconds=60) if running else None
        run.finished_at = utcnow() if state.status in lifecycle.TERMINAL else None
        run.attempts = 1 if state.status != Status.QUEUED else 0
        session.add(run)
        session.commit()


def _row(client: TestClient, run_id: str) -> dict[str, Any]:
    db = client.app.state.db  # type: ignore[attr-defined]
    with db.reading() as session:
        run = session.get(Run, run_id)
        assert run is not None
        return run.model_dump()


@pytest.mark.parametrize("action", lifecycle.API_ACTIONS)
def test_the_api_does_what_the_table_says_in_every_state(
    client: TestClient, action: Action
) -> None:
    network_id, dataset_id = create_xor(client)
    for state in STATES:
        run_id = client.post("/v1/runs", json=run_body(network_id, dataset_id)).json()["id"]
        _put_in_state(client, run_id, state)
        before = _row(client, run_id)
        response = client.post(f"/v1/runs/{run_id}/{action.value}")
        after = _row(client, run_id)
        if (state, action) in lifecycle.REFUSED:
            assert response.status_code == 409, (state, response.text)
            assert response.json()["detail"] == f"run {run_id!r} {lifecycle.REFUSED[state, action]}"
            assert after == before, "a refused request changed the run"
            continue
        assert response.status_code == 200, (state, response.text)
        target = lifecycle.TRANSITIONS[(state, action)]
        answer = response.json()
        assert (answer["status"], after["status"]) == (target.status, target.status), state
        assert after["requested"] == target.request, state
        assert answer["pause_requested"] == (target.request == Request.PAUSE)
        assert answer["cancel_requested"] == (target.request == Request.CANCEL)
        if target == state:
            assert after == before, f"a no-op {action} changed a {state} run"
        if target.status != Status.RUNNING:
            assert after["lease_owner"] is None and after["lease_expires_at"] is None
        if target == CANCELLED and state != CANCELLED:
            assert after["finished_at"] is not None and after["stop_reason"] == "cancelled"
