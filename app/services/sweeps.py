"""Sweeps as seen by the API: create (fully validated), read, list, cancel.

The sweep row holds the validated request (``spec``) and the parameters of every
trial drawn so far (``planned``); its trials are runs (``run.sweep_id``,
``run.sweep_trial``) that :mod:`app.services.sweep_driver` creates. A sweep is
validated completely before it is stored: its config with every bound and every
choice of each parameter goes through the same checks as ``POST /v1/runs``.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError
from sqlalchemy.orm import load_only
from sqlmodel import Session, col, select

from app.api.schemas import NetworkCreate, RunCreate
from app.api.sweep_schemas import ParameterSpec, SweepCreate
from app.db.ids import new_id
from app.db.models import Run, Sweep, SweepRung, utcnow
from app.errors import InvalidInputError, Loc, NotFoundError
from app.jobs import lifecycle
from app.services import labels, notifications, sweep_sampling, sweep_space
from app.services import networks as network_service
from app.services import runs as run_service
from app.services.pagination import PageResult, paginate
from app.webhooks.targets import TargetRefusedError, check_target

SEED_BITS = 32
ACTIVE = ("queued", "running")
"""Sweep statuses the driver works on."""
TERMINAL = ("succeeded", "failed", "cancelled")


def _fail(loc: Loc, msg: str) -> InvalidInputError:
    return InvalidInputError(loc, msg)


def _relocate(
    loc: Sequence[str | int], msg: str, params: dict[str, Any], inline_network: bool
) -> InvalidInputError:
    """An error of a trial's run config, located in the sweep request."""
    rest = tuple(loc[1:]) if loc[:1] == ("body",) else tuple(loc)
    for path, value in params.items():
        segments = tuple(sweep_space.check_path(path))
        size = min(len(segments), len(rest))
        if size and tuple(str(s) for s in segments[:size]) == tuple(str(s) for s in rest[:size]):
            return _fail(("body", "parameters", path), f"with {value!r}: {msg}")
    if rest[:1] == ("network_id",) and inline_network:
        return _fail(("body", "network"), msg)
    if rest[:1] in (("network_id",), ("dataset_id",)):
        return _fail(("body", *rest), msg)
    return _fail(("body", "config", *rest), msg)


def _run_in(config: dict[str, Any], network_id: str, dataset_id: str) -> RunCreate:
    return RunCreate.model_validate({**config, "network_id": network_id, "dataset_id": dataset_id})


def parameter_specs(sweep: Sweep) -> dict[str, ParameterSpec]:
    """The sweep's stored parameters as request models."""
    return {
        path: ParameterSpec.model_validate(spec) for path, spec in sweep.spec["parameters"].items()
    }


def rung_epochs(sweep: Sweep) -> list[int]:
    """The epochs of the sweep's ASHA rungs below its config's epochs (none without ASHA)."""
    asha = sweep.spec.get("early_stopping")
    if not asha:
        return []
    epochs = int(sweep.spec["epochs"])
    rungs, epoch = [], int(asha["min_epochs"])
    while epoch < epochs:
        rungs.append(epoch)
        epoch *= int(asha["reduction_factor"])
    return rungs


def first_rung(sweep: Sweep) -> int | None:
    """Where a new trial pauses first (ASHA), else None."""
    rungs = rung_epochs(sweep)
    return rungs[0] if rungs else None


def trial_run_in(sweep: Sweep, number: int, network_id: str) -> RunCreate:
    """The ``POST /v1/runs`` body of trial ``number`` (its parameters set), on
    ``network_id`` (:func:`trial_network_id`)."""
    config_params, _ = sweep_space.split(sweep.planned[number])
    config = sweep_space.apply(sweep.spec["config"], config_params)
    run_in = _run_in(config, network_id, sweep.dataset_id)
    name = f"{sweep.name or sweep.id} #{number}"
    seed = run_in.seed
    if seed is None:  # reproducible trials: the run seed follows from the sweep's
        seed = sweep_sampling.seed_for(int(sweep.spec["seed"]), number) % 2**SEED_BITS
    return run_in.model_copy(update={"name": name[:200], "seed": seed})


