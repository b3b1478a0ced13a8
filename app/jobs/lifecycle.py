"""The run lifecycle: statuses, the pending request, and every allowed transition.

A run's lifecycle state is its ``status`` and, while it runs, the request a
person made that its worker has not carried out yet (``run.requested``: pause,
cancel or none). The whole state machine is :data:`TRANSITIONS` (what each
action does in each state) and :data:`REFUSED` (API actions answered 409, with
the reason); the services and the jobs ask it instead of comparing strings,
and the tests enumerate it.

Rules worth knowing:

- Only a running run has a pending request. Leaving ``running`` (any way)
  clears it, so a finished, queued or paused run never shows one.
- A worker that stops at an exact checkpoint (shutdown, or a request it read)
  does not decide the outcome: it writes :data:`Action.STOP`, and the outcome
  is the target for the request stored in the row *at that write* (cancel →
  cancelled, pause → paused, none → queued: a pause withdrawn in the meantime
  hands the run back to the queue and it continues bit-identically). The sweep
  of expired leases decides the same way (:data:`Action.LOSE`), except that a
  run that used up its attempts fails (:data:`Action.GIVE_UP`).
- A cancel cannot be withdrawn: while one is pending, pause and resume are
  refused. Completion overtakes a request the worker has not read yet (the run
  succeeds and the request is cleared).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum


class Status(StrEnum):
    """The ``status`` of a run (the API's contract values)."""

    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Request(StrEnum):
    """What a person asked of a running run that its worker has not done yet."""

    PAUSE = "pause"
    CANCEL = "cancel"


class Action(StrEnum):
    """Everything that can happen to a run."""

    PAUSE = "pause"
    """``POST /pause``."""
    RESUME = "resume"
    """``POST /resume``."""
    CANCEL = "cancel"
    """``POST /cancel``."""
    CLAIM = "claim"
    """A worker takes a queued run's lease."""
    STOP = "stop"
    """The worker stopped at an exact checkpoint (shutdown, or it read a request)."""
    SUCCEED = "succeed"
    """Training completed (all epochs, or early stopping)."""
    FAIL = "fail"
    """Training failed (diverged, or an error)."""
    LOSE = "lose"
    """The lease expired: the worker died, with attempts left or through no fault of the
    run (its whole service died)."""
    GIVE_UP = "give_up"
    """The lease expired, the worker died while its supervisor lived, and that was the
    run's last attempt."""


API_ACTIONS = (Action.PAUSE, Action.RESUME, Action.CANCEL)
WORKER_ACTIONS = (Action.CLAIM, Action.STOP, Action.SUCCEED, Action.FAIL)
SWEEP_ACTIONS = (Action.LOSE, Action.GIVE_UP)


@dataclass(frozen=True)
class State:
    """A run's lifecycle state: its status and its pending request."""

    status: Status
    request: Request | None = None

    def __str__(self) -> str:
        return self.status.value + (f"+{self.request.value}" if self.request else "")


QUEUED = State(Status.QUEUED)
RUNNING = State(Status.RUNNING)
PAUSING = State(Status.RUNNING, Request.PAUSE)
CANCELLING = State(Status.RUNNING, Request.CANCEL)
PAUSED = State(Status.PAUSED)
SUCCEEDED = State(Status.SUCCEEDED)
FAILED = State(Status.FAILED)
CANCELLED = State(Status.CANCELLED)

STATES = (QUEUED, RUNNING, PAUSING, CANCELLING, PAUSED, SUCCEEDED, FAILED, CANCELLED)
"""Every reachable state."""
RUNNING_STATES = (RUNNING, PAUSING, CANCELLING)
TERMINAL_STATES = (SUCCEEDED, FAILED, CANCELLED)

TERMINAL = frozenset({Status.SUCCEEDED, Status.FAILED, Status.CANCELLED})
"""Statuses a run never leaves."""
ACTIVE = (Status.QUEUED, Status.RUNNING)
"""Statuses that count towards ``BACKPROP_MAX_ACTIVE_RUNS``."""
UNFINISHED = (Status.QUEUED, Status.RUNNING, Status.PAUSED)
"""Statuses that keep a run's network and datasets from being deleted."""
HANDED_BACK = frozenset({Status.QUEUED, Status.PAUSED})
"""Where a worker's stop can leave a run unfinished: that claim is not an attempt."""
CANCELLED_STOP_REASON = "cancelled"
"""The ``stop_reason`` of a cancelled run."""


def _transitions() -> dict[tuple[State, Action], State]:
    table: dict[tuple[State, Action], State] = {
        # The API.
        (QUEUED, Action.PAUSE): PAUSED,
        (QUEUED, Action.RESUME): QUEUED,
        (QUEUED, Action.CANCEL): CANCELLED,
        (RUNNING, Action.PAUSE): PAUSING,
        (RUNNING, Action.RESUME): RUNNING,
        (RUNNING, Action.CANCEL): CANCELLING,
        (PAUSING, Action.PAUSE): PAUSING,
        (PAUSING, Action.RESUME): RUNNING,  # withdrawn before the worker stopped
        (PAUSING, Action.CANCEL): CANCELLING,
        (CANCELLING, Action.CANCEL): CANCELLING,
        (PAUSED, Action.PAUSE): PAUSED,
        (PAUSED, Action.RESUME): QUEUED,
        (PAUSED, Action.CANCEL): CANCELLED,
        # Workers.
        (QUEUED, Action.CLAIM): RUNNING,
        (RUNNING, Action.STOP): QUEUED,
        (PAUSING, Action.STOP): PAUSED,
        (CANCELLING, Action.STOP): CANCELLED,
        # The sweep of expired leases.
        (RUNNING, Action.LOSE): QUEUED,
        (PAUSING, Action.LOSE): PAUSED,
        (CANCELLING, Action.LOSE): CANCELLED,
        (RUNNING, Action.GIVE_UP): FAILED,
        (PAUSING, Action.GIVE_UP): FAILED,
        (CANCELLING, Action.GIVE_UP): CANCELLED,
    }
    for state in TERMINAL_STATES:
        table[(state, Action.CANCEL)] = state  # idempotent: the answer is the run
    for state in RUNNING_STATES:  # completion overtakes a request not read yet
        table[(state, Action.SUCCEED)] = SUCCEEDED
        table[(state, Action.FAIL)] = FAILED
    return table


def _refused() -> dict[tuple[State, Action], str]:
    withdraw = (
        "is being cancelled (it stops at its next epoch boundary); a cancel cannot be withdrawn"
    )
    table = {(CANCELLING, Action.PAUSE): withdraw, (CANCELLING, Action.RESUME): withdraw}
    for state in TERMINAL_STATES:
        status = state.status.value
        table[(state, Action.PAUSE)] = f"is {status}: only a queued or running run pauses"
        table[(state, Action.RESUME)] = f"is {status}: only a paused run resumes"
    return table


TRANSITIONS: Mapping[tuple[State, Action], State] = _transitions()
"""``(state, action) -> new state`` for every allowed transition (a no-op included)."""
REFUSED: Mapping[tuple[State, Action], str] = _refused()
"""``(state, API action) -> why`` for the API actions answered with a 409 (the message is
``run '<id>' <why>``)."""


class TransitionRefusedError(Exception):
    """An API action the run's state does not allow (a 409 for the client)."""

    def __init__(self, state: State, action: Action, why: str) -> None:
        super().__init__(f"{action.value} refused: run {why}")
        self.state = state
        self.action = action
        self.why = why


def apply(state: State, action: Action) -> State:
    """The state ``action`` leads to from ``state``.

    Raises
    ------
    TransitionRefusedError
        For an API action the state refuses (:data:`REFUSED`).
    KeyError
        For a worker or sweep action outside a running state: the lease fencing
        of their writes makes that impossible, so it is a bug.
    """
    target = TRANSITIONS.get((state, action))
    if target is not None:
        return target
    why = REFUSED.get((state, action))
    if why is not None:
        raise TransitionRefusedError(state, action, why)
    raise KeyError(f"no transition for {action.value} from {state}")


def state_of(status: str, requested: str | None) -> State:
    """The :class:`State` of a run row (``run.status``, ``run.requested``)."""
    return State(Status(status), Request(requested) if requested else None)


def outcome_by_request(action: Action) -> dict[Request | None, Status]:
    """The status a running run ends in after ``action``, for each pending request.

    This is what the worker's stop write and the sweep put in their conditional
    UPDATE (a ``CASE`` on the stored request), so the outcome is decided by the
    request stored at the moment of the write.
    """
    return {state.request: apply(state, action).status for state in RUNNING_STATES}
