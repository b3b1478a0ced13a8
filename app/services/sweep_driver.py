"""Database work of the sweep driver: create trials, record the outcome, end the sweep.

:func:`step` is idempotent and safe with several servers: each change is one
transaction that first locks the sweep row (``FOR UPDATE`` on PostgreSQL; SQLite
serializes writers with ``BEGIN IMMEDIATE``) and re-reads the sweep's trials, and a
trial's run is unique on ``(sweep_id, sweep_trial)``, so no trial is ever created
twice. Trials are created while fewer than ``parallelism`` are unfinished (a trial
paused at its ASHA rung counts until it is decided); the sweep
ends once every trial is finished: ``succeeded`` with its best trial when one
succeeded with an objective, else ``failed``.

ASHA: a trial's run carries ``pause_at_epoch`` (its next rung, min_epochs *
reduction_factor**k below the config's epochs); the worker pauses it there. The driver
then asks Optuna's ``SuccessiveHalvingPruner`` (:func:`app.services.sweep_sampling.asha_prunes`,
a study rebuilt from the ``sweep_rung`` rows) and writes the decision with its effect in
one transaction: promote → the next rung and resume (bit-identical, from the exact pause
checkpoint); prune → the trial is ``pruned`` and its run cancelled (its history and
checkpoints up to the rung stay). A trial is decided at a rung only once every
lower-numbered trial is finished or decided there, so the decisions depend on the
values only, never on which trial got there first: a seed gives the same decisions.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, func, select

from app.db.database import Database
from app.db.models import Run, Sweep, SweepRung, utcnow
from app.errors import InvalidInputError, NotFoundError, StorageQuotaError, TooManyRunsError
from app.jobs import lifecycle
from app.jobs.lifecycle import Status
from app.services import notifications, sweep_sampling, sweep_space, sweep_trials, sweeps
from app.services import runs as run_service
from app.services.sweep_trials import TrialView

logger = logging.getLogger(__name__)

MAX_CREATES_PER_STEP = 100


def active_sweep_ids(session: Session) -> list[str]:
    """Every queued or running sweep, oldest first."""
    statement = select(Sweep.id).where(col(Sweep.status).in_(sweeps.ACTIVE)).order_by(col(Sweep.id))
    return list(session.exec(statement))


def _locked(session: Session, sweep_id: str) -> Sweep | None:
    sweep = session.get(Sweep, sweep_id, with_for_update=True)
    if sweep is None or sweep.status not in sweeps.ACTIVE:
        return None
    return sweep


def _trials(session: Session, sweep: Sweep) -> list[TrialView]:
    return sweep_trials.trials_of(
        sweep, sweeps.trial_runs(session, sweep.id), sweeps.rungs(session, sweep.id)
    )


def total_trials(sweep: Sweep) -> int:
    """How many trials the sweep has when it is done."""
    if sweep.spec["method"] == "tpe":
        return int(sweep.spec["max_trials"])
    return len(sweep.planned)


def _end(session: Session, sweep: Sweep, status: str, error: str | None = None) -> None:
    sweep.status = status
    sweep.updated_at = sweep.finished_at = utcnow()
    if error is not None:
        sweep.spec = {**sweep.spec, "error": error}
    session.add(sweep)
    notifications.enqueue_sweep(session, sweep)  # committed with the status, never lost
    session.commit()
    logger.info("sweep %s: %s", sweep.id, status, extra={"event": f"sweep.{status}"})


def _finish_if_done(session: Session, sweep: Sweep, trials: list[TrialView]) -> bool:
    """End the sweep when every trial is created and finished; True if it ended."""
    if sweep.trials_created < total_trials(sweep) or not all(t.finished for t in trials):
        return False
    best = sweep_trials.best_of(sweep, trials)
    sweep.best_trial = best.number if best is not None else None
    _end(session, sweep, "succeeded" if best is not None else "failed")
    return True


def _asks(sweep: Sweep, number: int) -> bool:
    """Whether trial ``number``'s parameters are asked now (TPE), not planned."""
    return sweep.spec["method"] == "tpe" and number >= len(sweep.planned)