def network_request(
    session: Session, owner: str, network_id: str, name: str, spec_params: dict[str, Any]
) -> NetworkCreate:
    """The ``POST /v1/networks`` body of the sweep's network with ``spec_params`` set (its
    init seed kept, so trials differ by their parameters only).

    Raises
    ------
    pydantic.ValidationError
        When the parameters make a spec that is not a network.
    """
    base = network_service.get_network(session=session, owner=owner, network_id=network_id).spec
    spec: dict[str, Any] = {
        key: base[key] for key in ("input_size", "layers", "init") if key in base
    }
    spec = sweep_space.apply(spec, spec_params)
    return NetworkCreate.model_validate({**spec, "name": name[:200]})


def trial_network_id(
    session: Session, sweep: Sweep, number: int, limits: run_service.RunLimits
) -> str:
    """The network trial ``number`` trains: the sweep's, or (when it sets network spec
    parameters) one of its own, added to ``session`` without a commit.

    Raises
    ------
    InvalidInputError
        When the trial's network is not valid (checked for every bound at creation).
    """
    _, spec_params = sweep_space.split(sweep.planned[number])
    if not spec_params:
        return sweep.network_id
    name = f"{sweep.name or sweep.id} #{number}"
    try:
        network_in = network_request(session, sweep.owner, sweep.network_id, name, spec_params)
    except ValidationError as exc:
        raise InvalidInputError(("body", "parameters"), exc.errors()[0]["msg"]) from None
    network = network_service.create_network(
        session=session,
        owner=sweep.owner,
        network_in=network_in,
        max_parameters=limits.max_network_parameters,
        commit=False,
    )
    return network.id


def _check_config(
    session: Session,
    owner: str,
    sweep_in: SweepCreate,
    network_id: str,
    params: dict[str, Any],
    limits: run_service.RunLimits,
) -> dict[str, Any]:
    """The normalized run config of ``params`` set into the sweep's config (and network
    spec, on a network checked and dropped again); 422 located."""
    config_params, spec_params = sweep_space.split(params)
    if spec_params:
        nested = session.begin_nested()
        try:
            network_id = _check_network(session, owner, network_id, spec_params, limits)
            return _check_run(session, owner, sweep_in, network_id, params, limits)
        finally:
            nested.rollback()
    return _check_run(session, owner, sweep_in, network_id, config_params, limits)


def _check_network(
    session: Session,
    owner: str,
    network_id: str,
    spec_params: dict[str, Any],
    limits: run_service.RunLimits,
) -> str:
    """A network with ``spec_params`` set (added in the caller's savepoint); 422 located."""
    try:
        network_in = network_request(session, owner, network_id, "sweep check", spec_params)
        network = network_service.create_network(
            session=session,
            owner=owner,
            network_in=network_in,
            max_parameters=limits.max_network_parameters,
            commit=False,
        )
    except ValidationError as exc:
        error = exc.errors()[0]
        raise _relocate(error["loc"], error["msg"], spec_params, False) from None
    except InvalidInputError as exc:
        if tuple(exc.loc[:2]) == ("body", "parameters"):
            raise  # a path that does not fit the spec, located already
        raise _relocate(exc.loc, exc.msg, spec_params, False) from None
    return network.id


def _check_run(
    session: Session,
    owner: str,
    sweep_in: SweepCreate,
    network_id: str,
    params: dict[str, Any],
    limits: run_service.RunLimits,
) -> dict[str, Any]:
    inline = sweep_in.network is not None
    config_params, _ = sweep_space.split(params)
    try:
        config = sweep_space.apply(sweep_in.config, config_params)
        run_in = _run_in(config, network_id, sweep_in.dataset_id)
    except ValidationError as exc:
        error = exc.errors()[0]
        raise _relocate(error["loc"], error["msg"], params, inline) from None
    try:
        return run_service.validated_config(
            session=session, owner=owner, run_in=run_in, limits=limits
        )
    except InvalidInputError as exc:
        raise _relocate(exc.loc, exc.msg, params, inline) from None


