"""Runs as seen by the API: create (fully validated), read, list, cancel, results."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlmodel import Session, col, func, select

import engine
from app.api.schemas import RunCreate
from app.config import Settings
from app.datasets.arrays import decode_weights
from app.datasets.summary import check_summary
from app.datasets.summary import targets_for_loss as targets_for_loss
from app.db.blob_io import read_blob
from app.db.ids import new_id
from app.db.models import (
    Checkpoint,
    CheckpointState,
    Dataset,
    Network,
    Run,
    RunArrays,
    utcnow,
)
from app.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    TooManyRunsError,
    invalid_from_config_error,
)
from app.jobs import lifecycle
from app.jobs.lifecycle import Action, State, Status
from app.logs import log_transition
from app.services import datasets as dataset_service
from app.services import labels, notifications, storage
from app.services import networks as network_service
from app.services.checkpoints import latest_checkpoint
from app.services.notifications import Ended
from app.services.pagination import PageResult, paginate
from app.services.run_order import RunOrder, page_runs
from app.webhooks.targets import TargetRefusedError, check_target

SEED_BITS = 32


@dataclass(frozen=True)
class RunLimits:
    """Per-run and per-tenant limits checked when a run is created.

    ``storage_quota`` 0 means no quota (``BACKPROP_STORAGE_QUOTA_BYTES``).
    """

    max_run_work: int
    max_active_runs: int
    storage_quota: int = 0
    keep_auto_checkpoints: int = 3
    max_scheduled_checkpoints: int = 1000
    history_max_points: int = 100_000
    webhook_allow_private: bool = False
    max_network_parameters: int = 10_000_000
    """Largest network a sweep's trial may build (``BACKPROP_MAX_NETWORK_PARAMETERS``)."""

    @classmethod
    def from_settings(cls, settings: Settings) -> RunLimits:
        """The limits ``settings`` configure."""
        return cls(
            max_run_work=settings.max_run_work,
            max_active_runs=settings.max_active_runs,
            storage_quota=settings.storage_quota_bytes,
            keep_auto_checkpoints=settings.keep_auto_checkpoints,
            max_scheduled_checkpoints=settings.max_scheduled_checkpoints,
            history_max_points=settings.history_max_points,
            webhook_allow_private=settings.webhook_allow_private,
            max_network_parameters=settings.max_network_parameters,
        )

    @property
    def quota(self) -> int | None:
        """The storage quota in bytes, or None."""
        return self.storage_quota or None


def _history_max_points(run_in: RunCreate, limits: RunLimits) -> int:
    """The run's ``history_max_points``: the setting, or fewer if the run asks."""
    asked = run_in.history_max_points
    if asked is None:
        return limits.history_max_points
    if asked > limits.history_max_points:
        raise InvalidInputError(
            ("body", "history_max_points"),
            f"{asked} points; at most {limits.history_max_points} per run "
            "(BACKPROP_HISTORY_MAX_POINTS): ask for fewer, or leave it unset",
        )
    return asked


def _fit_dict(run_in: RunCreate, limits: RunLimits) -> dict[str, Any]:
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
        "history_max_points": _history_max_points(run_in, limits),
    }
    if run_in.dtype is not None:
        config["dtype"] = run_in.dtype
    for key in ("loss_options", "lr_schedule", "grad_clip"):  # issue 11; null: unused
        value = getattr(run_in, key)
        if value is not None:
            config[key] = value.model_dump(exclude_none=True)
    if run_in.metrics is not None:
        config["metrics"] = run_in.metrics
    return config


def _notify_url(run_in: RunCreate, limits: RunLimits) -> dict[str, str]:
    """``{"notify_url": url}`` for the run's config once the target is checked, else ``{}``."""
    if run_in.notify_url is None:
        return {}
    try:
        check_target(run_in.notify_url, allow_private=limits.webhook_allow_private)
    except TargetRefusedError as exc:
        raise InvalidInputError(("body", "notify_url"), str(exc)) from exc
    return {"notify_url": run_in.notify_url}


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
        .where(Run.owner == owner, col(Run.status).in_(lifecycle.ACTIVE))
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
      (:meth:`app.db.database.Database.write_session`), so the whole transaction, from its
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


