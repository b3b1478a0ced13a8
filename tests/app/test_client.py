"""backprop_client.Client against the real app: every method and every error type."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from backprop_client import (
    BackpropConnectionError,
    BackpropError,
    Checkpoint,
    CheckpointDetail,
    Client,
    Conflict,
    Dataset,
    InvalidRequest,
    Network,
    NotFound,
    Page,
    PayloadTooLarge,
    RateLimited,
    Run,
    ServerError,
    StorageQuotaExceeded,
    Unauthorized,
    WaitTimeout,
)

from app.main import create_app
from tests.conftest import XOR_NETWORK, XOR_X, XOR_Y
from tests.support.live_app import serve_app
from tests.support.server import free_port

XOR_RUN: dict[str, Any] = {
    "loss": "mse",
    "optimizer": {"name": "sgd", "learning_rate": 0.5, "momentum": 0.9},
    "epochs": 2000,
    "seed": 1,
}


@contextmanager
def api(make_client: Callable[..., Any], **settings: Any) -> Iterator[Client]:
    """A Client whose HTTP goes to the app in this process (TestClient's transport)."""
    api_key = settings.pop("api_key", None)
    with make_client(**settings) as test_client:
        yield Client(str(test_client.base_url), api_key=api_key, http=test_client)


@pytest.fixture
def bp(make_client: Callable[..., Any]) -> Iterator[Client]:
    with api(make_client) as client:
        yield client


@pytest.fixture
def live_bp(make_client: Callable[..., Any]) -> Iterator[Client]:
    with api(make_client, workers=1) as client:
        yield client


def test_networks(bp: Client) -> None:
    created = [bp.create_network(XOR_NETWORK, name=f"n{i}") for i in range(3)]
    assert all(isinstance(net, Network) for net in created)
    assert created[0].n_parameters == 13 and created[0].init["seed"] == 7
    assert bp.get_network(created[0].id) == created[0]
    page = bp.networks_page(limit=2)
    assert isinstance(page, Page) and page.has_more and len(page.data) == 2
    assert [net.id for net in bp.list_networks(page_size=2)] == [n.id for n in created[::-1]]
    weights = bp.network_weights(created[0].id)
    assert weights.epoch == 0 and [w.shape for w, _ in weights.arrays()] == [(2, 3), (3, 1)]
    explicit = bp.create_network(
        XOR_NETWORK,
        weights=[
            {"weights": np.ones((2, 3)), "bias": np.zeros(3)},
            {"weights": np.ones((3, 1)), "bias": np.full(1, 0.5)},
        ],
    )
    assert bp.network_weights(explicit.id).arrays()[1][1] == [0.5]
    bp.delete_network(created[0].id)
    with pytest.raises(NotFound) as caught:
        bp.get_network(created[0].id)
    assert caught.value.status_code == 404 and created[0].id in caught.value.detail


def test_datasets(bp: Client, tmp_path: Path) -> None:
    inline = bp.create_dataset("xor", np.array(XOR_X), np.array(XOR_Y))
    assert isinstance(inline, Dataset) and (inline.n_samples, inline.n_features) == (4, 2)
    data = bp.dataset_data(inline.id)
    assert data.X == XOR_X and data.y == XOR_Y
    X, y = data.arrays()
    assert X.dtype == np.float64 and y.shape == (4, 1)
    moons = bp.create_dataset(builtin="moons", n_samples=40, noise=0.2, seed=5)
    assert (moons.name, moons.n_samples, moons.target_type) == ("moons", 40, "labels")
    iris = bp.create_dataset("flowers", builtin="iris")
    assert (iris.name, iris.n_samples, iris.n_features) == ("flowers", 150, 4)
    csv = tmp_path / "table.csv"
    csv.write_text("a,b,t\n0,0,0\n0,1,1\n1,0,1\n1,1,0\n")
    from_path = bp.upload_csv(csv, "t")
    from_bytes = bp.upload_csv(csv.read_bytes(), ["t"], name="bytes")
    assert from_path.name == "table" and from_bytes.name == "bytes"
    assert from_path.sha256 == from_bytes.sha256
    assert bp.get_dataset(iris.id) == iris
    assert bp.datasets_page(limit=1).data == [from_bytes]
    assert len(list(bp.list_datasets(page_size=2))) == 5
    bp.delete_dataset(iris.id)
    with pytest.raises(NotFound):
        bp.dataset_data(iris.id)


def test_runs_end_to_end(live_bp: Client) -> None:
    network = live_bp.create_network(XOR_NETWORK)
    dataset = live_bp.create_dataset(builtin="xor")
    run = live_bp.create_run(network.id, dataset.id, checkpoint_every=500, **XOR_RUN)
    assert isinstance(run, Run) and run.status in ("queued", "running")
    seen: list[Run] = []
    done = live_bp.wait(run.id, poll=0.05, timeout=60, on_progress=seen.append)
    assert done.status == "succeeded" and done.terminal and done.epoch == 2000
    assert seen[-1] == done and all(isinstance(r, Run) for r in seen)
    assert live_bp.get_run(run.id) == done
    history = live_bp.history(run.id, max_points=10)
    assert len(history.epoch) == 10 and history.epoch[-1] == 2000 and history.loss[-1] == done.loss
    assert live_bp.history(run.id, after_epoch=1990).epoch == list(range(1991, 2001))
    checkpoints = live_bp.checkpoints(run.id)
    assert [c.epoch for c in checkpoints] == [2000, 1500, 1000, 500]
    assert all(type(c) is Checkpoint and "layers" not in c.model_dump() for c in checkpoints)
    detail = live_bp.checkpoint(checkpoints[-1].id)
    assert isinstance(detail, CheckpointDetail) and detail.epoch == 500
    assert len(detail.layers) == 2
    weights = live_bp.run_weights(run.id)
    assert weights.epoch == 2000
    exported = json.loads(live_bp.export(run.id, "json"))
    assert exported["layers"] == weights.model_dump(mode="json")["layers"]
    assert live_bp.export(run.id, "npz")[:2] == b"PK" and live_bp.export(run.id)[:1] == b"\x08"
    prediction = live_bp.predict(run.id, np.array(XOR_X))
    assert prediction.epoch == 2000
    assert np.array_equal(np.round(prediction.array()).ravel(), [0, 1, 1, 0])
    assert [r.id for r in live_bp.list_runs(status="succeeded")] == [run.id]
    assert list(live_bp.list_runs(status="failed")) == []
    assert live_bp.runs_page(network_id=network.id).data[0].id == run.id
    assert live_bp.cancel(run.id).status == "succeeded"  # idempotent on a finished run
    assert live_bp.health()["status"] == "ok"


def test_cancel_and_wait_timeout(bp: Client) -> None:
    network = bp.create_network(XOR_NETWORK)
    dataset = bp.create_dataset("xor", XOR_X, XOR_Y)
    run = bp.create_run(network.id, dataset.id, **XOR_RUN)  # no workers: it stays queued
    with pytest.raises(WaitTimeout) as caught:
        bp.wait(run.id, poll=0.05, timeout=0.2)
    assert caught.value.run.status == "queued" and isinstance(caught.value, TimeoutError)
    with pytest.raises(Conflict) as conflict:
        bp.delete_dataset(dataset.id)
    assert conflict.value.status_code == 409 and "is used by 1 run" in conflict.value.detail
    with pytest.raises(Conflict):
        bp.run_weights(run.id)
    cancelled = bp.cancel(run.id)
    assert cancelled.status == "cancelled" and cancelled.terminal
    assert bp.wait(run.id).status == "cancelled"


def test_invalid_request_carries_the_detail_list(bp: Client) -> None:
    bad = {**XOR_NETWORK, "layers": [{"units": 3, "activation": "sigmoid"}, {"units": 1}]}
    with pytest.raises(InvalidRequest) as caught:
        bp.create_network(bad)
    error = caught.value
    assert error.status_code == 422 and isinstance(error.detail, list)
    assert error.fields == ["body.layers.1.activation"]
    assert "body.layers.1.activation" in str(error)
    with pytest.raises(InvalidRequest) as builtin:
        bp.create_dataset(builtin="mnist")
    assert builtin.value.fields == ["body.builtin"]


def test_payload_too_large(make_client: Callable[..., Any]) -> None:
    with api(make_client, max_body_bytes=2048) as bp, pytest.raises(PayloadTooLarge) as caught:
        bp.create_dataset("big", [[0.5] * 10] * 100, [0] * 100)
    assert caught.value.status_code == 413 and "limit" in caught.value.detail


def test_unauthorized(make_client: Callable[..., Any]) -> None:
    with api(make_client, api_keys="sesame") as bp, pytest.raises(Unauthorized) as caught:
        bp.list_networks().__next__()
    assert caught.value.status_code == 401 and "bearer" in caught.value.detail
    with api(make_client, api_keys="sesame", api_key="sesame") as bp:
        assert list(bp.list_networks()) == []


def test_rate_limited(make_client: Callable[..., Any]) -> None:
    with api(make_client, max_active_runs=1) as bp:
        network = bp.create_network(XOR_NETWORK)
        dataset = bp.create_dataset(builtin="xor")
        bp.create_run(network.id, dataset.id, **XOR_RUN)
        with pytest.raises(RateLimited) as caught:
            bp.create_run(network.id, dataset.id, **XOR_RUN)
    assert caught.value.status_code == 429
    assert caught.value.retry_after is not None and caught.value.retry_after > 0


def test_storage_quota_exceeded(make_client: Callable[..., Any]) -> None:
    with api(make_client, storage_quota_bytes=2048) as bp:
        bp.create_dataset("small", [[0.5]] * 10, [0] * 10)
        with pytest.raises(StorageQuotaExceeded) as caught:
            bp.create_dataset("big", [[0.5] * 10] * 100, [0] * 100)
    assert caught.value.status_code == 507
    assert not isinstance(caught.value, ServerError)
    assert "BACKPROP_STORAGE_QUOTA_BYTES" in caught.value.detail


def mock_client(status: int, **response: Any) -> Client:
    transport = httpx.MockTransport(lambda request: httpx.Response(status, **response))
    return Client("http://backprop.test", transport=transport, retries=0)


def test_server_errors_and_unknown_statuses() -> None:
    with pytest.raises(ServerError) as caught:
        mock_client(503, json={"detail": "database is down"}).get_run("run_x")
    assert caught.value.status_code == 503 and caught.value.detail == "database is down"
    assert str(caught.value) == "503 Service Unavailable: database is down"
    with pytest.raises(ServerError) as html:
        mock_client(502, text="<html>bad gateway</html>").health()
    assert "bad gateway" in html.value.detail
    with pytest.raises(BackpropError) as other:
        mock_client(418, json={"detail": "teapot"}).health()
    assert type(other.value) is BackpropError and other.value.status_code == 418
    with pytest.raises(RateLimited) as limited:
        mock_client(429, json={"detail": "slow down"}, headers={"Retry-After": "7"}).health()
    assert limited.value.retry_after == 7.0


def test_connection_error() -> None:
    bp = Client(f"http://127.0.0.1:{free_port()}", timeout=2, retries=0)
    with bp, pytest.raises(BackpropConnectionError) as caught:
        bp.get_network("net_x")
    assert caught.value.status_code is None and "cannot reach" in str(caught.value)


def test_events_from_the_real_server(settings_for: Callable[..., Any]) -> None:
    """``Client.events`` reads the server's stream (httpx-sse) until ``end``; ``after``
    resumes exactly after an epoch (the server's Last-Event-ID replay)."""
    app = create_app(settings_for(workers=1, flush_seconds=0.05))
    with serve_app(app) as live, Client(live.url) as bp:
        network = bp.create_network(XOR_NETWORK)
        dataset = bp.create_dataset(builtin="xor")
        run = bp.create_run(network.id, dataset.id, **{**XOR_RUN, "epochs": 300})
        events = list(bp.events(run.id))
        assert events[-1].event == "end" and events[-1].status == "succeeded"
        assert events[-1].epoch == 300
        epochs = [e.id for e in events if e.event == "progress"]
        assert epochs == sorted(set(epochs)) and epochs[-1] == 300
        assert all(isinstance(e.loss, float) for e in events if e.event == "progress")
        resumed = list(bp.events(run.id, after=290))
        assert [e.id for e in resumed if e.event == "progress"] == list(range(291, 301))
        assert resumed[-1].event == "end"
        with pytest.raises(NotFound):
            list(bp.events("run_missing"))


def test_deletes_cascade_force_and_paged_data(bp: Client) -> None:
    network = bp.create_network(XOR_NETWORK)
    dataset = bp.create_dataset("xor", XOR_X, XOR_Y)
    run = bp.create_run(network.id, dataset.id, **XOR_RUN)  # no workers: it stays queued
    assert XOR_X[1:3] == bp.dataset_data(dataset.id, offset=1, limit=2).X
    with pytest.raises(Conflict) as unfinished:
        bp.delete_run(run.id)
    assert "force=true" in unfinished.value.detail
    bp.delete_run(run.id, force=True)
    with pytest.raises(NotFound):
        bp.get_run(run.id)
    done = bp.create_run(network.id, dataset.id, **XOR_RUN)
    bp.cancel(done.id)
    with pytest.raises(Conflict):
        bp.delete_network(network.id)
    bp.delete_network(network.id, cascade=True)
    with pytest.raises(NotFound):
        bp.get_run(done.id)
    bp.delete_dataset(dataset.id)
