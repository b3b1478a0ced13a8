"""Request and response bodies of the HTTP API.

Request models forbid unknown fields (a typo is a 422, not a silently ignored
setting) and carry examples that together run the XOR walkthrough from the docs
page. Value checks that the engine owns (activation names, optimizer settings,
shapes) are left to the engine so that there is one source of truth; its
:class:`engine.ConfigError` becomes the same 422 shape.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    RootModel,
    StringConstraints,
    Tag,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
)

from engine.fields import MAX_SEED

Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]
"""A finite JSON number (booleans and numeric strings are rejected)."""

MAX_EPOCHS = 1_000_000_000
RunStatus = Literal["queued", "running", "paused", "succeeded", "failed", "cancelled"]
"""The contract's statuses plus ``paused`` (issue 6): queued -> running -> paused ->
queued -> running ... ; paused is not terminal (``POST /v1/runs/{id}/resume``)."""

XOR_X: list[Any] = [[0, 0], [0, 1], [1, 0], [1, 1]]
XOR_Y: list[Any] = [[0], [1], [1], [0]]

T = TypeVar("T")


class RequestModel(BaseModel):
    """Base of request bodies: unknown fields and non-finite numbers are errors."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


# --------------------------------------------------------------------------- labels

MAX_TAGS = 20
MAX_TAG_LENGTH = 64
MAX_METADATA_BYTES = 16_384
TAG_PATTERN = r"^[^\s,\x00-\x1f\x7f](?:[^,\x00-\x1f\x7f]*[^\s,\x00-\x1f\x7f])?$"
"""A tag: no commas, no control characters, no leading or trailing whitespace."""


def _unique_tags(tags: list[str]) -> list[str]:
    repeated = sorted({tag for tag in tags if tags.count(tag) > 1})
    if repeated:
        raise ValueError(f"tags must be distinct; repeated: {', '.join(repeated)}")
    return tags


def _bounded_metadata(value: dict[str, Any]) -> dict[str, Any]:
    try:
        encoded = json.dumps(value, separators=(",", ":"), allow_nan=False).encode()
    except ValueError:
        raise ValueError("metadata must not contain NaN or infinite numbers") from None
    if len(encoded) > MAX_METADATA_BYTES:
        raise ValueError(
            f"metadata is {len(encoded)} bytes as compact JSON; at most {MAX_METADATA_BYTES}"
        )
    return value


TagName = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_TAG_LENGTH, pattern=TAG_PATTERN)
]
Tags = Annotated[
    list[TagName],
    Field(
        max_length=MAX_TAGS,
        description=f"At most {MAX_TAGS} distinct tags of 1-{MAX_TAG_LENGTH} characters "
        "(no commas, control characters or surrounding spaces). Lists filter on them "
        "with ?tag= (repeatable: all must match).",
    ),
    AfterValidator(_unique_tags),
]
Metadata = Annotated[
    dict[str, Any],
    Field(
        description=f"Any JSON object, at most {MAX_METADATA_BYTES} bytes as compact JSON; "
        "stored and returned as given."
    ),
    AfterValidator(_bounded_metadata),
]
ObjectName = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class LabelsPatch(RequestModel):
    """``PATCH`` of a run, network or dataset: only these fields, each optional.

    A field that is given replaces the stored value (``tags`` the whole list,
    ``metadata`` the whole object); one that is left out is kept. Any other field is
    a 422 naming it.
    """

    model_config = ConfigDict(
        extra="forbid",
        allow_inf_nan=False,
        json_schema_extra={
            "examples": [
                {
                    "name": "xor-baseline",
                    "tags": ["baseline", "xor"],
                    "metadata": {"owner": "ana", "ticket": 42},
                }
            ]
        },
    )

    name: ObjectName | None = Field(
        default=None,
        description="A new name (null clears a run's name; networks and datasets must keep one).",
    )
    tags: Tags = Field(default_factory=list)
    metadata: Metadata = Field(default_factory=dict)


# --------------------------------------------------------------------------- networks


