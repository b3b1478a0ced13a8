"""A synchronous Python client for the Backprop API.

::

    from backprop_client import Client

    with Client("http://127.0.0.1:8000") as bp:
        net = bp.create_network({"name": "xor", "input_size": 2, "layers": [
            {"units": 3, "activation": "sigmoid"}, {"units": 1, "activation": "sigmoid"}]})
        data = bp.create_dataset(builtin="xor")
        run = bp.create_run(net.id, data.id, loss="mse", epochs=2000, seed=1,
                            optimizer={"name": "sgd", "learning_rate": 2.0})
        run = bp.wait(run.id, on_progress=lambda r: print(r.epoch, r.loss))
        print(bp.predict(run.id, [[0, 1]]).predictions)

Every response is a typed model (:class:`Network`, :class:`Dataset`, :class:`Run`,
...). An error answer raises a subclass of :class:`BackpropError` carrying the
server's ``detail``; a server that cannot be reached raises
:class:`BackpropConnectionError`.

Retries: a request that meets a 503 (the server's database is unavailable for now),
a POST whose ``Idempotency-Key`` is still being processed (409 with ``Retry-After``)
or a connection error is sent again, up to ``retries`` times, after the server's
``Retry-After`` or an exponential backoff (each wait at most ``max_retry_wait``
seconds). Every POST carries an ``Idempotency-Key`` header (a uuid4), the same one
on each of its retries, so the server can answer a repeated POST with the first
answer instead of doing the work twice. A 429 is not retried: it says the tenant is
at a limit, and :attr:`RateLimited.retry_after` is for the caller to act on.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
from httpx_sse import connect_sse
from pydantic import BaseModel

from backprop_client.errors import (
    BackpropConnectionError,
    RetryLater,
    ServiceUnavailable,
    SweepWaitTimeout,
    WaitTimeout,
    error_from_response,
    retry_after_seconds,
)
from backprop_client.events import END, RunEvent, parse_event
from backprop_client.models import (
    Checkpoint,
    CheckpointDetail,
    Dataset,
    DatasetData,
    Evaluation,
    History,
    Network,
    Page,
    Prediction,
    Run,
    RunComparison,
    Sweep,
    Weights,
)

logger = logging.getLogger(__name__)

DEFAULT_URL = "http://127.0.0.1:8000"
IDEMPOTENCY_HEADER = "Idempotency-Key"
RETRY_STATUSES = frozenset({503})
"""Statuses a request is retried on (with connection errors)."""
IN_FLIGHT_STATUS = 409
"""The idempotency layer's answer to a POST whose key's first request is still being
processed: a 409 *with* ``Retry-After`` (a state conflict has none); retried like a 503,
and the retry gets the first request's answer."""
STREAM_READ_TIMEOUT = 60.0
"""Seconds an event stream may stay silent (the server sends a keep-alive every 15 s)."""

M = TypeVar("M", bound=BaseModel)

RESPONSE_MODELS: dict[tuple[str, str], type[BaseModel]] = {
    ("POST", "/v1/networks"): Network,
    ("GET", "/v1/networks/{network_id}"): Network,
    ("GET", "/v1/networks"): Page[Network],
    ("GET", "/v1/networks/{network_id}/weights"): Weights,
    ("POST", "/v1/datasets"): Dataset,
    ("POST", "/v1/datasets/csv"): Dataset,
    ("GET", "/v1/datasets/{dataset_id}"): Dataset,
    ("GET", "/v1/datasets"): Page[Dataset],
    ("GET", "/v1/datasets/{dataset_id}/data"): DatasetData,
    ("POST", "/v1/runs"): Run,
    ("GET", "/v1/runs/{run_id}"): Run,
    ("GET", "/v1/runs"): Page[Run],
    ("GET", "/v1/runs/{run_id}/history"): History,
    ("POST", "/v1/runs/{run_id}/cancel"): Run,
    ("POST", "/v1/runs/{run_id}/pause"): Run,
    ("POST", "/v1/runs/{run_id}/resume"): Run,
    ("GET", "/v1/runs/{run_id}/checkpoints"): Page[Checkpoint],
    ("GET", "/v1/checkpoints/{checkpoint_id}"): CheckpointDetail,
    ("GET", "/v1/runs/{run_id}/weights"): Weights,
    ("POST", "/v1/runs/{run_id}/predict"): Prediction,
    ("PATCH", "/v1/networks/{network_id}"): Network,
    ("PATCH", "/v1/datasets/{dataset_id}"): Dataset,
    ("PATCH", "/v1/runs/{run_id}"): Run,
    ("POST", "/v1/runs/{run_id}/evaluate"): Evaluation,
    ("POST", "/v1/networks/{network_id}/evaluate"): Evaluation,
    ("GET", "/v1/runs/compare"): RunComparison,
    ("POST", "/v1/sweeps"): Sweep,
    ("GET", "/v1/sweeps/{sweep_id}"): Sweep,
    ("GET", "/v1/sweeps"): Page[Sweep],
    ("POST", "/v1/sweeps/{sweep_id}/cancel"): Sweep,
}
"""The model the client reads each JSON answer into (checked against the server's
``/openapi.json`` by the contract test)."""