@dataclass(frozen=True)
class SweepLink:
    """The sweep trial a run is (:mod:`app.services.sweep_driver`); unique per sweep."""

    sweep_id: str
    trial: int
    pause_at_epoch: int | None = None


@dataclass(frozen=True)
class _RunPlan:
    """A run validated in a read transaction, ready to be stored by :func:`_store_run`."""

    network_id: str
    dataset_id: str
    validation_id: str | None
    config: dict[str, Any]
    epochs: int
    init_weights: bytes | None
    reservation: storage.Reservation
    settlement: storage.Settlement
    new_summaries: tuple[dataset_service.ComputedSummary, ...]
    transform: dict[str, Any] | None = None
    """The training dataset's transform (:mod:`app.datasets.transforms`), kept with the run."""
    name: str | None = None
    tags: tuple[str, ...] = ()
    meta: dict[str, Any] | None = None


def create_run(
    *,
    session: Session,
    owner: str,
    run_in: RunCreate,
    limits: RunLimits,
    read_session: Session | None = None,
    sweep: SweepLink | None = None,
) -> Run:
    """Validate a run completely (config, network, data, validation data, warm start,
    limits, storage quota) and store it as ``queued`` for ``owner``; nothing is
    written when any check fails.

    The validation reads go through ``read_session`` (a read transaction, which
    never holds SQLite's write lock) and cost no work proportional to the datasets:
    the data is checked against the summaries stored with them
    (:func:`app.datasets.summary.check_summary`). The write transaction in
    ``session`` is short: tenant lock, active-run count, storage charge, insert,
    commit. Without ``read_session``, ``session`` does both. ``sweep`` makes the run a
    sweep's trial (an IntegrityError at commit when that trial exists already).

    Raises
    ------
    NotFoundError
        Unknown network, dataset, validation dataset or checkpoint, or another
        tenant's (never distinguished), also one deleted during the request.
    InvalidInputError
        Anything the engine or the service rejects, or a run over ``max_run_work``
        or ``max_scheduled_checkpoints``.
    TooManyRunsError
        When ``owner`` already has ``max_active_runs`` queued or running runs.
    StorageQuotaError
        When the run's reservation does not fit ``owner``'s storage quota.
    """
    reads = read_session if read_session is not None else session
    plan = _plan_run(reads, owner, run_in, limits)
    if read_session is not None:
        read_session.rollback()  # end the read transaction before the write one
    return _store_run(session, owner, plan, limits, sweep)


def validated_config(
    *, session: Session, owner: str, run_in: RunCreate, limits: RunLimits
) -> dict[str, Any]:
    """The normalized config :func:`create_run` would store for ``run_in`` (nothing written).

    Raises what :func:`create_run` raises for an invalid run (not the 429 and 507 of
    the write).
    """
    return dict(_plan_run(session, owner, run_in, limits).config)