class LayerSpec(RequestModel):
    """One dense layer."""

    units: int = Field(ge=1, le=1_000_000, description="Number of units (outputs) of the layer.")
    activation: str = Field(
        description="identity, sigmoid, tanh, relu, leaky_relu, gelu (exact), gelu_tanh, elu, "
        "selu, softplus, silu, or softmax (last layer only)."
    )
    bias: bool = Field(default=True, description="Whether the layer adds a bias vector.")
    dropout: float | None = Field(
        default=None,
        description="Hidden layers only: the probability in [0, 1) of zeroing each output "
        "in training (inverted dropout, as torch.nn.Dropout after the activation). "
        "Never applied in predictions, evaluation or exports.",
    )
    negative_slope: float | None = Field(
        default=None, description="leaky_relu only: the slope for negative inputs (default 0.01)."
    )


class InitSpec(RequestModel):
    """Weight initialization; biases start at zero."""

    scheme: str = Field(
        default="xavier_uniform",
        description="xavier_uniform, xavier_normal, he_uniform, he_normal, lecun_uniform, "
        "lecun_normal (for selu), orthogonal, uniform (low, high), normal (mean, std) or zeros.",
    )
    seed: int | None = Field(
        default=None, ge=0, le=MAX_SEED, description="Missing: drawn and stored."
    )
    low: float | None = None
    high: float | None = None
    mean: float | None = None
    std: float | None = None


class LayerWeights(RequestModel):
    """Explicit weights of one layer: ``X @ weights + bias``."""

    weights: list[list[Number]] = Field(description="Shape (fan_in, units).")
    bias: list[Number] | None = Field(default=None, description="Shape (units,) or null.")


class NetworkCreate(RequestModel):
    """A multi-layer perceptron."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "xor",
                    "input_size": 2,
                    "layers": [
                        {"units": 3, "activation": "sigmoid", "bias": True},
                        {"units": 1, "activation": "sigmoid", "bias": True},
                    ],
                    "init": {"scheme": "xavier_uniform", "seed": 7},
                    "weights": None,
                },
                {
                    "name": "moons-gelu-dropout",
                    "input_size": 2,
                    "layers": [
                        {"units": 32, "activation": "gelu", "dropout": 0.2},
                        {"units": 16, "activation": "leaky_relu", "negative_slope": 0.1},
                        {"units": 2, "activation": "softmax"},
                    ],
                    "init": {"scheme": "he_normal", "seed": 7},
                },
            ]
        }
    )

    name: str = Field(min_length=1, max_length=200)
    input_size: int = Field(ge=1, le=10_000_000)
    layers: list[LayerSpec] = Field(min_length=1, max_length=1000)
    init: InitSpec | None = None
    weights: list[LayerWeights] | None = Field(
        default=None, description="Optional explicit initial weights, one entry per layer."
    )
    tags: Tags = Field(default_factory=list)
    metadata: Metadata = Field(default_factory=dict)


class NetworkPublic(BaseModel):
    """A network as stored: the normalized spec plus service fields."""

    id: str
    name: str
    input_size: int
    output_size: int
    layers: list[dict[str, Any]]
    init: dict[str, Any]
    n_parameters: int
    created_at: datetime
    tags: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)


class WeightsPublic(BaseModel):
    """Weights in the API shape; non-finite values are null."""

    epoch: int = Field(description="Epochs trained to reach these weights (0 = initial).")
    layers: list[dict[str, Any]] = Field(
        description='One {"weights": [[...]], "bias": [...] | null} per layer.'
    )


# --------------------------------------------------------------------------- datasets


class DatasetCreate(RequestModel):
    """A dataset given inline as JSON."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"name": "xor", "X": XOR_X, "y": XOR_Y}]}
    )

    name: str = Field(min_length=1, max_length=200)
    X: list[list[Number]] = Field(description="Shape (n_samples, n_features).")
    y: list[Any] = Field(
        description="2-D (n_samples, n_targets), 1-D numbers (one target), "
        "or 1-D integer class labels (for cross_entropy)."
    )
    feature_names: list[Annotated[str, Field(min_length=1, max_length=200)]] | None = Field(
        default=None,
        max_length=100_000,
        description="One name per column of X (default x0, x1, ...).",
        examples=[["a", "b"]],
    )
    target_names: list[Annotated[str, Field(min_length=1, max_length=200)]] | None = Field(
        default=None,
        max_length=100_000,
        description="One name per target column (default y0, y1, ...).",
        examples=[["xor"]],
    )
    standardize: bool = Field(
        default=False,
        description="Scale every feature to mean 0, std 1 over these rows (zero-variance "
        "features are left as they are); predict applies the same scaling to raw rows.",
    )
    tags: Tags = Field(default_factory=list)
    metadata: Metadata = Field(default_factory=dict)


