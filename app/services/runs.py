"""Runs as seen by the API: create (fully validated), read, list, cancel, results."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import text
from sqlmodel import Session, col, func, select

import engine
from app.arrays import decode_weights
from app.errors import ConflictError, InvalidInputError, NotFoundError, TooManyRunsError
from app.ids import new_id
from app.logs import log_transition
from app.models import Checkpoint, CheckpointState, Run, RunArrays, utcnow
from app.schemas import RunCreate
from app.services import datasets as dataset_service
from app.services import networks as network_service
from app.services.errors import invalid_from_config_error
from app.services.pagination import PageResult, paginate

TERMINAL_STATUSES = ("succeeded", "failed", "cancelled")
ACTIVE_STATUSES = ("queued", "running")
SEED_BITS = 32


@dataclass(frozen=True)
class RunLimits:
    """Per-run and per-tenant limits checked when a run is created."""

    max_run_work: int
    max_active_runs: int


def targets_for_loss(loss: str, y: NDArray[Any]) -> NDArray[Any]:
    """Return ``y`` as the engine should see it for ``loss``.

    Integer labels stay 1-D for ``cross_entropy``; for any other loss a 1-D ``y``
    is one numeric target column.
    """
    if y.ndim == 1 and loss != "cross_entropy":
        return y.astype(np.float64).reshape(-1, 1)
    return y


def _fit_dict(run_in: RunCreate) -> dict[str, Any]:
    config: dict[str, Any] = {
        "loss": run_in.loss,
        "reduction": run_in.reduction,
        "optimizer": run_in.optimizer.model_dump(exclude_none=True),
        "epochs": run_in.epochs,
        "batch_size": run_in.batch_size,
        "shuffle": run_in.shuffle,
        "seed": run_in.seed if run_in.seed is not None else secrets.randbits(SEED_BITS),
        "validation": (
            run_in.validation.model_dump(exclude_none=True) if run_in.validation else None
        ),
        "early_stopping": (
            run_in.early_stopping.model_dump(exclude_none=True) if run_in.early_stopping else None
        ),
        "history_every": run_in.history_every,
    }
    if run_in.dtype is not None:
        config["dtype"] = run_in.dtype
    return config


def _validation_dataset_id(run_in: RunCreate) -> str | None:
    if run_in.validation is None:
        return None
    if run_in.validation.fraction is not None and run_in.validation.dataset_id is not None:
        raise InvalidInputError(
            ("body", "validation"), "give either fraction or dataset_id, not both"
        )
    if run_in.validation.fraction is None and run_in.validation.dataset_id is None:
        raise InvalidInputError(("body", "validation"), "give fraction or dataset_id (or null)")
    return run_in.validation.dataset_id


def _owned_checkpoint(session: Session, owner: str, checkpoint_id: str) -> Checkpoint:
    """The checkpoint if its run belongs to ``owner``, else :class:`NotFoundError`."""
    checkpoint = session.get(Checkpoint, checkpoint_id)
    if checkpoint is None:
        raise NotFoundError("checkpoint", checkpoint_id)
    run = session.get(Run, checkpoint.run_id)
    if run is None or run.owner != owner:
        raise NotFoundError("checkpoint", checkpoint_id)
    return checkpoint


def _init_weights(session: Session, owner: str, run_in: RunCreate) -> bytes | None:
    if run_in.init_from is None:
        return None
    checkpoint = _owned_checkpoint(session, owner, run_in.init_from)
    source = session.get(Run, checkpoint.run_id)
    if source is None or source.network_id != run_in.network_id:
        raise InvalidInputError(
            ("body", "init_from"),
            f"checkpoint {run_in.init_from!r} belongs to a run of network "
            f"{source.network_id if source else None!r}, not {run_in.network_id!r}",
        )
    state = session.get(CheckpointState, checkpoint.id)
    if state is None:  # pragma: no cover - written with the checkpoint
        raise NotFoundError("checkpoint", run_in.init_from)
    return state.weights


def _data_error(
    exc: engine.ConfigError, loc: tuple[str, ...], dataset_id: str
) -> InvalidInputError:
    """A dataset that does not fit the network/loss, located at the id that named it.

    Errors about a run setting (the validation split) stay at that setting.
    """
    if exc.loc[:1] == ("validation",):
        return InvalidInputError(("body", *exc.loc), f"for dataset {dataset_id!r}: {exc.reason}")
    return InvalidInputError(loc, f"dataset {dataset_id!r} does not fit this run: {exc}")


def count_active(*, session: Session, owner: str) -> int:
    """``owner``'s queued and running runs."""
    statement = (
        select(func.count())
        .select_from(Run)
        .where(Run.owner == owner, col(Run.status).in_(ACTIVE_STATUSES))
    )
    return int(session.exec(statement).one())