def _check_work(run_in: RunCreate, dataset: Dataset, limits: RunLimits) -> None:
    work = run_in.epochs * dataset.n_samples
    if work > limits.max_run_work:
        raise InvalidInputError(
            ("body", "epochs"),
            f"{run_in.epochs} epochs x {dataset.n_samples} samples = {work} sample-epochs; "
            f"at most {limits.max_run_work} per run (BACKPROP_MAX_RUN_WORK)",
        )
    every = run_in.checkpoint_every
    scheduled = storage.scheduled_checkpoints(run_in.epochs, every)
    if every is not None and scheduled > limits.max_scheduled_checkpoints:
        smallest = -(-run_in.epochs // limits.max_scheduled_checkpoints)
        raise InvalidInputError(
            ("body", "checkpoint_every"),
            f"{run_in.epochs} epochs / checkpoint_every {every} = {scheduled} checkpoints; "
            f"at most {limits.max_scheduled_checkpoints} per run "
            f"(BACKPROP_MAX_SCHEDULED_CHECKPOINTS): use checkpoint_every >= {smallest}, "
            "or null for automatic ones",
        )


def _check_data(
    session: Session,
    net: engine.Network,
    fit_config: engine.FitConfig,
    dataset_id: str,
    loc: tuple[str, ...],
) -> dataset_service.ComputedSummary | None:
    """Check a dataset against the run through its summary; return it if just computed."""
    summary, records, computed = dataset_service.summary_of(session=session, dataset_id=dataset_id)
    try:
        check_summary(net, fit_config, summary, records)
    except engine.ConfigError as exc:
        raise _data_error(exc, loc, dataset_id) from exc
    return computed


def _plan_run(session: Session, owner: str, run_in: RunCreate, limits: RunLimits) -> _RunPlan:
    """Every check of :func:`create_run` that needs no write, in ``session``."""
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
    _check_work(run_in, dataset, limits)
    try:
        fit_config = engine.FitConfig.from_dict(_fit_dict(run_in, limits))
    except engine.ConfigError as exc:
        raise invalid_from_config_error(exc) from exc
    normalized = fit_config.to_dict()
    net = network_service.build_network(network.spec)
    try:
        engine.check_compatible(net, fit_config)
    except engine.ConfigError as exc:
        raise invalid_from_config_error(exc) from exc
    computed = [_check_data(session, net, fit_config, run_in.dataset_id, ("body", "dataset_id"))]
    if validation_id is not None:
        loc = ("body", "validation", "dataset_id")
        computed.append(_check_data(session, net, fit_config, validation_id, loc))
        normalized["validation"] = {"dataset_id": validation_id}
    reservation = storage.run_reservation(
        network=net,
        config=fit_config,
        checkpoint_every=run_in.checkpoint_every,
        keep_auto_checkpoints=limits.keep_auto_checkpoints,
        init_weights_bytes=len(init_weights or b""),
    )
    settlement = storage.Settlement()
    if limits.quota is not None:
        settlement = storage.settle(
            session=session, owner=owner, keep_auto_checkpoints=limits.keep_auto_checkpoints
        )
    return _RunPlan(
        network_id=network.id,
        dataset_id=run_in.dataset_id,
        validation_id=validation_id,
        config={
            "network_id": run_in.network_id,
            "dataset_id": run_in.dataset_id,
            **normalized,
            "checkpoint_every": run_in.checkpoint_every,
            "init_from": run_in.init_from,
            **_notify_url(run_in, limits),
        },
        epochs=int(normalized["epochs"]),
        init_weights=init_weights,
        reservation=reservation,
        settlement=settlement,
        new_summaries=tuple(summary for summary in computed if summary is not None),
        transform=dataset.transform,
        name=run_in.name,
        tags=tuple(run_in.tags),
        meta=dict(run_in.metadata),
    )


def _store_run(
    session: Session, owner: str, plan: _RunPlan, limits: RunLimits, sweep: SweepLink | None
) -> Run:
    """The short write of :func:`create_run`: lock, count, charge, insert, commit."""
    lock_active_runs(session=session, owner=owner)
    check_active_cap(session=session, owner=owner, max_active_runs=limits.max_active_runs)
    # What the plan read may have been deleted since (404, not an integrity error).
    # FOR KEY SHARE (PostgreSQL): a concurrent delete, which locks the row FOR UPDATE
    # before counting its runs, either waits for this insert (and counts it) or has
    # deleted the row before this read (404 here).
    key_share = {"key_share": True}
    if session.get(Network, plan.network_id, with_for_update=key_share) is None:
        session.rollback()
        raise NotFoundError("network", plan.network_id)
    for dataset_id in (plan.dataset_id, plan.validation_id):
        if dataset_id is None:
            continue
        if session.get(Dataset, dataset_id, with_for_update=key_share) is None:
            session.rollback()
            raise NotFoundError("dataset", dataset_id)
    for computed in plan.new_summaries:
        dataset_service.store_summary(session=session, computed=computed)
    storage.charge(
        session=session,
        owner=owner,
        needed=plan.reservation.total,
        quota=limits.quota,
        settlement=plan.settlement,
        what=f"this run ({plan.reservation.describe()})",
        advice=", or record less: a larger history_every, fewer epochs, a larger "
        "checkpoint_every (or null)",
    )
    run = Run(
        id=new_id("run"),
        owner=owner,
        status=Status.QUEUED,
        network_id=plan.network_id,
        dataset_id=plan.dataset_id,
        validation_dataset_id=plan.validation_id,
        config=plan.config,
        transform=plan.transform,
        epochs=plan.epochs,
        created_at=utcnow(),
        name=plan.name,
        tags=list(plan.tags),
        meta=dict(plan.meta or {}),
    )
    if sweep is not None:
        run.sweep_id, run.sweep_trial = sweep.sweep_id, sweep.trial
        run.pause_at_epoch = sweep.pause_at_epoch
    session.add(run)
    labels.add_tags(session, run, run.tags)
    session.add(RunArrays(run_id=run.id, init_weights=plan.init_weights))
    storage.reserve(session=session, run_id=run.id, owner=owner, reservation=plan.reservation.total)
    session.commit()
    log_transition(run.id, Status.QUEUED, message="created")
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
    sweep_id: str | None = None,
    filters: labels.ListFilters | None = None,
    order: RunOrder | None = None,
) -> PageResult[Run]:
    """Return one page of ``owner``'s runs in ``order`` (newest first), optionally filtered."""
    statement = select(Run).where(Run.owner == owner)
    statement = labels.filtered(statement, Run, owner, filters or labels.ListFilters())
    if sweep_id is not None:
        statement = statement.where(Run.sweep_id == sweep_id)
    if status is not None:
        statement = statement.where(Run.status == status)
    if network_id is not None:
        statement = statement.where(Run.network_id == network_id)
    if dataset_id is not None:
        statement = statement.where(Run.dataset_id == dataset_id)
    order = order or RunOrder(key="created_at", descending=True)
    return page_runs(session=session, statement=statement, order=order, limit=limit, after=after)