BuiltinName = Literal["xor", "and", "or", "moons", "circles", "spirals", "iris", "digits"]


class BuiltinDatasetCreate(RequestModel):
    """A built-in dataset, generated from a seed or shipped with the service.

    ``y`` is always 1-D integer class labels. Shapes: xor, and, or (4, 2), 2
    classes; moons, circles, spirals (n_samples, 2), 2 classes; iris (150, 4), 3
    classes; digits (1797, 64) with pixel values 0-16, 10 classes.
    """

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"builtin": "moons", "name": "moons", "n_samples": 200, "noise": 0.1}]
        }
    )

    builtin: BuiltinName = Field(description="Which built-in dataset.")
    name: str | None = Field(
        default=None, min_length=1, max_length=200, description="Default: the builtin's name."
    )
    n_samples: int | None = Field(
        default=None,
        ge=2,
        le=100_000,
        description="moons, circles, spirals only (default 200, 200, 300).",
    )
    noise: float | None = Field(
        default=None,
        ge=0,
        le=10,
        description="Standard deviation of the Gaussian noise added to the points; "
        "moons, circles, spirals only (default 0.1, 0.05, 0.05).",
    )
    seed: int | None = Field(
        default=None,
        ge=0,
        le=MAX_SEED,
        description="moons, circles, spirals only; the same seed gives the same data (default 0).",
    )
    tags: Tags = Field(default_factory=list)
    metadata: Metadata = Field(default_factory=dict)


def _dataset_form(value: Any) -> str:
    if isinstance(value, dict):
        return "builtin" if "builtin" in value else "inline"
    return "builtin" if isinstance(value, BuiltinDatasetCreate) else "inline"


def _untagged_errors(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """Drop the union tag pydantic puts first in every error's ``loc``, so that a
    bad field is reported at ``["body", field]`` in either form."""
    try:
        return handler(value)
    except ValidationError as exc:
        errors: list[Any] = [
            {**error, "loc": error["loc"][1:]} if error["loc"] else error for error in exc.errors()
        ]
        raise ValidationError.from_exception_data(exc.title, errors) from None


class DatasetCreateBody(
    RootModel[
        Annotated[
            Annotated[DatasetCreate, Tag("inline")]
            | Annotated[BuiltinDatasetCreate, Tag("builtin")],
            Discriminator(_dataset_form),
            WrapValidator(_untagged_errors),
        ]
    ]
):
    """The body of ``POST /v1/datasets``: inline arrays, or ``{"builtin": ...}``."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"name": "xor", "X": XOR_X, "y": XOR_Y},
                {"builtin": "moons", "name": "moons", "n_samples": 200, "noise": 0.1},
            ]
        }
    )


class DatasetPublic(BaseModel):
    """A dataset's metadata."""

    id: str
    name: str
    n_samples: int
    n_features: int
    n_targets: int
    target_type: Literal["values", "labels"] = Field(
        description="labels: y is 1-D integer class labels; values: y is numbers."
    )
    sha256: str = Field(description="SHA-256 of the canonical encoded arrays.")
    created_at: datetime
    stored_bytes: int = Field(
        default=0,
        description="What it is charged against the tenant's BACKPROP_STORAGE_QUOTA_BYTES: "
        "its stored arrays and label records.",
    )
    feature_names: list[str] = Field(
        default_factory=list,
        description="One per column of X as stored (a categorical column's one-hot "
        "features are named column=value).",
    )
    target_names: list[str] = Field(default_factory=list, description="One per target column.")
    classes: list[str] | None = Field(
        default=None, description="Class names of a categorical target: label i is classes[i]."
    )
    transform: dict[str, Any] | None = Field(
        default=None,
        description="Preprocessing predict applies to raw rows: one-hot encoding of "
        "categorical columns and, with standardize, per-feature mean and scale.",
    )
    tags: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)


class DatasetData(BaseModel):
    """The arrays of a dataset."""

    X: list[list[float]]
    y: list[Any]


class ColumnStats(BaseModel):
    """Moments of one stored column."""

    name: str
    count: int
    missing: int = Field(description="Always 0: empty cells were refused, dropped or imputed.")
    min: float | None
    max: float | None
    mean: float | None
    std: float | None = Field(description="Population standard deviation (ddof 0).")