def active_runs_lock_key(owner: str) -> int:
    """The PostgreSQL advisory lock key of ``owner``'s active-run count.

    A signed 64-bit integer (``bigint``, what ``pg_advisory_xact_lock`` takes):
    the first 8 bytes of a BLAKE2b digest of a namespaced owner. Two tenants that
    collide merely share a lock (their creates wait for each other); the count
    stays exact.
    """
    digest = hashlib.blake2b(f"backprop.active_runs:{owner}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def lock_active_runs(*, session: Session, owner: str) -> None:
    """Serialize, per tenant, the transactions that may make a run active.

    The cap is a count followed by an insert (or a ``paused`` → ``queued``
    update), which is only exact when no two such transactions of one tenant
    interleave:

    - **SQLite**: nothing to do. Write sessions begin ``IMMEDIATE``
      (:meth:`app.db.Database.write_session`), so the whole transaction, from its
      first read, already holds the database's single write lock.
    - **PostgreSQL**: ``pg_advisory_xact_lock(key(owner))``. The lock is the
      transaction's, released at commit or rollback (also when the connection
      dies), so no code path can leak it; tenants do not wait for each other.
      Under READ COMMITTED (the engine's isolation level) each statement reads a
      fresh snapshot, so the count that follows the lock sees every run the
      previous holder committed before releasing it.

    Rejected alternatives: ``SERIALIZABLE`` (a conflicting create would fail with
    a serialization error and need a retry loop around the whole validation);
    ``SELECT ... FOR UPDATE`` of the tenant's active runs (locks nothing when the
    tenant has none, so two first creates still race); a per-tenant counter row
    (a new table and migration, and every status change would have to keep it in
    step). Call it right before counting: the expensive validation of a create
    stays outside the critical section, which is lock, count, insert, commit.
    """
    bind = session.get_bind()
    if bind.dialect.name == "postgresql":
        session.execute(
            text("SELECT pg_advisory_xact_lock(:key)"), {"key": active_runs_lock_key(owner)}
        )


def check_active_cap(*, session: Session, owner: str, max_active_runs: int) -> None:
    """Raise when ``owner`` is at the cap; call it after :func:`lock_active_runs`.

    On refusal the transaction is rolled back (releasing the lock; nothing was
    written yet). Otherwise the caller makes the run active and commits in the
    same transaction, which releases the lock.

    Raises
    ------
    TooManyRunsError
        When ``owner`` already has ``max_active_runs`` queued or running runs.
    """
    active = count_active(session=session, owner=owner)
    if active >= max_active_runs:
        session.rollback()
        raise TooManyRunsError(
            f"{active} runs are queued or running; at most {max_active_runs} per "
            "tenant (BACKPROP_MAX_ACTIVE_RUNS): wait for one to finish or cancel one"
        )


def create_run(*, session: Session, owner: str, run_in: RunCreate, limits: RunLimits) -> Run:
    """Validate a run completely (config, network, data, validation data, warm start,
    limits) and store it as ``queued`` for ``owner``; nothing is written when any
    check fails.

    Raises
    ------
    NotFoundError
        Unknown network, dataset, validation dataset or checkpoint, or another
        tenant's (never distinguished).
    InvalidInputError
        Anything the engine or the service rejects, or a run over ``max_run_work``.
    TooManyRunsError
        When ``owner`` already has ``max_active_runs`` queued or running runs.
    """
    network = network_service.get_network(
        session=session, owner=owner, network_id=run_in.network_id
    )
    dataset = dataset_service.get_dataset(
        session=session, owner=owner, dataset_id=run_in.dataset_id
    )
    validation_id = _validation_dataset_id(run_in)
    if validation_id is not None:
        dataset_service.get_dataset(session=session, owner=owner, dataset_id=validation_id)
    init_weights = _init_weights(session, owner, run_in)
    work = run_in.epochs * dataset.n_samples
    if work > limits.max_run_work:
        raise InvalidInputError(
            ("body", "epochs"),
            f"{run_in.epochs} epochs x {dataset.n_samples} samples = {work} sample-epochs; "
            f"at most {limits.max_run_work} per run (BACKPROP_MAX_RUN_WORK)",
        )
    try:
        fit_config = engine.FitConfig.from_dict(_fit_dict(run_in))
    except engine.ConfigError as exc:
        raise invalid_from_config_error(exc) from exc
    normalized = fit_config.to_dict()
    net = network_service.build_network(network.spec)
    try:
        engine.check_compatible(net, fit_config)
    except engine.ConfigError as exc:
        raise invalid_from_config_error(exc) from exc
    loss = str(normalized["loss"])
    X, y = dataset_service.load_arrays(session=session, dataset_id=run_in.dataset_id)
    try:
        engine.check_data(net, fit_config, X, targets_for_loss(loss, y))
    except engine.ConfigError as exc:
        raise _data_error(exc, ("body", "dataset_id"), run_in.dataset_id) from exc
    if validation_id is not None:
        Xv, yv = dataset_service.load_arrays(session=session, dataset_id=validation_id)
        try:
            engine.check_data(net, fit_config, Xv, targets_for_loss(loss, yv))
        except engine.ConfigError as exc:
            raise _data_error(exc, ("body", "validation", "dataset_id"), validation_id) from exc
        normalized["validation"] = {"dataset_id": validation_id}
    config = {
        "network_id": run_in.network_id,
        "dataset_id": run_in.dataset_id,
        **normalized,
        "checkpoint_every": run_in.checkpoint_every,
        "init_from": run_in.init_from,
    }
    lock_active_runs(session=session, owner=owner)
    check_active_cap(session=session, owner=owner, max_active_runs=limits.max_active_runs)
    run = Run(
        id=new_id("run"),
        owner=owner,
        status="queued",
        network_id=network.id,
        dataset_id=run_in.dataset_id,
        validation_dataset_id=validation_id,
        config=config,
        epochs=int(normalized["epochs"]),
        created_at=utcnow(),
    )
    session.add(run)
    session.add(RunArrays(run_id=run.id, init_weights=init_weights))
    session.commit()
    log_transition(run.id, "queued", message="created")
    return run


def get_run(*, session: Session, owner: str, run_id: str) -> Run:
    """Return ``owner``'s run or raise :class:`NotFoundError` (also for another tenant's)."""
    run = session.get(Run, run_id)
    if run is None or run.owner != owner:
        raise NotFoundError("run", run_id)
    return run


def list_runs(
    *,
    session: Session,
    owner: str,
    limit: int,
    after: str | None,
    status: str | None = None,
    network_id: str | None = None,
    dataset_id: str | None = None,
) -> PageResult[Run]:
    """Return one page of ``owner``'s runs, newest first, optionally filtered."""
    statement = select(Run).where(Run.owner == owner)
    if status is not None:
        statement = statement.where(Run.status == status)
    if network_id is not None:
        statement = statement.where(Run.network_id == network_id)
    if dataset_id is not None:
        statement = statement.where(Run.dataset_id == dataset_id)
    return paginate(
        session=session, statement=statement, id_column=Run.id, limit=limit, after=after
    )


def cancel_run(*, session: Session, owner: str, run_id: str) -> Run:
    """Cancel a run (idempotent).

    A queued or paused run is cancelled at once; a running one gets
    ``cancel_requested`` and its worker stops it at the next epoch boundary; a
    finished one is returned unchanged.
    """
    run = get_run(session=session, owner=owner, run_id=run_id)
    # Lock the row (PostgreSQL; SQLite writers are serialized by BEGIN IMMEDIATE) so a
    # worker cannot claim the run between this read and the write below.
    session.refresh(run, with_for_update=True)
    previous = run.status
    if run.status in ("queued", "paused"):
        now = utcnow()
        run.status = "cancelled"
        run.stop_reason = "cancelled"
        run.finished_at = now
        run.lease_owner = None
        run.lease_expires_at = None
    elif run.status == "running":
        run.cancel_requested = True
    else:
        return run
    session.add(run)
    session.commit()
    if run.status == "cancelled":
        log_transition(
            run.id, "cancelled", previous=previous, message=f"cancelled while {previous}"
        )
    else:
        log_transition(run.id, "cancel_requested", previous=previous)
    return run


def pause_run(*, session: Session, owner: str, run_id: str) -> Run:
    """Pause a run (idempotent).

    A queued run is paused at once. A running one gets ``pause_requested``: its
    worker sees it with its next batched write, stops at the epoch boundary,
    writes an exact checkpoint and sets ``paused`` (releasing the lease).

    Raises
    ------
    ConflictError
        When the run is succeeded, failed or cancelled.
    """
    run = get_run(session=session, owner=owner, run_id=run_id)
    session.refresh(run, with_for_update=True)  # see cancel_run
    previous = run.status
    if run.status in TERMINAL_STATUSES:
        session.rollback()
        raise ConflictError(f"run {run_id!r} is {run.status}: only a queued or running run pauses")
    if run.status == "queued":
        run.status = "paused"
        run.lease_owner = None
        run.lease_expires_at = None
    elif run.status == "running" and not run.pause_requested and not run.cancel_requested:
        run.pause_requested = True
    else:
        session.rollback()
        return run
    session.add(run)
    session.commit()
    if run.status == "paused":
        log_transition(run.id, "paused", previous=previous, message="paused while queued")
    else:
        log_transition(run.id, "pause_requested", previous=previous)
    return run


def resume_run(
    *, session: Session, owner: str, run_id: str, max_active_runs: int
) -> tuple[Run, bool]:
    """Resume a paused run (idempotent); return the run and whether to dispatch it.

    A paused run becomes ``queued`` (the caller dispatches it) and its worker
    continues from the pause checkpoint exactly. A running run whose pause was
    asked but not yet taken keeps running (the request is withdrawn); a queued
    or running run is returned unchanged.

    Raises
    ------
    ConflictError
        When the run is succeeded, failed or cancelled.
    TooManyRunsError
        When the run is paused and ``owner`` already has ``max_active_runs`` queued
        or running runs (a paused run does not count; a queued one does). The run
        stays paused.
    """
    run = get_run(session=session, owner=owner, run_id=run_id)
    # The tenant lock before the row lock, as in create (which takes only the former):
    # one order, so resume and create never deadlock.
    lock_active_runs(session=session, owner=owner)
    session.refresh(run, with_for_update=True)
    if run.status in TERMINAL_STATUSES:
        session.rollback()
        raise ConflictError(f"run {run_id!r} is {run.status}: only a paused run resumes")
    if run.status == "paused":
        check_active_cap(session=session, owner=owner, max_active_runs=max_active_runs)
        run.status = "queued"
        run.pause_requested = False
    elif run.pause_requested:
        run.pause_requested = False
    else:
        session.rollback()
        return run, False
    session.add(run)
    session.commit()
    dispatch = run.status == "queued"
    if dispatch:
        log_transition(run.id, "queued", previous="paused", message="resumed")
    return run, dispatch


def list_checkpoints(
    *, session: Session, owner: str, run_id: str, limit: int, after: str | None
) -> PageResult[Checkpoint]:
    """Return one page of a run's checkpoints, newest first."""
    get_run(session=session, owner=owner, run_id=run_id)
    statement = select(Checkpoint).where(Checkpoint.run_id == run_id)
    return paginate(
        session=session, statement=statement, id_column=Checkpoint.id, limit=limit, after=after
    )


def get_checkpoint(
    *, session: Session, owner: str, checkpoint_id: str
) -> tuple[Checkpoint, list[dict[str, Any]]]:
    """Return a checkpoint of one of ``owner``'s runs and its weights."""
    checkpoint = _owned_checkpoint(session, owner, checkpoint_id)
    state = session.get(CheckpointState, checkpoint_id)
    if state is None:  # pragma: no cover - written with the checkpoint
        raise NotFoundError("checkpoint", checkpoint_id)
    return checkpoint, decode_weights(state.weights)


def get_weights(*, session: Session, owner: str, run_id: str) -> tuple[int, list[dict[str, Any]]]:
    """Return ``(epoch, layers)``: a finished run's final weights, else its latest checkpoint.

    Raises
    ------
    ConflictError
        When the run has neither (queued, or failed before its first checkpoint).
    """
    run = get_run(session=session, owner=owner, run_id=run_id)
    arrays = session.get(RunArrays, run_id)
    if run.status in TERMINAL_STATUSES and arrays is not None and arrays.final_weights:
        return int(arrays.final_epoch or run.epoch), decode_weights(arrays.final_weights)
    latest = session.exec(
        select(Checkpoint)
        .where(Checkpoint.run_id == run_id)
        .order_by(col(Checkpoint.epoch).desc(), col(Checkpoint.id).desc())
        .limit(1)
    ).first()
    if latest is None:
        raise ConflictError(
            f"run {run_id!r} ({run.status}) has no weights yet: no checkpoint so far"
        )
    state = session.get(CheckpointState, latest.id)
    if state is None:  # pragma: no cover - written with the checkpoint
        raise ConflictError(f"run {run_id!r} has no weights yet")
    return latest.epoch, decode_weights(state.weights)


def predict(
    *, session: Session, owner: str, run_id: str, X: list[list[float]], max_rows: int
) -> tuple[int, NDArray[np.float64]]:
    """Run ``X`` through the weights :func:`get_weights` returns.

    Raises
    ------
    InvalidInputError
        When ``X`` has more than ``max_rows`` rows or not the network's input width.
    """
    run = get_run(session=session, owner=owner, run_id=run_id)
    if len(X) > max_rows:
        raise InvalidInputError(
            ("body", "X"),
            f"{len(X)} rows; at most {max_rows} per request (BACKPROP_MAX_PREDICT_ROWS)",
        )
    epoch, layers = get_weights(session=session, owner=owner, run_id=run_id)
    network = network_service.get_network(session=session, owner=owner, network_id=run.network_id)
    net = network_service.build_network(network.spec)
    net.set_weights(layers)
    try:
        predictions = net.predict(np.asarray(X, dtype=np.float64))
    except engine.ConfigError as exc:
        raise invalid_from_config_error(exc) from exc
    return epoch, np.asarray(predictions, dtype=np.float64)
