"""Database work of the sweep driver: create trials, record the outcome, end the sweep.

:func:`step` is idempotent and safe with several servers: each change is one
transaction that first locks the sweep row (``FOR UPDATE`` on PostgreSQL; SQLite
serializes writers with ``BEGIN IMMEDIATE``) and re-reads the sweep's trials, and a
trial's run is unique on ``(sweep_id, sweep_trial)``, so no trial is ever created
twice. Trials are created while fewer than ``parallelism`` are unfinished; the sweep
ends once every trial is finished: ``succeeded`` with its best trial when one
succeeded with an objective, else ``failed``.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from app.db.database import Database
from app.db.models import Sweep, utcnow
from app.errors import InvalidInputError, NotFoundError, StorageQuotaError, TooManyRunsError
from app.services import runs as run_service
from app.services import sweep_sampling, sweep_space, sweep_trials, sweeps
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
    session.commit()
    logger.info("sweep %s: %s", sweep.id, status, extra={"event": f"sweep.{status}"})


def _finish_if_done(session: Session, sweep: Sweep, trials: list[TrialView]) -> bool:
    """End the sweep when every trial is created and finished; True if it ended."""
    if len(trials) < total_trials(sweep) or not all(trial.finished for trial in trials):
        return False
    best = sweep_trials.best_of(sweep, trials)
    sweep.best_trial = best.number if best is not None else None
    _end(session, sweep, "succeeded" if best is not None else "failed")
    return True


def _next_parameters(sweep: Sweep, number: int, trials: list[TrialView]) -> list[Any]:
    """``planned`` with trial ``number``'s parameters (TPE: asked now)."""
    if sweep.spec["method"] != "tpe" or number < len(sweep.planned):
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
    trials = _trials(session, sweep)
    if _finish_if_done(session, sweep, trials):
        return None
    unfinished = sum(1 for trial in trials if not trial.finished)
    number = len(trials)
    if number >= total_trials(sweep) or unfinished >= int(sweep.spec["parallelism"]):
        session.rollback()
        return None
    sweep.planned = _next_parameters(sweep, number, trials)
    sweep.status = "running"
    sweep.updated_at = utcnow()
    session.add(sweep)
    link = run_service.SweepLink(
        sweep_id=sweep.id, trial=number, pause_at_epoch=sweeps.first_rung(sweep)
    )
    try:
        run = run_service.create_run(
            session=session,
            owner=sweep.owner,
            run_in=sweeps.trial_run_in(sweep, number),
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


def step(db: Database, sweep_id: str, limits: run_service.RunLimits) -> list[str]:
    """Advance one sweep: create the trials it may have now, end it when done.

    Returns the ids of the runs to dispatch.
    """
    created: list[str] = []
    for _ in range(MAX_CREATES_PER_STEP):
        with db.writing() as session:
            try:
                run_id = _create_one(session, sweep_id, limits)
            except IntegrityError:
                session.rollback()
                logger.info("sweep %s: another server created that trial", sweep_id)
                continue
        if run_id is None:
            break
        created.append(run_id)
    return created