class DatasetStats(BaseModel):
    """``GET /v1/datasets/{id}/stats``."""

    n_samples: int
    features: list[ColumnStats]
    targets: list[ColumnStats]
    class_counts: dict[str, int] | None = Field(
        default=None,
        description="labels target: samples per class (by class name when the dataset has "
        "classes, else by label).",
    )


# --------------------------------------------------------------------------- runs


class OptimizerSpec(RequestModel):
    """Optimizer settings (torch.optim's); unset fields take the engine's defaults.

    A setting that does not belong to the chosen optimizer is a 422 naming it.
    """

    name: str = Field(default="sgd", description="sgd, adam, adamw, rmsprop or adagrad.")
    learning_rate: float | None = Field(
        default=None, description="Default 0.001 (sgd, adam, adamw) or 0.01 (rmsprop, adagrad)."
    )
    momentum: float | None = Field(default=None, description="sgd, rmsprop.")
    dampening: float | None = Field(default=None, description="sgd (with momentum).")
    nesterov: bool | None = Field(default=None, description="sgd only.")
    weight_decay: float | None = Field(
        default=None, description="L2 added to the gradient; adamw: decoupled, default 0.01."
    )
    beta1: float | None = Field(default=None, description="adam, adamw.")
    beta2: float | None = Field(default=None, description="adam, adamw.")
    eps: float | None = Field(default=None, description="adam, adamw, rmsprop, adagrad.")
    amsgrad: bool | None = Field(default=None, description="adam, adamw.")
    alpha: float | None = Field(default=None, description="rmsprop: smoothing constant (0.99).")
    centered: bool | None = Field(default=None, description="rmsprop.")
    lr_decay: float | None = Field(default=None, description="adagrad.")
    initial_accumulator_value: float | None = Field(default=None, description="adagrad.")


class LRScheduleSpec(RequestModel):
    """A learning-rate schedule: torch.optim.lr_scheduler's classes, stepped after each epoch
    (onecycle: after each batch, over epochs x batches per epoch steps).

    Each name takes its own settings; another's is a 422 naming it.
    """

    name: str = Field(
        description="step (step_size, gamma), multistep (milestones, gamma), exponential "
        "(gamma), cosine (t_max, eta_min), linear (start_factor, end_factor, total_iters), "
        "onecycle (max_learning_rate, pct_start, anneal_strategy, div_factor, "
        "final_div_factor) or plateau (monitor, mode, factor, patience, threshold, "
        "threshold_mode, cooldown, min_lr)."
    )
    step_size: int | None = None
    gamma: float | None = None
    milestones: list[int] | None = Field(default=None, max_length=10_000)
    t_max: int | None = None
    eta_min: float | None = None
    start_factor: float | None = None
    end_factor: float | None = None
    total_iters: int | None = None
    max_learning_rate: float | None = None
    pct_start: float | None = None
    anneal_strategy: str | None = Field(default=None, description="cos or linear.")
    div_factor: float | None = None
    final_div_factor: float | None = None
    monitor: str | None = Field(default=None, description="loss or val_loss.")
    mode: str | None = Field(default=None, description="min or max.")
    factor: float | None = None
    patience: int | None = None
    threshold: float | None = None
    threshold_mode: str | None = Field(default=None, description="rel or abs.")
    cooldown: int | None = None
    min_lr: float | None = None


class GradClipSpec(RequestModel):
    """Gradient clipping before each update: the norm (clip_grad_norm_) or each value."""

    max_norm: float | None = Field(default=None, description="Clip the gradient norm to this.")
    norm_type: float | Literal["inf"] | None = Field(
        default=None, description='The norm for max_norm: a positive number (2) or "inf".'
    )
    value: float | None = Field(default=None, description="Clamp every gradient to [-v, v].")


class LossOptionsSpec(RequestModel):
    """Options of the chosen loss; an option of another loss is a 422 naming it."""

    delta: float | None = Field(default=None, description="huber (1.0).")
    beta: float | None = Field(default=None, description="smooth_l1 (1.0).")
    label_smoothing: float | None = Field(default=None, description="cross_entropy (0).")
    class_weights: list[Number] | None = Field(
        default=None, max_length=1_000_000, description="cross_entropy: one weight per class."
    )
    pos_weight: list[Number] | None = Field(
        default=None,
        max_length=1_000_000,
        description="binary_cross_entropy: one weight per output for its positives.",
    )


