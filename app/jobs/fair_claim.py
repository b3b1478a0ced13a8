"""Claim the fairest queued run: how both executors pick what to train next.

The run table is the queue, and :func:`app.services.execution.next_queued_run_id`
says which queued run is fairest (round-robin over tenants). A local worker
calls :func:`execute_fairest` whenever it is idle; a Celery delivery calls it
first, whatever run its message names, so messages are wake-up tokens (one is
published per queued run) and the order of the broker queue does not matter.
"""

from __future__ import annotations

import logging

from app.config import Settings
from app.db.database import Database
from app.jobs.execute_run import Outcome, execute_run
from app.jobs.lease import StopFlag
from app.services import execution

logger = logging.getLogger(__name__)

CLAIM_TRIES = 3
"""Runs tried per call: a claim lost to another worker moves on to the next fairest run."""


def execute_fairest(
    *,
    settings: Settings,
    db: Database,
    owner: str | None = None,
    supervisor: str | None = None,
    shutdown: StopFlag | None = None,
) -> Outcome | None:
    """Claim and train the fairest queued run.

    Parameters
    ----------
    settings : Settings
        Lease and executor settings (passed to :func:`execute_run`).
    db : Database
        This process's database.
    owner : str, optional
        Lease owner id (:func:`execute_run`'s default when None).
    supervisor : str, optional
        The supervisor id recorded with the lease (as in :func:`execute_run`).
    shutdown : Event-like, optional
        As in :func:`execute_run`.

    Returns
    -------
    Outcome or None
        What :func:`execute_run` did with the run it claimed, or None when no
        queued run could be claimed (none is queued, or other workers won the
        last :data:`CLAIM_TRIES` races).

    Raises
    ------
    Exception
        The database's error when the queue cannot be read (see
        :func:`app.db.errors.unavailable_reason`).
    """
    passed: list[str] = []
    for _ in range(CLAIM_TRIES):
        with db.reading() as session:
            run_id = execution.next_queued_run_id(session=session, exclude=passed)
        if run_id is None:
            return None
        outcome = execute_run(
            run_id,
            settings=settings,
            db=db,
            owner=owner,
            supervisor=supervisor,
            shutdown=shutdown,
        )
        if outcome.result != "skipped":
            return outcome
        logger.debug("run %s: claimed by another worker first; trying the next one", run_id)
        passed.append(run_id)
    return None