def _trials_if_needed(session: Session, sweep: Sweep) -> list[TrialView] | None:
    """The sweep's trials when a creation step needs each of them: ASHA (paused trials
    count by their rung decisions), or every trial created (the sweep may end); else None,
    and the step counts the unfinished ones in SQL (:func:`_unfinished`). Reading every
    trial at every step made a 200-trial sweep quadratic: most of a worker's time."""
    if sweep.spec.get("early_stopping") or sweep.trials_created >= total_trials(sweep):
        return _trials(session, sweep)
    return None


def _unfinished(session: Session, sweep: Sweep, trials: list[TrialView] | None) -> int:
    """How many of the sweep's trials are not finished (from ``trials`` when read).

    Without early stopping no trial is pruned, so a trial is unfinished exactly when its
    run is queued, running or paused (:data:`app.jobs.lifecycle.UNFINISHED`).
    """
    if trials is not None:
        return sum(1 for trial in trials if not trial.finished)
    statement = (
        select(func.count())
        .select_from(Run)
        .where(Run.sweep_id == sweep.id, col(Run.status).in_(lifecycle.UNFINISHED))
    )
    return int(session.exec(statement).one())


def _next_parameters(sweep: Sweep, number: int, trials: list[TrialView]) -> list[Any]:
    """``planned`` with trial ``number``'s parameters (TPE: asked now)."""
    if not _asks(sweep, number):
        return list(sweep.planned)
    space = sweep_space.distributions(sweeps.parameter_specs(sweep))
    finished = [
        (trial.parameters, trial.objective)
        for trial in trials
        if trial.status == "succeeded" and trial.objective is not None
    ]
    params = sweep_sampling.ask_tpe(
        space,
        seed=int(sweep.spec["seed"]),
        number=number,
        mode=str(sweep.spec["objective"]["mode"]),
        finished=[(p, float(v)) for p, v in finished if v is not None],
    )
    return [*sweep.planned, params]


def _create_one(session: Session, sweep_id: str, limits: run_service.RunLimits) -> str | None:
    """Create the sweep's next trial if it may have one; its run id, else None.

    Also ends the sweep when nothing is left to do. Raises IntegrityError when another
    server created that trial first (the caller retries).
    """
    sweep = _locked(session, sweep_id)
    if sweep is None:
        session.rollback()
        return None
    trials = _trials_if_needed(session, sweep)
    if trials is not None and _finish_if_done(session, sweep, trials):
        return None
    unfinished = _unfinished(session, sweep, trials)
    number = sweep.trials_created  # a deleted trial is not created again
    if number >= total_trials(sweep) or unfinished >= int(sweep.spec["parallelism"]):
        session.rollback()
        return None
    if _asks(sweep, number):
        sweep.planned = _next_parameters(sweep, number, trials or _trials(session, sweep))
    sweep.trials_created = number + 1
    sweep.status = "running"
    sweep.updated_at = utcnow()
    session.add(sweep)
    link = run_service.SweepLink(
        sweep_id=sweep.id, trial=number, pause_at_epoch=sweeps.first_rung(sweep)
    )
    try:
        network_id = sweeps.trial_network_id(session, sweep, number, limits)
        run = run_service.create_run(
            session=session,
            owner=sweep.owner,
            run_in=sweeps.trial_run_in(sweep, number, network_id),
            limits=limits,
            sweep=link,
        )
    except (TooManyRunsError, StorageQuotaError) as exc:  # rolled back; try again later
        logger.info("sweep %s: trial %d waits (%s)", sweep_id, number, exc)
        return None
    except (InvalidInputError, NotFoundError) as exc:
        session.rollback()
        failed = _locked(session, sweep_id)
        if failed is not None:
            _end(session, failed, "failed", error=f"trial {number}: {exc}")
        return None
    logger.info("sweep %s: trial %d is run %s", sweep_id, number, run.id)
    return run.id