class ValidationSpec(RequestModel):
    """Either a seeded fraction of the training data or another dataset."""

    fraction: float | None = Field(default=None, gt=0, lt=1)
    dataset_id: str | None = None


class EarlyStoppingSpec(RequestModel):
    """Stop when the monitored value stops improving."""

    monitor: str | None = Field(default=None, description="loss or val_loss.")
    patience: int | None = Field(default=None, ge=0, le=MAX_EPOCHS)
    min_delta: float | None = None
    restore_best: bool | None = None


class RunCreate(RequestModel):
    """A training run of a network on a dataset."""

    model_config = ConfigDict(
        extra="forbid",
        allow_inf_nan=False,
        json_schema_extra={
            "examples": [
                {
                    "network_id": "paste the id returned by POST /v1/networks",
                    "dataset_id": "paste the id returned by POST /v1/datasets",
                    "loss": "mse",
                    "reduction": "mean",
                    "optimizer": {
                        "name": "sgd",
                        "learning_rate": 0.5,
                        "momentum": 0.9,
                        "nesterov": False,
                        "weight_decay": 0.0,
                    },
                    "epochs": 2000,
                    "batch_size": None,
                    "shuffle": True,
                    "seed": 1,
                    "validation": None,
                    "early_stopping": None,
                    "checkpoint_every": None,
                    "history_every": 1,
                    "init_from": None,
                },
                {
                    "network_id": "a network with a softmax output, e.g. the second example",
                    "dataset_id": "a classification dataset, e.g. the builtin moons",
                    "loss": "cross_entropy",
                    "loss_options": {"label_smoothing": 0.05},
                    "optimizer": {"name": "adamw", "learning_rate": 0.01, "weight_decay": 0.01},
                    "lr_schedule": {"name": "cosine", "t_max": 200, "eta_min": 0.0001},
                    "grad_clip": {"max_norm": 1.0, "norm_type": 2.0},
                    "metrics": ["accuracy", "f1"],
                    "epochs": 200,
                    "batch_size": 32,
                    "validation": {"fraction": 0.2},
                    "seed": 1,
                },
            ]
        },
    )

    network_id: str
    dataset_id: str
    loss: str = Field(
        default="mse",
        description="mse, l1, huber, smooth_l1, binary_cross_entropy or cross_entropy.",
    )
    loss_options: LossOptionsSpec | None = None
    reduction: str = Field(default="mean", description="mean or sum.")
    optimizer: OptimizerSpec = Field(default_factory=OptimizerSpec)
    lr_schedule: LRScheduleSpec | None = Field(
        default=None, description="null: a constant learning rate."
    )
    grad_clip: GradClipSpec | None = None
    metrics: list[str] | None = Field(
        default=None,
        max_length=20,
        description="accuracy, precision, recall, f1 (classification losses); mae, rmse, r2 "
        "(the others). null: accuracy for classification, none otherwise.",
    )
    epochs: int = Field(default=1000, ge=1, le=MAX_EPOCHS)
    batch_size: int | None = Field(
        default=None, ge=1, description="null = full batch; 1 = per-example updates."
    )
    shuffle: bool = True
    seed: int | None = Field(default=None, ge=0, le=MAX_SEED, description="Missing: drawn.")
    validation: ValidationSpec | None = None
    early_stopping: EarlyStoppingSpec | None = None
    checkpoint_every: int | None = Field(
        default=None, ge=1, le=MAX_EPOCHS, description="null: every few seconds of training."
    )
    history_every: int = Field(default=1, ge=1, le=MAX_EPOCHS)
    history_max_points: int | None = Field(
        default=None,
        ge=10,
        le=MAX_EPOCHS,
        description="Record every history_every-th epoch for this many points, then at "
        "doubling intervals (the last epoch always). Default and most: "
        "BACKPROP_HISTORY_MAX_POINTS.",
    )
    init_from: str | None = Field(default=None, description="A checkpoint id to warm-start from.")
    dtype: Literal["float64", "float32"] | None = Field(
        default=None, description="Floating point precision of training (default float64)."
    )
    notify_url: str | None = Field(
        default=None,
        max_length=2048,
        description="An http(s) URL to POST the run object to when the run succeeds, fails or "
        "is cancelled, signed with your webhook secret (header Backprop-Signature; see GET "
        "/v1/webhooks/secret). Public addresses only, unless the server allows private ones.",
        examples=["https://example.com/hooks/backprop"],
    )
    name: ObjectName | None = Field(
        default=None, description="A name for people (not unique; lists filter by prefix)."
    )
    tags: Tags = Field(default_factory=list)
    metadata: Metadata = Field(default_factory=dict)


