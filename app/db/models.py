"""SQLModel tables.

Large arrays live in side tables (``*_arrays``, ``checkpoint_state``,
``run_history_chunk``) so that listing networks, datasets, runs and checkpoints
never reads a blob. Every blob is :func:`engine.serialization.encode_arrays` or
:func:`engine.serialization.encode_state` output: explicit dtypes and shapes, no
pickle.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Index, LargeBinary
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

from app.jobs.lifecycle import Request


class UTCDateTime(TypeDecorator[datetime]):
    """Store naive UTC in the database, hand out timezone-aware UTC datetimes."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


DEFAULT_OWNER = "default"
"""The tenant of every row when no API keys are configured (and of rows made before tenants)."""
OWNER_DOC = "The tenant (app.api.deps.tenant_id of its API key, or 'default'); never the key."


def utcnow() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.now(UTC)


def _tags_field() -> Any:
    return Field(
        default_factory=list,
        sa_type=JSON,
        sa_column_kwargs={"server_default": "[]"},
        description="The object's tags (also in its *_tag table, which the list filters use).",
    )


def _meta_field() -> Any:
    return Field(
        default_factory=dict,
        sa_type=JSON,
        sa_column_kwargs={"server_default": "{}"},
        description="The user's metadata object (the API's ``metadata``).",
    )


class Network(SQLModel, table=True):
    """A network specification (the normalized engine spec) and its metadata."""

    __tablename__ = "network"
    __table_args__ = (Index("ix_network_owner_id", "owner", "id"),)

    id: str = Field(primary_key=True, max_length=64)
    owner: str = Field(
        max_length=64, description=OWNER_DOC, sa_column_kwargs={"server_default": DEFAULT_OWNER}
    )
    name: str = Field(max_length=200)
    spec: dict[str, Any] = Field(sa_type=JSON)
    input_size: int
    output_size: int
    n_parameters: int
    created_at: datetime = Field(sa_type=UTCDateTime)
    tags: list[str] = _tags_field()
    meta: dict[str, Any] = _meta_field()


class NetworkArrays(SQLModel, table=True):
    """The initial weights of a network (encode_arrays of its layers)."""

    __tablename__ = "network_arrays"

    network_id: str = Field(
        primary_key=True, foreign_key="network.id", ondelete="CASCADE", max_length=64
    )
    weights: bytes = Field(sa_type=LargeBinary)


class Dataset(SQLModel, table=True):
    """A dataset's metadata; its arrays live in :class:`DatasetArrays`."""

    __tablename__ = "dataset"
    __table_args__ = (Index("ix_dataset_owner_id", "owner", "id"),)

    id: str = Field(primary_key=True, max_length=64)
    owner: str = Field(
        max_length=64, description=OWNER_DOC, sa_column_kwargs={"server_default": DEFAULT_OWNER}
    )
    name: str = Field(max_length=200)
    n_samples: int
    n_features: int
    n_targets: int
    target_type: str = Field(max_length=16)
    sha256: str = Field(max_length=64)
    created_at: datetime = Field(sa_type=UTCDateTime)
    stored_bytes: int = Field(
        default=0,
        sa_type=BigInteger,
        sa_column_kwargs={"server_default": "0"},
        description="Bytes of its stored arrays and summary (the storage quota's charge).",
    )
    feature_names: list[str] | None = Field(
        default=None, sa_type=JSON, description="None (datasets before 0006): x0, x1, ..."
    )
    target_names: list[str] | None = Field(
        default=None, sa_type=JSON, description="None (datasets before 0006): y0, y1, ..."
    )
    classes: list[str] | None = Field(
        default=None, sa_type=JSON, description="Class names of a categorical target."
    )
    transform: dict[str, Any] | None = Field(
        default=None, sa_type=JSON, description="app.datasets.transforms document, None = identity."
    )
    tags: list[str] = _tags_field()
    meta: dict[str, Any] = _meta_field()


class DatasetArrays(SQLModel, table=True):
    """``X`` and ``y`` of a dataset as one encode_arrays blob."""

    __tablename__ = "dataset_arrays"

    dataset_id: str = Field(
        primary_key=True, foreign_key="dataset.id", ondelete="CASCADE", max_length=64
    )
    data: bytes = Field(sa_type=LargeBinary)


