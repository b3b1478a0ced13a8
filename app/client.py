"""A synchronous Python client for the Backprop API.

::

    from app.client import Client

    with Client("http://127.0.0.1:8000") as bp:
        net = bp.create_network({"name": "xor", "input_size": 2, "layers": [
            {"units": 3, "activation": "sigmoid"}, {"units": 1, "activation": "sigmoid"}]})
        data = bp.create_dataset(builtin="xor")
        run = bp.create_run(net.id, data.id, loss="mse", epochs=2000, seed=1,
                            optimizer={"name": "sgd", "learning_rate": 2.0})
        run = bp.wait(run.id, on_progress=lambda r: print(r.epoch, r.loss))
        print(bp.predict(run.id, [[0, 1]]).predictions)

Every response is a typed model (:class:`Network`, :class:`Dataset`,
:class:`Run`, ...). Models keep fields they do not know (``extra="allow"``), so
an older client keeps working against a newer server. An error answer raises a
subclass of :class:`BackpropError` carrying the server's ``detail``; a server
that cannot be reached raises :class:`BackpropConnectionError`.

The client only needs ``httpx`` and ``pydantic``; it never imports the server.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Generic, TypeVar

import httpx
import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict

__all__ = [
    "BackpropConnectionError",
    "BackpropError",
    "Checkpoint",
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
    "ServerError",
    "ServiceUnavailable",
    "StorageQuotaExceeded",
    "Unauthorized",
    "WaitTimeout",
    "Weights",
]

logger = logging.getLogger(__name__)

TERMINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})
DEFAULT_URL = "http://127.0.0.1:8000"

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

# --------------------------------------------------------------------------- errors


class BackpropError(Exception):
    """An error answer from the server (or no answer at all).

    Attributes
    ----------
    status_code : int or None
        The HTTP status; None when the server was not reached.
    detail : Any
        The server's ``detail``: a string, or for 422 a list of
        ``{"loc", "msg", "type"}`` entries.
    """

    def __init__(self, message: str, *, status_code: int | None = None, detail: Any = None):
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.detail = detail


class NotFound(BackpropError):  # noqa: N818 (the names of the HTTP statuses)
    """404: an id names nothing."""


class Conflict(BackpropError):  # noqa: N818 (the names of the HTTP statuses)
    """409: the request conflicts with the resource's state (e.g. deleting a busy dataset)."""


class InvalidRequest(BackpropError):  # noqa: N818 (the names of the HTTP statuses)
    """422: invalid input; :attr:`detail` is the list of errors, each naming its field."""

    detail: list[dict[str, Any]]

    @property
    def fields(self) -> list[str]:
        """Dotted locations of the errors, e.g. ``["body.layers.1.activation"]``."""
        return [".".join(str(part) for part in error.get("loc", ())) for error in self.detail]


class PayloadTooLarge(BackpropError):  # noqa: N818 (the names of the HTTP statuses)
    """413: the request body is over the server's limit."""


class Unauthorized(BackpropError):  # noqa: N818 (the names of the HTTP statuses)
    """401: a missing or wrong API key."""


class StorageQuotaExceeded(BackpropError):  # noqa: N818 (what happened)
    """507: storing this would take the tenant over its storage quota (the detail says by how
    much); delete datasets or networks, or wait for unfinished runs to end."""


class RetryLater(BackpropError):  # noqa: N818 (what the caller should do)
    """An answer that says when to try again: :attr:`retry_after` seconds (or None)."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        detail: Any = None,
        retry_after: float | None = None,
    ):
        super().__init__(message, status_code=status_code, detail=detail)
        self.retry_after = retry_after


class RateLimited(RetryLater):
    """429: too many requests or active runs; retry after :attr:`retry_after` seconds."""


class ServerError(BackpropError):
    """5xx: the server failed."""


class ServiceUnavailable(RetryLater, ServerError):  # noqa: N818 (the names of the HTTP statuses)
    """503: the server's database is unavailable for now; retry after :attr:`retry_after` s."""


class BackpropConnectionError(BackpropError):
    """The server could not be reached (refused, timed out, DNS, ...)."""