class RunError(BaseModel):
    """Why a run failed."""

    code: str = Field(description="diverged, error or worker_lost.")
    message: str


class RunPublic(BaseModel):
    """A run: its config, progress and outcome."""

    id: str
    name: str | None = None
    tags: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)
    sweep_id: str | None = Field(default=None, description="The sweep it is a trial of.")
    status: RunStatus
    network_id: str | None
    dataset_id: str | None
    config: dict[str, Any] = Field(
        description="The normalized request body (defaults and seed filled in)."
    )
    epoch: int = Field(description="Epochs done.")
    epochs: int
    loss: float | None
    val_loss: float | None
    best_loss: float | None
    best_epoch: int | None = Field(
        default=None, description="The epoch of best_loss (null before the first epoch)."
    )
    metrics: dict[str, float | None]
    stop_reason: str | None
    error: RunError | None
    cancel_requested: bool = Field(
        description="A cancel is pending: the running run stops at its next epoch boundary "
        "and is cancelled (only ever true while running)."
    )
    pause_requested: bool = Field(
        default=False,
        description="A pause is pending: the running run stops at its next epoch boundary "
        "and pauses (only ever true while running).",
    )
    attempts: int = Field(
        description="Claims of the run by a worker that were not handed back: a worker "
        "dying while its supervisor lives uses one; BACKPROP_MAX_ATTEMPTS used → worker_lost."
    )
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class NotificationAttempt(BaseModel):
    """One delivery attempt of a webhook."""

    at: datetime = Field(description="When the attempt started.")
    status_code: int | None = Field(description="The receiver's HTTP status; null: no answer.")
    error: str | None = Field(description="Why it failed, when it did.")
    duration_ms: float


class NotificationPublic(BaseModel):
    """A webhook owed for a run's or a sweep's terminal status, and its delivery."""

    id: str = Field(description="Also sent as the Backprop-Notification-Id header (dedupe on it).")
    run_id: str | None = Field(description="The run it is about (null for a sweep's).")
    sweep_id: str | None = Field(
        default=None, description="The sweep it is about (null for a run's)."
    )
    event: str = Field(
        description="run.succeeded, run.failed or run.cancelled; sweep.succeeded, "
        "sweep.failed or sweep.cancelled."
    )
    url: str
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    attempt_log: list[NotificationAttempt] = Field(description="The latest attempts, oldest first.")
    created_at: datetime
    next_attempt_at: datetime | None = Field(description="null once delivered or failed.")
    delivered_at: datetime | None


class WebhookSecretPublic(BaseModel):
    """The key your webhooks are signed with."""

    secret: str = Field(
        description="HMAC-SHA256 key: Backprop-Signature is t=<unix>,v1=hex(HMAC(secret, "
        "f'{t}.' + raw body))."
    )
    created_at: datetime


class PredictRequest(RequestModel):
    """Inputs to run through a run's weights."""

    model_config = ConfigDict(
        extra="forbid", allow_inf_nan=False, json_schema_extra={"examples": [{"X": XOR_X}]}
    )

    X: list[list[Number | str]] = Field(
        min_length=1,
        description="Shape (n_samples, input_size); for a run on a dataset with a transform, "
        "raw rows: one value per original column (category names for categorical ones).",
    )


class PredictResponse(BaseModel):
    """Network outputs, shape (n_samples, output_size); non-finite values are null."""

    epoch: int
    predictions: list[list[float | None]]
    labels: list[str] | None = Field(
        default=None,
        exclude_if=lambda value: value is None,
        description="cross_entropy runs on a dataset with class names (a categorical "
        "target): the predicted class of each row, by name. Absent otherwise.",
    )


# --------------------------------------------------------------------------- evaluate