class Run(SQLModel, table=True):
    """A training run: its config, progress, outcome and lease."""

    __tablename__ = "run"
    __table_args__ = (
        Index("ix_run_owner_id", "owner", "id"),
        Index("ix_run_owner_status", "owner", "status"),
        # The fair queue (execution.next_queued_run_id): each tenant's oldest queued
        # run, and each tenant's latest start.
        Index("ix_run_status_owner_id", "status", "owner", "id"),
        Index("ix_run_owner_started_at", "owner", "started_at"),
        Index("ix_run_owner_sweep_id", "owner", "sweep_id"),
        Index("ux_run_sweep_trial", "sweep_id", "sweep_trial", unique=True),
    )

    id: str = Field(primary_key=True, max_length=64)
    owner: str = Field(
        max_length=64, description=OWNER_DOC, sa_column_kwargs={"server_default": DEFAULT_OWNER}
    )
    status: str = Field(index=True, max_length=16)
    network_id: str = Field(foreign_key="network.id", ondelete="CASCADE", index=True, max_length=64)
    dataset_id: str | None = Field(
        default=None, foreign_key="dataset.id", ondelete="SET NULL", index=True, max_length=64
    )
    validation_dataset_id: str | None = Field(
        default=None, foreign_key="dataset.id", ondelete="SET NULL", index=True, max_length=64
    )
    config: dict[str, Any] = Field(sa_type=JSON)
    transform: dict[str, Any] | None = Field(
        default=None, sa_type=JSON, description="Its dataset's transform when it was created."
    )
    epochs: int
    epoch: int = 0
    loss: float | None = None
    val_loss: float | None = None
    best_loss: float | None = None
    metrics: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    stop_reason: str | None = Field(default=None, max_length=32)
    error: dict[str, Any] | None = Field(default=None, sa_type=JSON)
    created_at: datetime = Field(sa_type=UTCDateTime)
    started_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    lease_owner: str | None = Field(default=None, max_length=128)
    lease_supervisor: str | None = Field(
        default=None,
        max_length=128,
        description="The supervisor (Supervisor.id) of the lease holder; null when it has none.",
    )
    lease_expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    attempts: int = 0
    requested: str | None = Field(
        default=None,
        max_length=16,
        description="The pending request of a running run (app.jobs.lifecycle.Request), else null.",
    )
    name: str | None = Field(default=None, max_length=200)
    tags: list[str] = _tags_field()
    meta: dict[str, Any] = _meta_field()
    sweep_id: str | None = Field(
        default=None, max_length=64, description="The sweep the run is a trial of."
    )
    sweep_trial: int | None = Field(
        default=None, description="Its trial number in the sweep (unique per sweep)."
    )
    pause_at_epoch: int | None = Field(
        default=None,
        description="The worker pauses the run at this epoch's end (a sweep's ASHA rung).",
    )
    best_epoch: int | None = Field(
        default=None, description="The epoch of best_loss (the monitored value's best)."
    )

    @property
    def cancel_requested(self) -> bool:
        """A cancel is pending (the worker has not stopped yet)."""
        return self.requested == Request.CANCEL

    @property
    def pause_requested(self) -> bool:
        """A pause is pending (the worker has not stopped yet)."""
        return self.requested == Request.PAUSE


class Supervisor(SQLModel, table=True):
    """A process that supervises workers: ``backprop serve`` (its local pool) or the main
    process of ``backprop worker`` (its Celery pool processes).

    It beats every few seconds; ``beat_at`` and ``expires_at`` are the database's
    clock. When a run's lease expires, the sweep counts the attempt only if the
    holder's supervisor beat after the lease's expiry (the worker died while its
    supervisor lived: the run's own fault), not when the supervisor died too.
    ``beat_at`` stays put for a lease after the supervisor's own outage of the
    database (its workers could not renew their leases either).
    """

    __tablename__ = "supervisor"

    id: str = Field(primary_key=True, max_length=128)
    kind: str = Field(max_length=16, description="serve or worker.")
    host: str = Field(max_length=255)
    pid: int
    started_at: datetime = Field(sa_type=UTCDateTime)
    beat_at: datetime = Field(sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime, index=True)


class DatasetSummary(SQLModel, table=True):
    """What run creation checks a dataset against (:mod:`app.datasets.summary`).

    ``summary`` is :meth:`DataSummary.to_json`; ``label_records`` the
    :class:`LabelRecords` of a one-column whole-number ``y``, read only when a
    label is out of range. Written with the dataset (or, for datasets stored
    before migration 0005, the first time a run uses them).
    """

    __tablename__ = "dataset_summary"

    dataset_id: str = Field(
        primary_key=True, foreign_key="dataset.id", ondelete="CASCADE", max_length=64
    )
    summary: dict[str, Any] = Field(sa_type=JSON)
    label_records: bytes | None = Field(default=None, sa_type=LargeBinary)


class RunStorage(SQLModel, table=True):
    """A run's charge against its tenant's storage quota (:mod:`app.services.storage`).

    ``reserved_bytes`` is the most the run can store, reserved when it is created;
    ``stored_bytes`` what it did store, set once it is finished. A run counts
    ``stored_bytes`` when set, else ``reserved_bytes`` (None for runs created before
    migration 0005 until it is computed).
    """

    __tablename__ = "run_storage"
    __table_args__ = (
        Index("ix_run_storage_owner_bytes", "owner", "stored_bytes", "reserved_bytes"),
    )

    run_id: str = Field(primary_key=True, foreign_key="run.id", ondelete="CASCADE", max_length=64)
    owner: str = Field(max_length=64, description=OWNER_DOC)
    reserved_bytes: int | None = Field(default=None, sa_type=BigInteger)
    stored_bytes: int | None = Field(default=None, sa_type=BigInteger)