def _awaiting(sweep: Sweep, runs: list[Run], decided: set[tuple[int, int]]) -> list[Run]:
    """Trial runs paused at a rung of the sweep that has no decision yet, by number."""
    rungs = sweeps.rung_epochs(sweep)
    return [
        run
        for run in runs
        if run.status == Status.PAUSED
        and run.pause_at_epoch is not None
        and run.epoch == run.pause_at_epoch
        and run.epoch in rungs
        and (int(run.sweep_trial or 0), rungs.index(run.epoch)) not in decided
    ]


def _may_decide(
    number: int, rung: int, trials: list[TrialView], decided: set[tuple[int, int]]
) -> bool:
    """Whether every earlier trial is finished or decided at ``rung`` (decisions are then
    the same whatever order the trials reach their rungs in)."""
    return all(
        trial.finished or (trial.number, rung) in decided
        for trial in trials
        if trial.number < number
    )


def _prunes(sweep: Sweep, number: int, rung: int, value: float, rows: list[SweepRung]) -> bool:
    asha = sweep.spec["early_stopping"]
    others: dict[int, dict[int, float]] = {}
    own: dict[int, float] = {}
    for row in rows:
        target = own if row.trial == number else others.setdefault(row.trial, {})
        target[row.rung] = math.nan if row.value is None else float(row.value)
    own[rung] = value
    return sweep_sampling.asha_prunes(
        min_epochs=int(asha["min_epochs"]),
        reduction_factor=int(asha["reduction_factor"]),
        mode=str(sweep.spec["objective"]["mode"]),
        rung_epochs=sweeps.rung_epochs(sweep),
        others=[others[trial] for trial in sorted(others)],
        own={r: own[r] for r in sorted(own)},
    )


def _decide_one(session: Session, sweep_id: str, limits: run_service.RunLimits) -> str | None:
    """Take the next ASHA decision the sweep may take; the promoted run's id, else None.

    Returns ``""`` for a prune (something was decided, nothing to dispatch). The rung row
    and the run's change (resume with the next rung, or cancel) commit together.
    """
    sweep = _locked(session, sweep_id)
    if sweep is None or not sweep.spec.get("early_stopping"):
        session.rollback()
        return None
    runs = sweeps.trial_runs(session, sweep.id)
    rows = sweeps.rungs(session, sweep.id)
    decided = {(row.trial, row.rung) for row in rows}
    trials = sweep_trials.trials_of(sweep, runs, rows)
    rung_epochs = sweeps.rung_epochs(sweep)
    for run in _awaiting(sweep, runs, decided):
        number, rung = int(run.sweep_trial or 0), rung_epochs.index(run.epoch)
        if not _may_decide(number, rung, trials, decided):
            continue
        objective = sweep_trials.final_objective(run, str(sweep.spec["objective"]["metric"]))
        value = math.nan if objective is None else objective
        prune = _prunes(sweep, number, rung, value, rows)
        session.add(
            SweepRung(
                sweep_id=sweep.id,
                trial=number,
                rung=rung,
                epoch=run.epoch,
                value=objective,
                decision=sweep_trials.PRUNE if prune else sweep_trials.PROMOTE,
                decided_at=utcnow(),
            )
        )
        logger.info(
            "sweep %s: trial %d %s at rung %d (epoch %d, %s)",
            sweep.id,
            number,
            "pruned" if prune else "promoted",
            rung,
            run.epoch,
            value,
        )
        if prune:  # its run is cancelled: it keeps its history and checkpoints to the rung
            session.flush()
            run_service.cancel_run(session=session, owner=sweep.owner, run_id=run.id)
            return ""
        run.pause_at_epoch = rung_epochs[rung + 1] if rung + 1 < len(rung_epochs) else None
        session.add(run)
        session.flush()
        try:
            run_service.resume_run(
                session=session,
                owner=sweep.owner,
                run_id=run.id,
                max_active_runs=limits.max_active_runs,
            )
        except TooManyRunsError:  # rolled back, decision included; taken again later
            return None
        return run.id
    session.rollback()
    return None