def _check_notify_url(sweep_in: SweepCreate, limits: run_service.RunLimits) -> None:
    if sweep_in.notify_url is None:
        return
    try:
        check_target(sweep_in.notify_url, allow_private=limits.webhook_allow_private)
    except TargetRefusedError as exc:
        raise _fail(("body", "notify_url"), str(exc)) from exc


def _check_request(sweep_in: SweepCreate, limits: run_service.RunLimits) -> None:
    _check_notify_url(sweep_in, limits)
    if (sweep_in.network is None) == (sweep_in.network_id is None):
        raise _fail(("body", "network_id"), "give either network (a spec) or network_id")
    for key in ("network_id", "dataset_id"):
        if key in sweep_in.config:
            raise _fail(("body", "config", key), f"the sweep's own {key} is used; remove it")
    if sweep_in.parallelism > limits.max_active_runs:
        raise _fail(
            ("body", "parallelism"),
            f"{sweep_in.parallelism}; at most {limits.max_active_runs} "
            "(BACKPROP_MAX_ACTIVE_RUNS), the runs a tenant may have queued or running",
        )


def _check_objective(sweep_in: SweepCreate, config: dict[str, Any]) -> None:
    metrics = list(config.get("metrics") or [])
    allowed = ["loss", *metrics]
    if config.get("validation"):
        allowed += ["val_loss", *(f"val_{name}" for name in metrics)]
    if sweep_in.objective.metric not in allowed:
        raise _fail(
            ("body", "objective", "metric"),
            f"{sweep_in.objective.metric!r} is not recorded by these runs; "
            f"one of {', '.join(allowed)}",
        )


def _check_asha(sweep_in: SweepCreate, config: dict[str, Any]) -> None:
    asha = sweep_in.early_stopping
    if asha is None:
        return
    if "epochs" in sweep_in.parameters:
        raise _fail(("body", "parameters", "epochs"), "ASHA decides how long each trial trains")
    if asha.min_epochs >= int(config["epochs"]):
        raise _fail(
            ("body", "early_stopping", "min_epochs"),
            f"{asha.min_epochs}; must be below the config's epochs ({config['epochs']})",
        )


def _inline_network(
    session: Session, owner: str, network_in: NetworkCreate, max_parameters: int
) -> str:
    """Add (not commit) the sweep's own network; its errors located at ``body.network``."""
    try:
        network = network_service.create_network(
            session=session,
            owner=owner,
            network_in=network_in,
            max_parameters=max_parameters,
            commit=False,
        )
    except InvalidInputError as exc:
        raise _fail(("body", "network", *exc.loc[1:]), exc.msg) from None
    return network.id


def create_sweep(
    *,
    session: Session,
    owner: str,
    sweep_in: SweepCreate,
    limits: run_service.RunLimits,
    max_network_parameters: int,
) -> Sweep:
    """Validate ``sweep_in`` completely and store it as ``queued`` (with its inline network).

    Nothing is written when a check fails: the inline network is only flushed in this
    transaction while the trial configs are checked against it.

    Raises
    ------
    InvalidInputError
        A bad path, range, choice, config, objective or limit, located in the request.
    NotFoundError
        Unknown network or dataset (or another tenant's).
    """
    _check_request(sweep_in, limits)
    space = sweep_space.distributions(sweep_in.parameters)
    seed = sweep_in.seed if sweep_in.seed is not None else secrets.randbits(SEED_BITS)
    planned = (
        []
        if sweep_in.method == "tpe"
        else sweep_sampling.plan(sweep_in.method, space, sweep_in.max_trials, seed)
    )
    try:
        if sweep_in.network is not None:
            network_id = _inline_network(session, owner, sweep_in.network, max_network_parameters)
        else:
            network_id = str(sweep_in.network_id)
        configs = [
            _check_config(session, owner, sweep_in, network_id, params, limits)
            for params in sweep_space.corners(space)
        ]
        _check_objective(sweep_in, configs[0])
        _check_asha(sweep_in, configs[0])
    except (InvalidInputError, NotFoundError):
        session.rollback()
        raise
    now = utcnow()
    sweep = Sweep(
        id=new_id("sweep"),
        owner=owner,
        status="queued",
        name=sweep_in.name,
        network_id=network_id,
        dataset_id=sweep_in.dataset_id,
        spec={
            "config": sweep_in.config,
            "parameters": {
                path: spec.model_dump(exclude_none=True)
                for path, spec in sweep_in.parameters.items()
            },
            "method": sweep_in.method,
            "max_trials": sweep_in.max_trials,
            "parallelism": sweep_in.parallelism,
            "objective": sweep_in.objective.model_dump(),
            "seed": seed,
            "epochs": int(configs[0]["epochs"]),
            "early_stopping": (
                sweep_in.early_stopping.model_dump() if sweep_in.early_stopping else None
            ),
            "notify_url": sweep_in.notify_url,
        },
        planned=planned,
        created_at=now,
        updated_at=now,
        tags=list(sweep_in.tags),
        meta=dict(sweep_in.metadata),
    )
    session.add(sweep)
    labels.add_tags(session, sweep, sweep.tags)
    session.commit()
    return sweep


