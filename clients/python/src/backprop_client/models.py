"""Typed responses of the Backprop API (pydantic models).

Models keep fields they do not know (``extra="allow"``), so an older client keeps
working against a newer server. NumPy is optional: the ``array``/``arrays``
helpers import it when called (``pip install "backprop-client[numpy]"``).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

TERMINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})
RUN_STATUSES = ("queued", "running", "paused", "succeeded", "failed", "cancelled")

T = TypeVar("T")


def _numpy() -> Any:
    try:
        import numpy
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError('this helper needs NumPy: pip install "backprop-client[numpy]"') from exc
    return numpy


def _array(values: Any) -> NDArray[np.float64]:
    result: NDArray[np.float64] = _numpy().array(values, dtype="float64")
    return result  # None (a non-finite value) becomes NaN


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow")


class Network(_Model):
    """A network: its normalized spec plus ``id``, ``n_parameters``, ``created_at``."""

    id: str
    name: str
    input_size: int
    output_size: int
    layers: list[dict[str, Any]]
    init: dict[str, Any]
    n_parameters: int
    created_at: datetime
    tags: list[str] = []
    metadata: dict[str, Any] = {}


class Dataset(_Model):
    """A dataset's metadata."""

    id: str
    name: str
    n_samples: int
    n_features: int
    n_targets: int
    target_type: str
    sha256: str
    created_at: datetime
    stored_bytes: int = 0
    tags: list[str] = []
    metadata: dict[str, Any] = {}


class DatasetData(_Model):
    """A dataset's arrays as JSON lists."""

    X: list[list[float]]
    y: list[Any]

    def arrays(self) -> tuple[NDArray[np.float64], NDArray[Any]]:
        """``X`` (float64) and ``y`` (int64 labels or float64 values) as NumPy arrays."""
        numpy = _numpy()
        return numpy.asarray(self.X, dtype="float64"), numpy.asarray(self.y)


class RunError(_Model):
    """Why a run failed."""

    code: str
    message: str


class Run(_Model):
    """A run: config, progress and outcome."""

    id: str
    name: str | None = None
    tags: list[str] = []
    metadata: dict[str, Any] = {}
    sweep_id: str | None = None
    status: str
    network_id: str | None
    dataset_id: str | None
    config: dict[str, Any]
    epoch: int
    epochs: int
    loss: float | None
    val_loss: float | None = None
    best_loss: float | None = None
    best_epoch: int | None = None
    metrics: dict[str, float | None] = {}
    stop_reason: str | None = None
    error: RunError | None = None
    cancel_requested: bool = False
    pause_requested: bool = False
    attempts: int = 0
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def terminal(self) -> bool:
        """True once the run succeeded, failed or was cancelled."""
        return self.status in TERMINAL_STATUSES

    @property
    def paused(self) -> bool:
        """True while the run is paused (it continues after :meth:`Client.resume`)."""
        return self.status == "paused"


class History(_Model):
    """Recorded epochs as equal-length columns; metrics are extra columns."""

    epoch: list[int]
    loss: list[float | None]
    val_loss: list[float | None] = []

    def columns(self) -> dict[str, list[Any]]:
        """Every column, including metrics such as ``accuracy``."""
        return self.model_dump()


class LayerWeights(_Model):
    """One layer: ``weights`` of shape (fan_in, units) and ``bias`` (units,) or None."""

    weights: list[list[float | None]]
    bias: list[float | None] | None = None


class Weights(_Model):
    """Weights at an epoch (0 = initial); non-finite values arrive as None."""

    epoch: int
    layers: list[LayerWeights]

    def arrays(self) -> list[tuple[NDArray[np.float64], NDArray[np.float64] | None]]:
        """``[(weights, bias or None), ...]`` as float64 arrays (None becomes NaN)."""
        return [
            (_array(layer.weights), None if layer.bias is None else _array(layer.bias))
            for layer in self.layers
        ]


class Checkpoint(_Model):
    """A checkpoint as listed by :meth:`Client.checkpoints` (without its weights)."""

    id: str
    run_id: str
    epoch: int
    kind: str
    loss: float | None
    val_loss: float | None = None
    created_at: datetime


class CheckpointDetail(Checkpoint):
    """A checkpoint with its weights (:meth:`Client.checkpoint`)."""

    layers: list[LayerWeights]


class Prediction(_Model):
    """Network outputs, shape (n_samples, output_size), from the weights at ``epoch``."""

    epoch: int
    predictions: list[list[float | None]]

    def array(self) -> NDArray[np.float64]:
        """The predictions as a float64 array (None becomes NaN)."""
        return _array(self.predictions)


class ClassScores(_Model):
    """Precision, recall and F1 of one class (``class_``, sent as ``class``)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    class_: int = Field(alias="class")
    precision: float
    recall: float
    f1: float
    support: int


class Evaluation(_Model):
    """The loss and metrics of some weights (a run's, a checkpoint's or a network's
    initial ones, at ``epoch``) on some data (:meth:`Client.evaluate_run`).

    ``metrics``: accuracy, precision, recall, f1 (macro) for classification losses;
    mae, rmse, r2 for the others. ``confusion_matrix`` (rows the true class) and
    ``per_class`` for classification, else None.
    """

    network_id: str
    run_id: str | None = None
    checkpoint_id: str | None = None
    dataset_id: str | None = None
    epoch: int
    n_samples: int
    loss_name: str
    loss: float | None
    metrics: dict[str, float | None]
    confusion_matrix: list[Any] | None = None
    per_class: list[ClassScores] | None = None


class ComparedField(_Model):
    """One config field (a dotted path) across the compared runs, in their order."""

    field: str
    values: list[Any]
    differs: bool


class ComparedRun(_Model):
    """One compared run's outcome: ``final`` and ``best`` (epoch, loss, val_loss, metrics)."""

    id: str
    name: str | None
    tags: list[str]
    status: str
    network_id: str | None
    dataset_id: str | None
    epoch: int
    final: dict[str, Any]
    best: dict[str, Any]


class RunComparison(_Model):
    """Runs side by side (:meth:`Client.compare_runs`)."""

    runs: list[ComparedRun]
    fields: list[ComparedField]
    differing: list[str]


class Trial(_Model):
    """One trial of a sweep: its run, parameters, status (the run's, or ``pruned``)."""

    number: int
    run_id: str | None
    parameters: dict[str, Any]
    status: str
    objective: float | None
    epoch: int
    rung: int | None = None


class Sweep(_Model):
    """A hyperparameter sweep: its request, status, trials and best trial."""

    id: str
    status: str
    name: str | None = None
    tags: list[str] = []
    metadata: dict[str, Any] = {}
    method: str
    max_trials: int
    parallelism: int
    objective: dict[str, Any]
    parameters: dict[str, Any]
    early_stopping: dict[str, Any] | None = None
    seed: int
    network_id: str
    dataset_id: str
    created_at: datetime
    updated_at: datetime
    trials: list[Trial] = []
    best_trial: Trial | None = None
    error: str | None = None

    @property
    def terminal(self) -> bool:
        """True once the sweep succeeded, failed or was cancelled."""
        return self.status in TERMINAL_STATUSES


class Page(BaseModel, Generic[T]):
    """One page of a list; pass ``next_after`` as ``after`` for the next page."""

    data: list[T]
    has_more: bool
    next_after: str | None