class WaitTimeout(BackpropError, TimeoutError):  # noqa: N818
    """:meth:`Client.wait` gave up before the run ended; :attr:`run` is its last state."""

    def __init__(self, message: str, run: Run):
        super().__init__(message)
        self.run = run


_ERRORS: dict[int, type[BackpropError]] = {
    401: Unauthorized,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    422: InvalidRequest,
    429: RateLimited,
    507: StorageQuotaExceeded,
}


def describe_detail(detail: Any) -> str:
    """The server's ``detail`` as one line for a human."""
    if isinstance(detail, list):
        parts = []
        for error in detail:
            if isinstance(error, dict):
                loc = ".".join(str(part) for part in error.get("loc", ()))
                parts.append(f"{loc}: {error.get('msg', '')}" if loc else str(error.get("msg")))
            else:
                parts.append(str(error))
        return "; ".join(parts)
    return str(detail)


def _until(deadline: float | None, seconds: float) -> float:
    """``seconds``, cut short at ``deadline`` (a ``time.monotonic()`` value)."""
    return seconds if deadline is None else max(0.0, min(seconds, deadline - time.monotonic()))


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None


def error_from_response(response: httpx.Response) -> BackpropError:
    """The typed error for a non-2xx response."""
    try:
        body = response.json()
        detail = body.get("detail", body) if isinstance(body, dict) else body
    except ValueError:
        detail = response.text[:500] or response.reason_phrase
    status = response.status_code
    message = f"{status} {response.reason_phrase}: {describe_detail(detail)}"
    if status in (429, 503):
        retry_later = RateLimited if status == 429 else ServiceUnavailable
        return retry_later(
            message,
            status_code=status,
            detail=detail,
            retry_after=_retry_after(response.headers.get("retry-after")),
        )
    if status == 422 and not isinstance(detail, list):
        detail = [{"loc": [], "msg": str(detail), "type": "value_error"}]
    cls = _ERRORS.get(status, ServerError if status >= 500 else BackpropError)
    return cls(message, status_code=status, detail=detail)


# --------------------------------------------------------------------------- models


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


class DatasetData(_Model):
    """A dataset's arrays as JSON lists."""

    X: list[list[float]]
    y: list[Any]

    def arrays(self) -> tuple[NDArray[np.float64], NDArray[Any]]:
        """``X`` (float64) and ``y`` (int64 labels or float64 values) as NumPy arrays."""
        y = np.asarray(self.y)
        return np.asarray(self.X, dtype=np.float64), y


class RunError(_Model):
    """Why a run failed."""

    code: str
    message: str


class Run(_Model):
    """A run: config, progress and outcome."""

    id: str
    status: str
    network_id: str | None
    dataset_id: str | None
    config: dict[str, Any]
    epoch: int
    epochs: int
    loss: float | None
    val_loss: float | None = None
    best_loss: float | None = None
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


def _array(values: Any) -> NDArray[np.float64]:
    return np.array(values, dtype=np.float64)  # None (a non-finite value) becomes NaN


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
    """A checkpoint; ``layers`` is set by :meth:`Client.checkpoint` (not in lists)."""

    id: str
    run_id: str
    epoch: int
    kind: str
    loss: float | None
    val_loss: float | None = None
    created_at: datetime
    layers: list[LayerWeights] | None = None


class Prediction(_Model):
    """Network outputs, shape (n_samples, output_size), from the weights at ``epoch``."""

    epoch: int
    predictions: list[list[float | None]]

    def array(self) -> NDArray[np.float64]:
        """The predictions as a float64 array (None becomes NaN)."""
        return _array(self.predictions)


class Page(BaseModel, Generic[T]):
    """One page of a list; pass ``next_after`` as ``after`` for the next page."""

    data: list[T]
    has_more: bool
    next_after: str | None


# --------------------------------------------------------------------------- client


def _jsonable(value: Any) -> Any:
    """NumPy arrays and scalars as JSON lists and numbers."""
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    return value