@dataclass(frozen=True)
class Work:
    """What a step of a sweep may do now (read without the write lock)."""

    decisions: bool
    """An ASHA decision may be taken."""
    creations: int
    """Trials that may be created (``parallelism`` minus the unfinished ones, at most the
    trials left)."""
    ends: bool
    """Every trial is created and finished: the sweep ends."""

    def __bool__(self) -> bool:
        return self.decisions or self.creations > 0 or self.ends


NO_WORK = Work(decisions=False, creations=0, ends=False)


def pending_work(session: Session, sweep_id: str) -> Work:
    """Cheap read: what may a step change now (decisions, trials, the end)?

    Keeps an idle sweep from taking the write lock every supervisor round, and a step
    from taking it for nothing (a decision in a sweep without early stopping, one more
    creation once ``parallelism`` trials run).
    """
    sweep = session.get(Sweep, sweep_id)
    if sweep is None or sweep.status not in sweeps.ACTIVE:
        return NO_WORK
    decisions = False
    if sweep.spec.get("early_stopping"):
        runs = sweeps.trial_runs(session, sweep.id)
        rows = sweeps.rungs(session, sweep.id)
        trials = sweep_trials.trials_of(sweep, runs, rows)
        unfinished = _unfinished(session, sweep, trials)
        decided = {(row.trial, row.rung) for row in rows}
        rung_epochs = sweeps.rung_epochs(sweep)
        decisions = any(
            _may_decide(int(run.sweep_trial or 0), rung_epochs.index(run.epoch), trials, decided)
            for run in _awaiting(sweep, runs, decided)
        )
    else:  # no decisions: counting is enough
        unfinished = _unfinished(session, sweep, None)
    left = total_trials(sweep) - sweep.trials_created
    creations = max(0, min(left, int(sweep.spec["parallelism"]) - unfinished))
    return Work(decisions=decisions, creations=creations, ends=left <= 0 and unfinished == 0)


def has_work(session: Session, sweep_id: str) -> bool:
    """Whether a step may change anything now (:func:`pending_work`)."""
    return bool(pending_work(session, sweep_id))


def step(db: Database, sweep_id: str, limits: run_service.RunLimits) -> list[str]:
    """Advance one sweep: take the ASHA decisions it may take, create the trials it may
    have now, end it when done.

    Returns the ids of the runs to dispatch (resumed and created).
    """
    with db.reading() as session:
        work = pending_work(session, sweep_id)
    if not work:
        return []
    decided: list[str] = []
    if work.decisions:
        decided = _repeat(db, sweep_id, limits, _decide_one, "took that decision")
    # A decision (a prune) may free a slot: then create until refused, as the count is old.
    creations = MAX_CREATES_PER_STEP if decided else max(work.creations, 1)
    created = _repeat(db, sweep_id, limits, _create_one, "created that trial", creations)
    return [run_id for run_id in decided if run_id] + created


def _repeat(
    db: Database,
    sweep_id: str,
    limits: run_service.RunLimits,
    one: Callable[[Session, str, run_service.RunLimits], str | None],
    raced: str,
    limit: int = MAX_CREATES_PER_STEP,
) -> list[str]:
    """``one`` in a write transaction each, until it returns None or has returned ``limit``
    ids (at most :data:`MAX_CREATES_PER_STEP` transactions; a unique-key race with another
    server is retried)."""
    done: list[str] = []
    for _ in range(MAX_CREATES_PER_STEP):
        if len(done) >= limit:
            break
        with db.writing() as session:
            try:
                run_id = one(session, sweep_id, limits)
            except IntegrityError:
                session.rollback()
                logger.info("sweep %s: another server %s", sweep_id, raced)
                continue
        if run_id is None:
            break
        done.append(run_id)
    return done