class RunArrays(SQLModel, table=True):
    """Weights a run starts from (``init_from``) and the weights it finished with."""

    __tablename__ = "run_arrays"

    run_id: str = Field(primary_key=True, foreign_key="run.id", ondelete="CASCADE", max_length=64)
    init_weights: bytes | None = Field(default=None, sa_type=LargeBinary)
    final_weights: bytes | None = Field(default=None, sa_type=LargeBinary)
    final_epoch: int | None = None


class Checkpoint(SQLModel, table=True):
    """A point a run can continue from exactly; the state is in :class:`CheckpointState`."""

    __tablename__ = "checkpoint"
    __table_args__ = (Index("ix_checkpoint_run_id_epoch", "run_id", "epoch"),)

    id: str = Field(primary_key=True, max_length=64)
    run_id: str = Field(foreign_key="run.id", ondelete="CASCADE", max_length=64)
    epoch: int
    kind: str = Field(max_length=16)
    loss: float | None = None
    val_loss: float | None = None
    created_at: datetime = Field(sa_type=UTCDateTime)


class CheckpointState(SQLModel, table=True):
    """The engine training state (encode_state) and the weights (encode_arrays)."""

    __tablename__ = "checkpoint_state"

    checkpoint_id: str = Field(
        primary_key=True, foreign_key="checkpoint.id", ondelete="CASCADE", max_length=64
    )
    state: bytes = Field(sa_type=LargeBinary)
    weights: bytes = Field(sa_type=LargeBinary)


class RunHistoryChunk(SQLModel, table=True):
    """Recorded epochs ``first_epoch..last_epoch`` of a run, one batched write.

    ``data`` is encode_arrays of equal-length columns: ``epoch`` (int64), ``loss``,
    ``val_loss`` and any metrics (float64, NaN for missing values).
    """

    __tablename__ = "run_history_chunk"

    run_id: str = Field(primary_key=True, foreign_key="run.id", ondelete="CASCADE", max_length=64)
    first_epoch: int = Field(primary_key=True)
    last_epoch: int
    n_points: int
    data: bytes = Field(sa_type=LargeBinary)


class IdempotencyKey(SQLModel, table=True):
    """A POST's ``Idempotency-Key`` and the response to replay for it (:mod:`app.edge.idempotency`).

    ``state`` is ``in_flight`` while the first request runs (``locked_until`` bounds
    how long), then ``done`` with the stored response. ``request_hash`` is the
    SHA-256 of the method, path, query, media type and body
    (:mod:`app.edge.request_hash`).
    """

    __tablename__ = "idempotency_key"

    owner: str = Field(primary_key=True, max_length=64, description=OWNER_DOC)
    key: str = Field(primary_key=True, max_length=255)
    request_hash: str = Field(max_length=64)
    state: str = Field(max_length=16)
    status_code: int | None = None
    response_headers: list[Any] | None = Field(default=None, sa_type=JSON)
    response_body: bytes | None = Field(default=None, sa_type=LargeBinary)
    created_at: datetime = Field(sa_type=UTCDateTime)
    locked_until: datetime = Field(sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime, index=True)


class WebhookSecret(SQLModel, table=True):
    """A tenant's webhook signing secret (made on first use; rotated on request)."""

    __tablename__ = "webhook_secret"

    owner: str = Field(primary_key=True, max_length=64, description=OWNER_DOC)
    secret: str = Field(max_length=128)
    created_at: datetime = Field(sa_type=UTCDateTime)