def _drop_none(values: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


class Client:
    """The Backprop API over HTTP (synchronous, thread-compatible like ``httpx.Client``).

    Parameters
    ----------
    base_url : str
        Where the server listens, e.g. ``http://127.0.0.1:8000`` (no ``/v1``).
    api_key : str, optional
        Sent as ``Authorization: Bearer <api_key>``.
    timeout : float
        Seconds per request.
    http : httpx.Client, optional
        Use this client (e.g. FastAPI's ``TestClient``) instead of opening one; it
        is not closed by :meth:`close`.
    transport : httpx.BaseTransport, optional
        A transport for the client this object opens (tests, proxies).
    """

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        api_key: str | None = None,
        timeout: float = 30.0,
        *,
        http: httpx.Client | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self._owns_http = http is None
        self._http = http or httpx.Client(timeout=timeout, transport=transport)
        self.timeout = timeout

    # ------------------------------------------------------------------ plumbing

    def close(self) -> None:
        """Close the HTTP connection pool (unless it was passed in)."""
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send a request to ``base_url + path``; raise the typed error for a non-2xx answer."""
        headers = dict(kwargs.pop("headers", None) or {})
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        try:
            response = self._http.request(method, self.base_url + path, headers=headers, **kwargs)
        except httpx.TransportError as exc:
            raise BackpropConnectionError(
                f"cannot reach the Backprop server at {self.base_url}: {exc}"
            ) from exc
        if response.is_error:
            raise error_from_response(response)
        return response

    def _get(self, path: str, model: type[M], **params: Any) -> M:
        response = self.request("GET", path, params=_drop_none(params))
        return model.model_validate(response.json())

    def _post(self, path: str, model: type[M], body: Any = None) -> M:
        response = self.request("POST", path, json=body)
        return model.model_validate(response.json())

    def _page(self, path: str, model: type[M], **params: Any) -> Page[M]:
        response = self.request("GET", path, params=_drop_none(params))
        return Page[model].model_validate(response.json())  # type: ignore[valid-type]

    def _iterate(self, path: str, model: type[M], page_size: int, **params: Any) -> Iterator[M]:
        after: str | None = None
        while True:
            page = self._page(path, model, limit=page_size, after=after, **params)
            yield from page.data
            if not page.has_more or page.next_after is None:
                return
            after = page.next_after

    def health(self) -> dict[str, Any]:
        """``GET /healthz``."""
        result: dict[str, Any] = self.request("GET", "/healthz").json()
        return result

    # ------------------------------------------------------------------ networks

    def create_network(self, spec: Mapping[str, Any] | None = None, **fields: Any) -> Network:
        """Create a network from a spec dict (as ``POST /v1/networks`` takes) and/or fields.

        ``create_network(spec)``, ``create_network(name=..., input_size=..., layers=[...])``
        or both (fields override the spec). NumPy arrays in ``weights`` are accepted.
        """
        body = {**(spec or {}), **fields}
        if body.get("weights") is not None:
            body["weights"] = [
                {key: _jsonable(value) for key, value in layer.items()} for layer in body["weights"]
            ]
        return self._post("/v1/networks", Network, body)

    def get_network(self, network_id: str) -> Network:
        """One network."""
        return self._get(f"/v1/networks/{network_id}", Network)

    def networks_page(self, *, limit: int = 20, after: str | None = None) -> Page[Network]:
        """One page of networks, newest first."""
        return self._page("/v1/networks", Network, limit=limit, after=after)

    def list_networks(self, *, page_size: int = 100) -> Iterator[Network]:
        """Every network, newest first, fetching pages as the iteration goes."""
        return self._iterate("/v1/networks", Network, page_size)

    def delete_network(self, network_id: str) -> None:
        """Delete a network and its runs (:class:`Conflict` while one is active)."""
        self.request("DELETE", f"/v1/networks/{network_id}")

    def network_weights(self, network_id: str) -> Weights:
        """The network's initial weights (epoch 0)."""
        return self._get(f"/v1/networks/{network_id}/weights", Weights)

    # ------------------------------------------------------------------ datasets

    def create_dataset(
        self,
        name: str | None = None,
        X: Any = None,
        y: Any = None,
        *,
        builtin: str | None = None,
        n_samples: int | None = None,
        noise: float | None = None,
        seed: int | None = None,
    ) -> Dataset:
        """Upload ``X`` and ``y`` (lists or NumPy arrays), or create a built-in dataset.

        ``create_dataset("xor", X, y)`` or ``create_dataset(builtin="moons", seed=1)``.
        """
        if builtin is not None:
            body = _drop_none(
                {
                    "builtin": builtin,
                    "name": name,
                    "n_samples": n_samples,
                    "noise": noise,
                    "seed": seed,
                }
            )
        else:
            body = {"name": name or "dataset", "X": _jsonable(X), "y": _jsonable(y)}
        return self._post("/v1/datasets", Dataset, body)

    def upload_csv(
        self,
        file: str | Path | bytes,
        target: str | Sequence[str],
        *,
        name: str | None = None,
        filename: str | None = None,
    ) -> Dataset:
        """Upload a CSV file (a path or its bytes) with a header row; ``target`` names
        the y column(s), every other column is a feature."""
        if isinstance(file, bytes):
            content, default_name = file, "dataset.csv"
        else:
            content, default_name = Path(file).read_bytes(), Path(file).name
        targets = target if isinstance(target, str) else ",".join(target)
        data = _drop_none({"target": targets, "name": name})
        files = {"file": (filename or default_name, content, "text/csv")}
        response = self.request("POST", "/v1/datasets/csv", data=data, files=files)
        return Dataset.model_validate(response.json())

    def get_dataset(self, dataset_id: str) -> Dataset:
        """One dataset's metadata."""
        return self._get(f"/v1/datasets/{dataset_id}", Dataset)

    def datasets_page(self, *, limit: int = 20, after: str | None = None) -> Page[Dataset]:
        """One page of datasets, newest first."""
        return self._page("/v1/datasets", Dataset, limit=limit, after=after)

    def list_datasets(self, *, page_size: int = 100) -> Iterator[Dataset]:
        """Every dataset, newest first."""
        return self._iterate("/v1/datasets", Dataset, page_size)

    def delete_dataset(self, dataset_id: str) -> None:
        """Delete a dataset (:class:`Conflict` while an active run uses it)."""
        self.request("DELETE", f"/v1/datasets/{dataset_id}")

    def dataset_data(self, dataset_id: str) -> DatasetData:
        """The dataset's ``X`` and ``y``."""
        return self._get(f"/v1/datasets/{dataset_id}/data", DatasetData)

    # ------------------------------------------------------------------ runs

    def create_run(self, network_id: str, dataset_id: str, **config: Any) -> Run:
        """Queue a run; ``config`` is the rest of the ``POST /v1/runs`` body
        (``loss``, ``optimizer``, ``epochs``, ``batch_size``, ``seed``, ...)."""
        body = {"network_id": network_id, "dataset_id": dataset_id, **config}
        return self._post("/v1/runs", Run, body)

    def get_run(self, run_id: str) -> Run:
        """One run."""
        return self._get(f"/v1/runs/{run_id}", Run)

    def runs_page(
        self,
        *,
        limit: int = 20,
        after: str | None = None,
        status: str | None = None,
        network_id: str | None = None,
        dataset_id: str | None = None,
    ) -> Page[Run]:
        """One page of runs, newest first, optionally filtered."""
        return self._page(
            "/v1/runs",
            Run,
            limit=limit,
            after=after,
            status=status,
            network_id=network_id,
            dataset_id=dataset_id,
        )

    def list_runs(
        self,
        *,
        status: str | None = None,
        network_id: str | None = None,
        dataset_id: str | None = None,
        page_size: int = 100,
    ) -> Iterator[Run]:
        """Every run matching the filters, newest first."""
        return self._iterate(
            "/v1/runs",
            Run,
            page_size,
            status=status,
            network_id=network_id,
            dataset_id=dataset_id,
        )

    def history(
        self,
        run_id: str,
        *,
        after_epoch: int | None = None,
        limit: int | None = None,
        max_points: int | None = None,
    ) -> History:
        """The run's recorded epochs (``max_points`` downsamples, keeping the last)."""
        return self._get(
            f"/v1/runs/{run_id}/history",
            History,
            after_epoch=after_epoch,
            limit=limit,
            max_points=max_points,
        )

    def cancel(self, run_id: str) -> Run:
        """Cancel a run (idempotent)."""
        return self._post(f"/v1/runs/{run_id}/cancel", Run)

    def pause(self, run_id: str) -> Run:
        """Pause a run (idempotent): a queued one at once, a running one at its next epoch
        boundary after an exact checkpoint. :class:`Conflict` for a finished run."""
        return self._post(f"/v1/runs/{run_id}/pause", Run)

    def resume(self, run_id: str) -> Run:
        """Resume a paused run (idempotent): queued again, it continues exactly where it
        paused. :class:`Conflict` for a finished run."""
        return self._post(f"/v1/runs/{run_id}/resume", Run)

    def checkpoints(self, run_id: str, *, page_size: int = 100) -> list[Checkpoint]:
        """The run's checkpoints, newest first (without weights)."""
        return list(self._iterate(f"/v1/runs/{run_id}/checkpoints", Checkpoint, page_size))

    def checkpoint(self, checkpoint_id: str) -> Checkpoint:
        """One checkpoint with its weights."""
        return self._get(f"/v1/checkpoints/{checkpoint_id}", Checkpoint)

    def run_weights(self, run_id: str) -> Weights:
        """Final weights of a finished run, else its latest checkpoint (:class:`Conflict`
        if it has none yet)."""
        return self._get(f"/v1/runs/{run_id}/weights", Weights)

    def export(self, run_id: str, format: str = "onnx") -> bytes:
        """The run's weights as a file: ``onnx``, ``npz`` or ``json`` (``GET .../export``).

        The npz holds ``layer<i>.weights``, ``layer<i>.bias`` and ``spec`` (the
        network, run and epoch as UTF-8 JSON bytes); see the README's "Export".
        """
        return self.request("GET", f"/v1/runs/{run_id}/export", params={"format": format}).content

    def predict(self, run_id: str, X: Any) -> Prediction:
        """Outputs of the run's network for ``X`` (rows of inputs, a list or an array)."""
        return self._post(f"/v1/runs/{run_id}/predict", Prediction, {"X": _jsonable(X)})

    def wait(
        self,
        run_id: str,
        *,
        poll: float = 0.5,
        timeout: float | None = None,
        on_progress: Callable[[Run], None] | None = None,
    ) -> Run:
        """Poll the run until it succeeded, failed, was cancelled or is paused; return it.

        A paused run is returned too (check ``run.paused``): it only continues after
        :meth:`resume`, so waiting on would never end by itself. ``on_progress(run)``
        is called after every poll, the last time with the returned run. Raises
        :class:`WaitTimeout` after ``timeout`` seconds.

        An outage on the way (503 while the server's database restarts, or the
        server unreachable while it restarts) does not end the wait: polling goes on,
        after ``Retry-After`` for a 503, until ``timeout``. Then the last error is
        raised if no poll ever answered.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        last: Run | None = None
        while True:
            try:
                run = last = self.get_run(run_id)
            except (ServiceUnavailable, BackpropConnectionError) as error:
                if deadline is not None and time.monotonic() >= deadline:
                    if last is None:
                        raise
                    raise WaitTimeout(
                        f"run {run_id}: the server is unavailable ({error.message}); its "
                        f"last answer, {timeout} s ago at most, was {last.status}",
                        last,
                    ) from error
                pause = (error.retry_after if isinstance(error, RetryLater) else None) or poll
                logger.info("run %s: %s; polling again in %.1f s", run_id, error.message, pause)
                time.sleep(_until(deadline, pause))
                continue
            if on_progress is not None:
                on_progress(run)
            if run.terminal or run.paused:
                return run
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(
                    f"run {run_id} is still {run.status} after {timeout} s (epoch {run.epoch})",
                    run,
                )
            time.sleep(_until(deadline, poll))