class RunEvaluateRequest(RequestModel):
    """Data to evaluate a run's weights on: a stored dataset, or ``X`` and ``y``."""

    model_config = ConfigDict(
        extra="forbid",
        allow_inf_nan=False,
        json_schema_extra={
            "examples": [
                {"X": XOR_X, "y": XOR_Y},
                {"dataset_id": "paste the id returned by POST /v1/datasets"},
            ]
        },
    )

    dataset_id: str | None = Field(default=None, max_length=64)
    X: list[list[Number]] | None = Field(default=None, description="Shape (n_samples, n_features).")
    y: list[Any] | None = Field(
        default=None, description="Targets, as in POST /v1/datasets (labels or values)."
    )
    checkpoint_id: str | None = Field(
        default=None,
        max_length=64,
        description="One of the run's checkpoints; default: the weights GET /weights serves.",
    )


class NetworkEvaluateRequest(RequestModel):
    """Data (and the loss) to evaluate a network's initial weights on."""

    model_config = ConfigDict(
        extra="forbid",
        allow_inf_nan=False,
        json_schema_extra={"examples": [{"X": XOR_X, "y": XOR_Y, "loss": "mse"}]},
    )

    dataset_id: str | None = Field(default=None, max_length=64)
    X: list[list[Number]] | None = Field(default=None, description="Shape (n_samples, n_features).")
    y: list[Any] | None = None
    loss: str | None = Field(
        default=None,
        description="As in a run; default: the loss that fits the output activation "
        "(binary_cross_entropy for sigmoid, cross_entropy for softmax, else mse).",
    )
    loss_options: LossOptionsSpec | None = None
    reduction: str = Field(default="mean", description="mean or sum.")


class ClassScores(BaseModel):
    """Precision, recall and F1 of one class (or output, for binary_cross_entropy)."""

    model_config = ConfigDict(populate_by_name=True)

    class_: int = Field(alias="class", serialization_alias="class")
    precision: float
    recall: float
    f1: float
    support: int = Field(description="Samples whose true class (or output) this is.")


class EvaluationPublic(BaseModel):
    """The loss and metrics of some weights on some data."""

    network_id: str
    run_id: str | None = None
    checkpoint_id: str | None = None
    dataset_id: str | None = None
    epoch: int = Field(description="The epoch of the weights (0: the network's initial ones).")
    n_samples: int
    loss_name: str = Field(description="The loss computed (the run's).")
    loss: float | None
    metrics: dict[str, float | None] = Field(
        description="accuracy, precision, recall, f1 (macro; classification losses) or "
        "mae, rmse, r2 (the others)."
    )
    confusion_matrix: list[Any] | None = Field(
        default=None,
        description="cross_entropy: k x k counts, rows the true class, columns the "
        "predicted one; binary_cross_entropy: [[tn, fp], [fn, tp]] per output; else null.",
    )
    per_class: list[ClassScores] | None = None


# --------------------------------------------------------------------------- compare


class ComparedField(BaseModel):
    """One config field across the compared runs (null where a run does not have it)."""

    field: str = Field(description="Dotted path, e.g. optimizer.learning_rate.")
    values: list[Any] = Field(description="One value per run, in the order of ids.")
    differs: bool


class ComparedRun(BaseModel):
    """One compared run's outcome."""

    id: str
    name: str | None
    tags: list[str]
    status: RunStatus
    network_id: str | None
    dataset_id: str | None
    epoch: int
    final: dict[str, Any] = Field(description="epoch, loss, val_loss, metrics of the last epoch.")
    best: dict[str, Any] = Field(
        description="epoch (best_epoch), best_loss, and the loss, val_loss and metrics "
        "recorded at that epoch (when it is in the history)."
    )


class RunComparison(BaseModel):
    """Runs side by side."""

    runs: list[ComparedRun]
    fields: list[ComparedField]
    differing: list[str] = Field(description="The fields whose values differ.")


# --------------------------------------------------------------------------- checkpoints


class CheckpointPublic(BaseModel):
    """A checkpoint's metadata."""

    id: str
    run_id: str
    epoch: int
    kind: Literal["scheduled", "auto", "final"]
    loss: float | None
    val_loss: float | None
    created_at: datetime


class CheckpointDetail(CheckpointPublic):
    """A checkpoint with its weights."""

    layers: list[dict[str, Any]]


# --------------------------------------------------------------------------- common


class Page(BaseModel, Generic[T]):
    """One page of a list; pass ``next_after`` as ``after`` for the next page."""

    data: list[T]
    has_more: bool
    next_after: str | None


class Health(BaseModel):
    """Service health."""

    status: Literal["ok"]
    database: Literal["ok"]