def delete_run(*, session: Session, owner: str, run_id: str, force: bool = False) -> None:
    """Delete a run with its history, checkpoints, weights and storage charge.

    A queued, running or paused run is refused unless ``force``: then it is first
    cancelled through the lifecycle (committed and logged like ``POST /cancel``),
    and deleted in a second transaction. A running run's worker is not waited
    for: its next write is fenced by the lease on a row that no longer exists, so
    it writes nothing and stops.

    Raises
    ------
    ConflictError
        The run is unfinished and ``force`` is false.
    """
    run = _locked(session, owner, run_id)
    if run.status in lifecycle.UNFINISHED:
        if not force:
            session.rollback()
            raise ConflictError(
                f"run {run_id!r} is {run.status}; cancel it first, or pass ?force=true "
                "to cancel and delete it"
            )
        current, target = _transition(session, run, Action.CANCEL)
        if target != current:
            _move(session, run, current, target)
        run = _locked(session, owner, run_id)
    session.delete(run)
    session.commit()
    log_transition(run_id, "deleted", previous=run.status)


def _transition(session: Session, run: Run, action: Action) -> tuple[State, State]:
    """``(current state, new state)`` of the locked ``run`` under an API ``action``.

    Raises
    ------
    ConflictError
        When the state refuses the action (the transaction is rolled back).
    """
    current = lifecycle.state_of(run.status, run.requested)
    try:
        return current, lifecycle.apply(current, action)
    except lifecycle.TransitionRefusedError as refused:
        session.rollback()
        raise ConflictError(f"run {run.id!r} {refused.why}") from refused


def _move(session: Session, run: Run, current: State, target: State) -> None:
    """Write ``target`` onto the locked ``run``, commit, and log the transition."""
    run.status = target.status
    run.requested = target.request
    if target.status != Status.RUNNING:  # an API action never leaves a lease behind
        run.lease_owner = run.lease_supervisor = None
        run.lease_expires_at = None
    if target.status in lifecycle.TERMINAL:
        run.finished_at = utcnow()
        if target.status == Status.CANCELLED:
            run.stop_reason = lifecycle.CANCELLED_STOP_REASON
        notifications.enqueue(session, [Ended(run.id, run.owner, target.status, run.config)])
    session.add(run)
    session.commit()
    if target.status != current.status:
        log_transition(
            run.id, target.status, previous=current.status, message=f"{current} -> {target}"
        )
    elif target.request is not None:
        log_transition(run.id, f"{target.request}_requested", previous=current.status)
    else:
        log_transition(run.id, "request_withdrawn", previous=str(current))


