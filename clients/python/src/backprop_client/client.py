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

Retries: a request that meets a 503 (the server's database is unavailable for now)
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
from pathlib import Path
from typing import Any, TypeVar

import httpx
from httpx_sse import connect_sse
from pydantic import BaseModel

from backprop_client.errors import (
    BackpropConnectionError,
    RetryLater,
    ServiceUnavailable,
    WaitTimeout,
    error_from_response,
)
from backprop_client.events import END, RunEvent, parse_event
from backprop_client.models import (
    Checkpoint,
    CheckpointDetail,
    Dataset,
    DatasetData,
    History,
    Network,
    Page,
    Prediction,
    Run,
    Weights,
)

logger = logging.getLogger(__name__)

DEFAULT_URL = "http://127.0.0.1:8000"
IDEMPOTENCY_HEADER = "Idempotency-Key"
RETRY_STATUSES = frozenset({503})
"""Statuses a request is retried on (with connection errors)."""
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
}
"""The model the client reads each JSON answer into (checked against the server's
``/openapi.json`` by the contract test)."""


def _jsonable(value: Any) -> Any:
    """Arrays and scalars with ``tolist`` (NumPy's) as JSON lists and numbers."""
    tolist = getattr(value, "tolist", None)
    return tolist() if callable(tolist) else value


def _drop_none(values: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


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
                if response.status_code not in RETRY_STATUSES or attempt == allowed:
                    raise error
                retry_after = error.retry_after if isinstance(error, RetryLater) else None
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