def get_sweep(*, session: Session, owner: str, sweep_id: str) -> Sweep:
    """Return ``owner``'s sweep or raise :class:`NotFoundError` (also for another tenant's)."""
    sweep = session.get(Sweep, sweep_id)
    if sweep is None or sweep.owner != owner:
        raise NotFoundError("sweep", sweep_id)
    return sweep


def list_sweeps(
    *,
    session: Session,
    owner: str,
    limit: int,
    after: str | None,
    status: str | None = None,
    filters: labels.ListFilters | None = None,
) -> PageResult[Sweep]:
    """One page of ``owner``'s sweeps, newest first, optionally filtered."""
    statement = select(Sweep).where(Sweep.owner == owner)
    statement = labels.filtered(statement, Sweep, owner, filters or labels.ListFilters())
    if status is not None:
        statement = statement.where(Sweep.status == status)
    return paginate(
        session=session, statement=statement, id_column=Sweep.id, limit=limit, after=after
    )


TRIAL_COLUMNS = (
    Run.id,
    Run.owner,
    Run.sweep_trial,
    Run.status,
    Run.epoch,
    Run.loss,
    Run.val_loss,
    Run.metrics,
    Run.pause_at_epoch,
)
"""What a trial view and the driver read of a trial's run (not its config): each step
reads every trial, so the rest is loaded only if touched."""


def trial_runs(session: Session, sweep_id: str) -> list[Run]:
    """The sweep's trial runs by trial number (:data:`TRIAL_COLUMNS` loaded)."""
    statement = (
        select(Run)
        .where(Run.sweep_id == sweep_id)
        .options(load_only(*TRIAL_COLUMNS))  # type: ignore[arg-type]
        .order_by(col(Run.sweep_trial))
    )
    return list(session.exec(statement))


def rungs(session: Session, sweep_id: str) -> list[SweepRung]:
    """The sweep's ASHA decisions by trial and rung."""
    statement = (
        select(SweepRung)
        .where(SweepRung.sweep_id == sweep_id)
        .order_by(col(SweepRung.trial), col(SweepRung.rung))
    )
    return list(session.exec(statement))


def cancel_sweep(*, session: Session, owner: str, sweep_id: str) -> Sweep:
    """Cancel a sweep and its queued, running and paused trials (idempotent).

    The sweep is marked cancelled first (the driver creates no more trials), then each
    unfinished trial is cancelled like ``POST /v1/runs/{id}/cancel`` (a running one at its
    next epoch boundary). A finished sweep is returned unchanged.

    """
    sweep = get_sweep(session=session, owner=owner, sweep_id=sweep_id)
    session.refresh(sweep, with_for_update=True)
    if sweep.status in ("succeeded", "failed"):
        session.rollback()
        return sweep
    if sweep.status != "cancelled":
        sweep.status = "cancelled"
        sweep.updated_at = sweep.finished_at = utcnow()
        session.add(sweep)
        notifications.enqueue_sweep(session, sweep)
    session.commit()
    unfinished = [
        run.id for run in trial_runs(session, sweep_id) if run.status in lifecycle.UNFINISHED
    ]
    session.rollback()
    for run_id in unfinished:
        run_service.cancel_run(session=session, owner=owner, run_id=run_id)
    session.refresh(sweep)
    return sweep