def _locked(session: Session, owner: str, run_id: str) -> Run:
    """``owner``'s run, its row locked until commit (PostgreSQL; SQLite writers are
    serialized by ``BEGIN IMMEDIATE``), so no worker write interleaves with the change."""
    run = get_run(session=session, owner=owner, run_id=run_id)
    session.refresh(run, with_for_update=True)
    return run


def cancel_run(*, session: Session, owner: str, run_id: str) -> Run:
    """Cancel a run (idempotent).

    A queued or paused run is cancelled at once; a running one gets a pending
    cancel (``cancel_requested``) and its worker stops it at the next epoch
    boundary (a pending pause is replaced: cancel wins); a finished one is
    returned unchanged.
    """
    run = _locked(session, owner, run_id)
    current, target = _transition(session, run, Action.CANCEL)
    if target == current:
        session.rollback()
        return run
    _move(session, run, current, target)
    return run


def pause_run(*, session: Session, owner: str, run_id: str) -> Run:
    """Pause a run (idempotent).

    A queued run is paused at once. A running one gets a pending pause
    (``pause_requested``): its worker sees it with its next batched write or
    heartbeat, stops at the epoch boundary, writes an exact checkpoint and
    releases the lease; the run is then paused, unless the request changed in
    the meantime (see :mod:`app.jobs.lifecycle`).

    Raises
    ------
    ConflictError
        When the run is succeeded, failed or cancelled, or a cancel is pending.
    """
    run = _locked(session, owner, run_id)
    current, target = _transition(session, run, Action.PAUSE)
    if target == current:
        session.rollback()
        return run
    _move(session, run, current, target)
    return run


def resume_run(
    *, session: Session, owner: str, run_id: str, max_active_runs: int
) -> tuple[Run, bool]:
    """Resume a paused run (idempotent); return the run and whether to dispatch it.

    A paused run becomes ``queued`` (the caller dispatches it) and its worker
    continues from the pause checkpoint exactly. A running run whose pause was
    asked but not yet carried out keeps running (the request is withdrawn; a
    worker that had already stopped for it hands the run back to the queue); a
    queued or running run is returned unchanged.

    Raises
    ------
    ConflictError
        When the run is succeeded, failed or cancelled, or a cancel is pending.
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
    current, target = _transition(session, run, Action.RESUME)
    if target == current:
        session.rollback()
        return run, False
    if target.status in lifecycle.ACTIVE and current.status not in lifecycle.ACTIVE:
        check_active_cap(session=session, owner=owner, max_active_runs=max_active_runs)
    _move(session, run, current, target)
    return run, target.status == Status.QUEUED


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
    weights = _checkpoint_weights(session, checkpoint_id)
    if weights is None:  # pragma: no cover - written with the checkpoint
        raise NotFoundError("checkpoint", checkpoint_id)
    return checkpoint, decode_weights(weights)


def _checkpoint_weights(session: Session, checkpoint_id: str) -> bytes | memoryview | None:
    """The weights blob alone (not the training state next to it), read piece by piece."""
    return read_blob(session, CheckpointState.weights, CheckpointState.checkpoint_id, checkpoint_id)


def get_weights(*, session: Session, owner: str, run_id: str) -> tuple[int, list[dict[str, Any]]]:
    """Return ``(epoch, layers)``: a finished run's final weights, else its latest checkpoint.

    Raises
    ------
    ConflictError
        When the run has neither (queued, or failed before its first checkpoint).
    """
    run = get_run(session=session, owner=owner, run_id=run_id)
    if run.status in lifecycle.TERMINAL:
        final = read_blob(session, RunArrays.final_weights, RunArrays.run_id, run_id)
        if final:
            final_epoch = session.exec(
                select(RunArrays.final_epoch).where(RunArrays.run_id == run_id)
            ).first()
            return int(final_epoch or run.epoch), decode_weights(final)
    latest = latest_checkpoint(session, run_id)
    if latest is None:
        raise ConflictError(
            f"run {run_id!r} ({run.status}) has no weights yet: no checkpoint so far"
        )
    weights = _checkpoint_weights(session, latest.id)
    if weights is None:  # pragma: no cover - written with the checkpoint
        raise ConflictError(f"run {run_id!r} has no weights yet")
    return latest.epoch, decode_weights(weights)
