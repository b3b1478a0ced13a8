"""Request and response bodies of ``/v1/sweeps`` (hyperparameter sweeps, issue 13).

A parameter is a dotted path into the sweep's run ``config`` (``optimizer.learning_rate``,
``batch_size``, ``lr_schedule.gamma``); list items are addressed by their index
(``validation.fraction``, ``metrics.0``). The value ranges are checked by
:mod:`app.services.sweep_space`, the paths by validating the run config with each
bound (a wrong path is a 422 at ``body.parameters.<path>``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.api.schemas import (
    Metadata,
    NetworkCreate,
    Number,
    ObjectName,
    RequestModel,
    Tags,
)
from engine.fields import MAX_SEED

MAX_TRIALS = 1000
MAX_PARALLELISM = 64
MAX_PARAMETERS = 20
MAX_CHOICES = 100

SweepMethod = Literal["grid", "random", "tpe"]
SweepStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
TrialStatus = Literal["queued", "running", "paused", "succeeded", "failed", "cancelled", "pruned"]
Scalar = str | bool | int | float | None
DISTRIBUTIONS = ("log_uniform", "uniform", "int_uniform", "choice")


class ParameterSpec(RequestModel):
    """Exactly one distribution: ``{"log_uniform": [lo, hi]}``, ``{"uniform": [lo, hi]}``,
    ``{"int_uniform": [lo, hi]}`` (both ends included) or ``{"choice": [v, ...]}``."""

    log_uniform: list[Number] | None = Field(default=None, min_length=2, max_length=2)
    uniform: list[Number] | None = Field(default=None, min_length=2, max_length=2)
    int_uniform: list[int] | None = Field(default=None, min_length=2, max_length=2)
    choice: list[Scalar] | None = Field(default=None, max_length=MAX_CHOICES)

    @model_validator(mode="after")
    def _one_distribution(self) -> ParameterSpec:
        given = [name for name in DISTRIBUTIONS if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of log_uniform, uniform, int_uniform or choice"
                + (f" (got {', '.join(given)})" if given else "")
            )
        return self

    @property
    def kind(self) -> str:
        """The distribution's name."""
        return next(name for name in DISTRIBUTIONS if getattr(self, name) is not None)

    @property
    def values(self) -> list[Any]:
        """Its bounds, or its choices."""
        values: list[Any] = getattr(self, self.kind)
        return values


class ObjectiveSpec(RequestModel):
    """What the sweep optimizes: a run's final ``loss``, ``val_loss`` or a recorded metric."""

    metric: str = Field(
        default="val_loss",
        min_length=1,
        max_length=64,
        description="loss, val_loss or a recorded metric (accuracy, val_accuracy, ...).",
    )
    mode: Literal["min", "max"] = "min"


class AshaSpec(RequestModel):
    """Asynchronous successive halving: rungs at min_epochs * reduction_factor**k."""

    type: Literal["asha"]
    min_epochs: int = Field(ge=1, le=1_000_000)
    reduction_factor: int = Field(default=3, ge=2, le=100)


class SweepCreate(RequestModel):
    """A hyperparameter sweep: trials are ordinary runs of ``config`` with the parameters set."""

    model_config = ConfigDict(
        extra="forbid",
        allow_inf_nan=False,
        json_schema_extra={
            "examples": [
                {
                    "name": "xor-lr",
                    "network_id": "paste the id returned by POST /v1/networks",
                    "dataset_id": "paste the id returned by POST /v1/datasets",
                    "config": {"loss": "mse", "optimizer": {"name": "sgd"}, "epochs": 200},
                    "parameters": {
                        "optimizer.learning_rate": {"log_uniform": [0.01, 1.0]},
                        "optimizer.momentum": {"choice": [0.0, 0.9]},
                    },
                    "method": "random",
                    "max_trials": 8,
                    "parallelism": 2,
                    "objective": {"metric": "loss", "mode": "min"},
                    "seed": 1,
                }
            ]
        },
    )

    name: ObjectName | None = None
    tags: Tags = Field(default_factory=list)
    metadata: Metadata = Field(default_factory=dict)
    network: NetworkCreate | None = Field(
        default=None, description="A network spec as in POST /v1/networks (or network_id)."
    )
    network_id: str | None = Field(default=None, max_length=64)
    dataset_id: str = Field(max_length=64)
    config: dict[str, Any] = Field(
        default_factory=dict,
        description="A run config (POST /v1/runs body) without network_id and dataset_id.",
    )
    parameters: dict[str, ParameterSpec] = Field(
        min_length=1,
        max_length=MAX_PARAMETERS,
        description="Dotted path into config -> its distribution.",
    )
    method: SweepMethod = "random"
    max_trials: int = Field(default=10, ge=1, le=MAX_TRIALS)
    parallelism: int = Field(default=2, ge=1, le=MAX_PARALLELISM)
    objective: ObjectiveSpec = Field(default_factory=ObjectiveSpec)
    seed: int | None = Field(default=None, ge=0, le=MAX_SEED, description="Missing: drawn.")
    early_stopping: AshaSpec | None = None
    notify_url: str | None = Field(
        default=None,
        max_length=2048,
        description="An http(s) URL to POST the sweep object to when the sweep succeeds, "
        "fails or is cancelled, signed like run webhooks (Backprop-Event: sweep.<status>).",
    )


class TrialPublic(BaseModel):
    """One trial of a sweep (a run)."""

    number: int
    run_id: str | None
    parameters: dict[str, Any]
    status: TrialStatus
    objective: float | None
    epoch: int = Field(description="Epochs done.")
    rung: int | None = Field(description="The last ASHA rung reached, or null.")


class SweepPublic(BaseModel):
    """A sweep, its trials and its best trial."""

    id: str
    object: Literal["sweep"] = "sweep"
    status: SweepStatus
    name: str | None
    tags: list[str]
    metadata: dict[str, Any]
    method: SweepMethod
    max_trials: int
    parallelism: int
    objective: dict[str, Any]
    parameters: dict[str, Any]
    early_stopping: dict[str, Any] | None
    seed: int
    network_id: str
    dataset_id: str
    created_at: datetime
    updated_at: datetime
    trials: list[TrialPublic]
    best_trial: TrialPublic | None
    error: str | None = Field(
        default=None, description="Why a failed sweep stopped creating trials, if it did."
    )
    notify_url: str | None = None
