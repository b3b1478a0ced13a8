"""Backprop's Python client: :class:`Client` (typed models, typed errors, retries with
idempotency keys, the run event stream) and the ``backprop`` command line
(:mod:`backprop_client.cli`). It needs httpx, httpx-sse, pydantic, rich and Typer;
never NumPy (optional, for the ``array`` helpers) and never the server."""

from backprop_client.client import DEFAULT_URL, IDEMPOTENCY_HEADER, Client
from backprop_client.errors import (
    BackpropConnectionError,
    BackpropError,
    Conflict,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    RetryLater,
    ServerError,
    ServiceUnavailable,
    StorageQuotaExceeded,
    Unauthorized,
    WaitTimeout,
)
from backprop_client.events import RunEvent
from backprop_client.models import (
    TERMINAL_STATUSES,
    Checkpoint,
    CheckpointDetail,
    Dataset,
    DatasetData,
    History,
    LayerWeights,
    Network,
    Page,
    Prediction,
    Run,
    RunError,
    Weights,
)

__all__ = [
    "DEFAULT_URL",
    "IDEMPOTENCY_HEADER",
    "TERMINAL_STATUSES",
    "BackpropConnectionError",
    "BackpropError",
    "Checkpoint",
    "CheckpointDetail",
    "Client",
    "Conflict",
    "Dataset",
    "DatasetData",
    "History",
    "InvalidRequest",
    "LayerWeights",
    "Network",
    "NotFound",
    "Page",
    "PayloadTooLarge",
    "Prediction",
    "RateLimited",
    "RetryLater",
    "Run",
    "RunError",
    "RunEvent",
    "ServerError",
    "ServiceUnavailable",
    "StorageQuotaExceeded",
    "Unauthorized",
    "WaitTimeout",
    "Weights",
]