class RunNotification(SQLModel, table=True):
    """A webhook owed for a run's terminal status (:mod:`app.jobs.notifier`).

    Written in the transaction that made the run terminal, so it is never lost;
    ``pending`` until a 2xx answer (``delivered``) or until
    ``BACKPROP_WEBHOOK_RETRY_SECONDS`` after ``created_at`` (``failed``). ``body`` is the run object, frozen at the first attempt
    so every retry sends the same bytes; ``attempt_log`` lists each attempt.
    """

    __tablename__ = "run_notification"
    __table_args__ = (Index("ix_run_notification_status_next", "status", "next_attempt_at"),)

    id: str = Field(primary_key=True, max_length=64)
    run_id: str | None = Field(
        default=None, foreign_key="run.id", ondelete="CASCADE", index=True, max_length=64
    )
    sweep_id: str | None = Field(
        default=None,
        foreign_key="sweep.id",
        ondelete="CASCADE",
        index=True,
        max_length=64,
        description="Set instead of run_id for a sweep's webhook (its terminal status).",
    )
    owner: str = Field(max_length=64, description=OWNER_DOC)
    event: str = Field(max_length=32)
    url: str = Field(max_length=2048)
    status: str = Field(max_length=16)
    body: bytes | None = Field(default=None, sa_type=LargeBinary)
    attempts: int = 0
    attempt_log: list[Any] = Field(default_factory=list, sa_type=JSON)
    created_at: datetime = Field(sa_type=UTCDateTime)
    next_attempt_at: datetime = Field(sa_type=UTCDateTime)
    delivered_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class NetworkTag(SQLModel, table=True):
    """One tag of a network: what ``GET /v1/networks?tag=`` filters on."""

    __tablename__ = "network_tag"
    __table_args__ = (Index("ix_network_tag_owner_tag", "owner", "tag", "network_id"),)

    network_id: str = Field(
        primary_key=True, foreign_key="network.id", ondelete="CASCADE", max_length=64
    )
    tag: str = Field(primary_key=True, max_length=64)
    owner: str = Field(max_length=64, description=OWNER_DOC)


class DatasetTag(SQLModel, table=True):
    """One tag of a dataset: what ``GET /v1/datasets?tag=`` filters on."""

    __tablename__ = "dataset_tag"
    __table_args__ = (Index("ix_dataset_tag_owner_tag", "owner", "tag", "dataset_id"),)

    dataset_id: str = Field(
        primary_key=True, foreign_key="dataset.id", ondelete="CASCADE", max_length=64
    )
    tag: str = Field(primary_key=True, max_length=64)
    owner: str = Field(max_length=64, description=OWNER_DOC)


class RunTag(SQLModel, table=True):
    """One tag of a run: what ``GET /v1/runs?tag=`` filters on."""

    __tablename__ = "run_tag"
    __table_args__ = (Index("ix_run_tag_owner_tag", "owner", "tag", "run_id"),)

    run_id: str = Field(primary_key=True, foreign_key="run.id", ondelete="CASCADE", max_length=64)
    tag: str = Field(primary_key=True, max_length=64)
    owner: str = Field(max_length=64, description=OWNER_DOC)


class Sweep(SQLModel, table=True):
    """A hyperparameter sweep (:mod:`app.services.sweeps`); its trials are runs with its
    ``sweep_id`` and their ``sweep_trial`` number.

    ``spec`` is the validated request (config, parameters, method, objective, ...);
    ``planned`` the parameters of every trial drawn so far, by trial number (grid and
    random: all of them at creation; TPE: one more each time a trial is created).
    """

    __tablename__ = "sweep"
    __table_args__ = (Index("ix_sweep_owner_id", "owner", "id"), Index("ix_sweep_status", "status"))

    id: str = Field(primary_key=True, max_length=64)
    owner: str = Field(max_length=64, description=OWNER_DOC)
    status: str = Field(max_length=16)
    name: str | None = Field(default=None, max_length=200)
    network_id: str = Field(foreign_key="network.id", ondelete="CASCADE", max_length=64)
    dataset_id: str = Field(foreign_key="dataset.id", ondelete="CASCADE", max_length=64)
    spec: dict[str, Any] = Field(sa_type=JSON)
    planned: list[Any] = Field(default_factory=list, sa_type=JSON)
    best_trial: int | None = Field(default=None, description="The best finished trial's number.")
    trials_created: int = Field(
        default=0, description="Trials created so far: the next trial's number (never reused)."
    )
    created_at: datetime = Field(sa_type=UTCDateTime)
    updated_at: datetime = Field(sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    tags: list[str] = _tags_field()
    meta: dict[str, Any] = _meta_field()


class SweepRung(SQLModel, table=True):
    """A trial's objective at an ASHA rung and the decision taken there (written once)."""

    __tablename__ = "sweep_rung"

    sweep_id: str = Field(
        primary_key=True, foreign_key="sweep.id", ondelete="CASCADE", max_length=64
    )
    trial: int = Field(primary_key=True)
    rung: int = Field(primary_key=True)
    epoch: int
    value: float | None = None
    decision: str = Field(max_length=16, description="promote or prune.")
    decided_at: datetime = Field(sa_type=UTCDateTime)


class SweepTag(SQLModel, table=True):
    """One tag of a sweep: what ``GET /v1/sweeps?tag=`` filters on."""

    __tablename__ = "sweep_tag"
    __table_args__ = (Index("ix_sweep_tag_owner_tag", "owner", "tag", "sweep_id"),)

    sweep_id: str = Field(
        primary_key=True, foreign_key="sweep.id", ondelete="CASCADE", max_length=64
    )
    tag: str = Field(primary_key=True, max_length=64)
    owner: str = Field(max_length=64, description=OWNER_DOC)