def _retryable(response: httpx.Response) -> bool:
    """A 503, or a POST's idempotency key still in flight (409 with ``Retry-After``)."""
    if response.status_code in RETRY_STATUSES:
        return True
    in_flight = response.status_code == IN_FLIGHT_STATUS and "retry-after" in response.headers
    return in_flight and response.request.method == "POST"


def _jsonable(value: Any) -> Any:
    """Arrays and scalars with ``tolist`` (NumPy's) as JSON lists and numbers."""
    tolist = getattr(value, "tolist", None)
    return tolist() if callable(tolist) else value


def _drop_none(values: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


_UNSET: Any = object()
"""A keyword left out (``name=None`` clears a run's name, so None cannot mean "unset")."""


def _labels(
    name: Any, tags: Sequence[str] | None, metadata: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The ``PATCH`` body: only the fields given."""
    body: dict[str, Any] = {} if name is _UNSET else {"name": name}
    if tags is not None:
        body["tags"] = list(tags)
    if metadata is not None:
        body["metadata"] = dict(metadata)
    return body


def _filters(
    tags: Sequence[str] | None = None,
    name_prefix: str | None = None,
    created_after: datetime | str | None = None,
    created_before: datetime | str | None = None,
) -> dict[str, Any]:
    """The list filters every list takes, as query parameters (``tag`` repeated)."""
    return {
        "tag": list(tags) if tags else None,
        "name_prefix": name_prefix,
        "created_after": _isoformat(created_after),
        "created_before": _isoformat(created_before),
    }


def _isoformat(value: datetime | str | None) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else value


def _data_body(dataset_id: str | None, X: Any, y: Any, **extra: Any) -> dict[str, Any]:
    """An evaluate body: a stored dataset or inline ``X`` and ``y`` (exactly one)."""
    if (dataset_id is None) == (X is None):
        raise ValueError("pass dataset_id or X and y (exactly one)")
    if X is not None and y is None:
        raise ValueError("X needs y")
    body = {"dataset_id": dataset_id, "X": _jsonable(X), "y": _jsonable(y), **extra}
    return _drop_none(body)


def _until(deadline: float | None, seconds: float) -> float:
    """``seconds``, cut short at ``deadline`` (a ``time.monotonic()`` value)."""
    return seconds if deadline is None else max(0.0, min(seconds, deadline - time.monotonic()))


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
    retries : int
        How many times a request is sent again after a 503 or a connection error.
    max_retry_wait : float
        The longest wait before a retry, in seconds (``Retry-After`` is capped to it).
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
        retries: int = 3,
        max_retry_wait: float = 10.0,
        http: httpx.Client | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if retries < 0:
            raise ValueError(f"retries must be at least 0, got {retries}")
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        self.retries = retries
        self.max_retry_wait = max_retry_wait
        self._owns_http = http is None
        self._http = http or httpx.Client(timeout=timeout, transport=transport)

    # ------------------------------------------------------------------ plumbing

    def close(self) -> None:
        """Close the HTTP connection pool (unless it was passed in)."""
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        headers = dict(extra or {})
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        """Seconds before retry ``attempt`` (0-based): ``Retry-After``, else 0.5 s doubling."""
        wait = retry_after if retry_after is not None else 0.5 * 2**attempt
        return max(0.0, min(wait, self.max_retry_wait))

    def _unreachable(self, exc: httpx.TransportError) -> BackpropConnectionError:
        return BackpropConnectionError(
            f"cannot reach the Backprop server at {self.base_url}: {exc}"
        )

    def request(
        self, method: str, path: str, *, retries: int | None = None, **kwargs: Any
    ) -> httpx.Response:
        """Send a request to ``base_url + path``; raise the typed error for a non-2xx answer.

        A POST gets an ``Idempotency-Key`` (unless ``headers`` has one), kept across
        its retries. ``retries`` overrides the client's count for this request.
        """
        headers = self._headers(kwargs.pop("headers", None))
        if method.upper() == "POST" and not any(
            name.lower() == IDEMPOTENCY_HEADER.lower() for name in headers
        ):
            headers[IDEMPOTENCY_HEADER] = str(uuid.uuid4())
        allowed = self.retries if retries is None else retries
        url = self.base_url + path
        for attempt in range(allowed + 1):
            try:
                response = self._http.request(method, url, headers=headers, **kwargs)
            except httpx.TransportError as exc:
                if attempt == allowed:
                    raise self._unreachable(exc) from exc
                reason, wait = str(exc) or type(exc).__name__, self._backoff(attempt, None)
            else:
                if not response.is_error:
                    return response
                error = error_from_response(response)
                if not _retryable(response) or attempt == allowed:
                    raise error
                retry_after = error.retry_after if isinstance(error, RetryLater) else None
                if response.status_code == IN_FLIGHT_STATUS:
                    retry_after = retry_after_seconds(response.headers.get("retry-after"))
                reason, wait = error.message, self._backoff(attempt, retry_after)
            logger.info("%s %s: %s; retrying in %.1f s", method, path, reason, wait)
            time.sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover

    def _get(self, path: str, model: type[M], *, retries: int | None = None, **params: Any) -> M:
        response = self.request("GET", path, retries=retries, params=_drop_none(params))
        return model.model_validate(response.json())

    def _post(self, path: str, model: type[M], body: Any = None) -> M:
        response = self.request("POST", path, json=body)
        return model.model_validate(response.json())

    def _patch(self, path: str, model: type[M], body: Mapping[str, Any]) -> M:
        response = self.request("PATCH", path, json=dict(body))
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

    def networks_page(
        self,
        *,
        limit: int = 20,
        after: str | None = None,
        tags: Sequence[str] | None = None,
        name_prefix: str | None = None,
        created_after: datetime | str | None = None,
        created_before: datetime | str | None = None,
    ) -> Page[Network]:
        """One page of networks, newest first; ``tags`` must all match."""
        filters = _filters(tags, name_prefix, created_after, created_before)
        return self._page("/v1/networks", Network, limit=limit, after=after, **filters)

    def list_networks(
        self,
        *,
        tags: Sequence[str] | None = None,
        name_prefix: str | None = None,
        created_after: datetime | str | None = None,
        created_before: datetime | str | None = None,
        page_size: int = 100,
    ) -> Iterator[Network]:
        """Every network matching the filters, newest first, fetching pages as the
        iteration goes."""
        filters = _filters(tags, name_prefix, created_after, created_before)
        return self._iterate("/v1/networks", Network, page_size, **filters)

    def update_network(
        self,
        network_id: str,
        *,
        name: str = _UNSET,
        tags: Sequence[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Network:
        """``PATCH`` a network's name, tags (the whole list) or metadata (the whole
        object); only the fields given are sent."""
        body = _labels(name, tags, metadata)
        return self._patch(f"/v1/networks/{network_id}", Network, body)

    def evaluate_network(
        self,
        network_id: str,
        *,
        dataset_id: str | None = None,
        X: Any = None,
        y: Any = None,
        loss: str | None = None,
        loss_options: Mapping[str, Any] | None = None,
    ) -> Evaluation:
        """The loss and metrics of the network's initial weights on a stored dataset
        or on ``X`` and ``y`` (no training)."""
        body = _data_body(
            dataset_id,
            X,
            y,
            loss=loss,
            loss_options=None if loss_options is None else dict(loss_options),
        )
        return self._post(f"/v1/networks/{network_id}/evaluate", Evaluation, body)

    def delete_network(self, network_id: str, *, cascade: bool = False) -> None:
        """Delete a network (:class:`Conflict` while runs use it, unless ``cascade``, which
        deletes those runs too; still :class:`Conflict` while one is unfinished)."""
        params = {"cascade": "true"} if cascade else None
        self.request("DELETE", f"/v1/networks/{network_id}", params=params)

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
        tags: Sequence[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Dataset:
        """Upload ``X`` and ``y`` (lists or NumPy arrays), or create a built-in dataset.

        ``create_dataset("xor", X, y)`` or ``create_dataset(builtin="moons", seed=1)``;
        ``tags`` and ``metadata`` label it.
        """
        labels = _labels(_UNSET, tags, metadata)
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
        return self._post("/v1/datasets", Dataset, {**body, **labels})

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

    def datasets_page(
        self,
        *,
        limit: int = 20,
        after: str | None = None,
        tags: Sequence[str] | None = None,
        name_prefix: str | None = None,
        created_after: datetime | str | None = None,
        created_before: datetime | str | None = None,
    ) -> Page[Dataset]:
        """One page of datasets, newest first; ``tags`` must all match."""
        filters = _filters(tags, name_prefix, created_after, created_before)
        return self._page("/v1/datasets", Dataset, limit=limit, after=after, **filters)

    def list_datasets(
        self,
        *,
        tags: Sequence[str] | None = None,
        name_prefix: str | None = None,
        created_after: datetime | str | None = None,
        created_before: datetime | str | None = None,
        page_size: int = 100,
    ) -> Iterator[Dataset]:
        """Every dataset matching the filters, newest first."""
        filters = _filters(tags, name_prefix, created_after, created_before)
        return self._iterate("/v1/datasets", Dataset, page_size, **filters)

    def update_dataset(
        self,
        dataset_id: str,
        *,
        name: str = _UNSET,
        tags: Sequence[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Dataset:
        """``PATCH`` a dataset's name, tags or metadata (only the fields given)."""
        body = _labels(name, tags, metadata)
        return self._patch(f"/v1/datasets/{dataset_id}", Dataset, body)

    def delete_dataset(self, dataset_id: str, *, cascade: bool = False) -> None:
        """Delete a dataset (:class:`Conflict` while runs use it, unless ``cascade``, as
        :meth:`delete_network`)."""
        params = {"cascade": "true"} if cascade else None
        self.request("DELETE", f"/v1/datasets/{dataset_id}", params=params)

    def dataset_data(
        self, dataset_id: str, *, offset: int = 0, limit: int | None = None
    ) -> DatasetData:
        """Rows ``offset`` to ``offset + limit`` of the dataset's ``X`` and ``y`` (the
        server's default page is 100 rows)."""
        return self._get(
            f"/v1/datasets/{dataset_id}/data", DatasetData, offset=offset or None, limit=limit
        )

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
        sweep_id: str | None = None,
        tags: Sequence[str] | None = None,
        name_prefix: str | None = None,
        created_after: datetime | str | None = None,
        created_before: datetime | str | None = None,
        sort: str | None = None,
    ) -> Page[Run]:
        """One page of runs, optionally filtered (``tags`` must all match) and sorted
        (``sort``: ``created_at``, ``loss``, ``val_loss``, ``best_loss``, ``best_epoch``,
        ``epoch``, ``name`` or ``metric:<name>``; a leading ``-`` for descending; the
        server's default ``-created_at``)."""
        return self._page(
            "/v1/runs",
            Run,
            limit=limit,
            after=after,
            status=status,
            network_id=network_id,
            dataset_id=dataset_id,
            sweep_id=sweep_id,
            sort=sort,
            **_filters(tags, name_prefix, created_after, created_before),
        )

    def list_runs(
        self,
        *,
        status: str | None = None,
        network_id: str | None = None,
        dataset_id: str | None = None,
        sweep_id: str | None = None,
        tags: Sequence[str] | None = None,
        name_prefix: str | None = None,
        created_after: datetime | str | None = None,
        created_before: datetime | str | None = None,
        sort: str | None = None,
        page_size: int = 100,
    ) -> Iterator[Run]:
        """Every run matching the filters, in ``sort`` order (as :meth:`runs_page`)."""
        return self._iterate(
            "/v1/runs",
            Run,
            page_size,
            status=status,
            network_id=network_id,
            dataset_id=dataset_id,
            sweep_id=sweep_id,
            sort=sort,
            **_filters(tags, name_prefix, created_after, created_before),
        )

    def update_run(
        self,
        run_id: str,
        *,
        name: str | None = _UNSET,
        tags: Sequence[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Run:
        """``PATCH`` a run's name (None clears it), tags (the whole list) or metadata
        (the whole object); only the fields given are sent."""
        body = _labels(name, tags, metadata)
        return self._patch(f"/v1/runs/{run_id}", Run, body)

    def evaluate_run(
        self,
        run_id: str,
        *,
        dataset_id: str | None = None,
        X: Any = None,
        y: Any = None,
        checkpoint_id: str | None = None,
    ) -> Evaluation:
        """The loss and metrics of the run's weights (those ``GET /weights`` serves, or
        ``checkpoint_id``'s) on a stored dataset or on ``X`` and ``y``."""
        body = _data_body(dataset_id, X, y, checkpoint_id=checkpoint_id)
        return self._post(f"/v1/runs/{run_id}/evaluate", Evaluation, body)

    def compare_runs(self, run_ids: Sequence[str]) -> RunComparison:
        """Runs side by side: config fields (``differs`` marked), final and best results."""
        return self._get("/v1/runs/compare", RunComparison, ids=",".join(run_ids))

    def compare_plot(
        self,
        run_ids: Sequence[str],
        *,
        metric: str = "val_loss",
        log: bool = False,
        width: int | None = None,
        height: int | None = None,
    ) -> bytes:
        """A PNG overlaying the runs' ``metric`` against the epoch (``log``: log y axis)."""
        params = _drop_none(
            {
                "runs": ",".join(run_ids),
                "metric": metric,
                "log": "true" if log else None,
                "width": width,
                "height": height,
            }
        )
        return self.request("GET", "/v1/plots/compare.png", params=params).content

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

    def delete_run(self, run_id: str, *, force: bool = False) -> None:
        """Delete a run with its history and checkpoints (:class:`Conflict` while it is
        unfinished, unless ``force``, which cancels it first)."""
        params = {"force": "true"} if force else None
        self.request("DELETE", f"/v1/runs/{run_id}", params=params)

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

    def checkpoint(self, checkpoint_id: str) -> CheckpointDetail:
        """One checkpoint with its weights."""
        return self._get(f"/v1/checkpoints/{checkpoint_id}", CheckpointDetail)

    def run_weights(self, run_id: str) -> Weights:
        """Final weights of a finished run, else its latest checkpoint (:class:`Conflict`
        if it has none yet)."""
        return self._get(f"/v1/runs/{run_id}/weights", Weights)

    def export(self, run_id: str, format: str = "onnx") -> bytes:
        """The run's weights as a file: ``onnx``, ``npz`` or ``json`` (``GET .../export``).

        The npz holds ``layer<i>.weights``, ``layer<i>.bias`` and ``spec`` (the
        network, run and epoch as UTF-8 JSON bytes).
        """
        return self.request("GET", f"/v1/runs/{run_id}/export", params={"format": format}).content

    def predict(self, run_id: str, X: Any) -> Prediction:
        """Outputs of the run's network for ``X`` (rows of inputs, a list or an array)."""
        return self._post(f"/v1/runs/{run_id}/predict", Prediction, {"X": _jsonable(X)})

    # ------------------------------------------------------------------ following a run

    def events(self, run_id: str, *, after: int | None = None) -> Iterator[RunEvent]:
        """The run's Server-Sent Events, from ``GET /v1/runs/{id}/events``, until ``end``.

        ``after`` starts after that epoch (``0`` replays the whole history); without
        it the server starts with the stored history. A dropped connection (or a
        503, or a stream that closes before ``end``) is reopened with
        ``Last-Event-ID`` set to the last epoch seen, so no epoch arrives twice; up
        to ``retries`` times in a row, after the server's ``retry`` interval or the
        backoff. Errors that are not transient (404, 401, 429) raise at once.
        """
        last_id, failures = after, 0
        url = f"{self.base_url}/v1/runs/{run_id}/events"
        timeout = httpx.Timeout(self.timeout, read=max(self.timeout, STREAM_READ_TIMEOUT))
        reconnect_wait: float | None = None
        while True:
            extra = {} if last_id is None else {"Last-Event-ID": str(last_id)}
            try:
                with connect_sse(
                    self._http, "GET", url, headers=self._headers(extra), timeout=timeout
                ) as source:
                    if source.response.is_error:
                        source.response.read()
                        raise error_from_response(source.response)
                    for sse in source.iter_sse():
                        if sse.retry is not None:
                            reconnect_wait = sse.retry / 1000
                        if not sse.data:  # a ``retry:`` line alone
                            continue
                        failures = 0
                        event = parse_event(sse)
                        last_id = int(sse.id) if sse.id.isdigit() else last_id
                        yield event
                        if event.event == END:
                            return
                reason = "the stream closed before its end event"
            except httpx.TransportError as exc:
                if failures >= self.retries:
                    raise self._unreachable(exc) from exc
                reason = str(exc) or type(exc).__name__
            except ServiceUnavailable as exc:
                if failures >= self.retries:
                    raise
                reason, reconnect_wait = exc.message, exc.retry_after or reconnect_wait
            if failures >= self.retries:
                raise BackpropConnectionError(f"run {run_id}: {reason}")
            wait = self._backoff(failures, reconnect_wait)
            failures += 1
            logger.info("run %s events: %s; reconnecting in %.1f s", run_id, reason, wait)
            time.sleep(wait)

    # ------------------------------------------------------------------ sweeps

    def create_sweep(
        self,
        dataset_id: str,
        parameters: Mapping[str, Mapping[str, Any]],
        *,
        network_id: str | None = None,
        network: Mapping[str, Any] | None = None,
        config: Mapping[str, Any] | None = None,
        **fields: Any,
    ) -> Sweep:
        """Start a sweep: ``parameters`` maps dotted paths into ``config`` (the run
        config) to ``{"log_uniform"|"uniform"|"int_uniform": [lo, hi]}`` or
        ``{"choice": [...]}``; ``fields`` are the rest of the ``POST /v1/sweeps`` body
        (``method``, ``max_trials``, ``parallelism``, ``objective``, ``seed``,
        ``early_stopping``, ``name``, ``tags``, ``metadata``)."""
        body = _drop_none(
            {
                "dataset_id": dataset_id,
                "network_id": network_id,
                "network": dict(network) if network is not None else None,
                "config": dict(config or {}),
                "parameters": {path: dict(spec) for path, spec in parameters.items()},
                **fields,
            }
        )
        return self._post("/v1/sweeps", Sweep, body)

    def get_sweep(self, sweep_id: str) -> Sweep:
        """One sweep with its trials."""
        return self._get(f"/v1/sweeps/{sweep_id}", Sweep)

    def sweeps_page(
        self,
        *,
        limit: int = 20,
        after: str | None = None,
        status: str | None = None,
        tags: Sequence[str] | None = None,
        name_prefix: str | None = None,
        created_after: datetime | str | None = None,
        created_before: datetime | str | None = None,
    ) -> Page[Sweep]:
        """One page of sweeps, newest first, optionally filtered."""
        return self._page(
            "/v1/sweeps",
            Sweep,
            limit=limit,
            after=after,
            status=status,
            **_filters(tags, name_prefix, created_after, created_before),
        )

    def list_sweeps(
        self,
        *,
        status: str | None = None,
        tags: Sequence[str] | None = None,
        name_prefix: str | None = None,
        created_after: datetime | str | None = None,
        created_before: datetime | str | None = None,
        page_size: int = 100,
    ) -> Iterator[Sweep]:
        """Every sweep matching the filters, newest first."""
        return self._iterate(
            "/v1/sweeps",
            Sweep,
            page_size,
            status=status,
            **_filters(tags, name_prefix, created_after, created_before),
        )

    def cancel_sweep(self, sweep_id: str) -> Sweep:
        """Cancel a sweep and its unfinished trials (idempotent)."""
        return self._post(f"/v1/sweeps/{sweep_id}/cancel", Sweep)

    def wait_sweep(
        self, sweep_id: str, *, poll: float = 1.0, timeout: float | None = None
    ) -> Sweep:
        """Poll the sweep until it succeeded, failed or was cancelled; return it.

        Raises :class:`SweepWaitTimeout` (with the last sweep) after ``timeout`` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            sweep = self.get_sweep(sweep_id)
            if sweep.terminal:
                return sweep
            if deadline is not None and time.monotonic() >= deadline:
                message = f"sweep {sweep_id} is still {sweep.status} after {timeout} s"
                raise SweepWaitTimeout(message, sweep)
            time.sleep(_until(deadline, poll))

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
                run = last = self._get(f"/v1/runs/{run_id}", Run, retries=0)
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
