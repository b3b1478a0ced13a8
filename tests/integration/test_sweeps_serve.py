"""Sweeps on a real ``backprop serve``: a ``kill -9`` of the whole service mid-sweep and a
restart (local pool), and a sweep on the Celery executor (compose-equivalent stack)."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import engine
from app.config import Settings
from tests.conftest import XOR_NETWORK, XOR_X, XOR_Y
from tests.support.compose import Stack, stacks
from tests.support.history import full_history
from tests.support.processes import alive
from tests.support.services import PostgresServer, RedisServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ENV = {
    "BACKPROP_WORKERS": 2,
    "BACKPROP_LEASE_SECONDS": 2,
    "BACKPROP_FLUSH_SECONDS": 0.2,
    "BACKPROP_AUTO_CHECKPOINT_SECONDS": 0.3,
}
EPOCHS = 90_000  # well over a second of XOR per trial
RUNG = 30_000


def _xor(client: httpx.Client) -> tuple[str, str]:
    network = client.post("/v1/networks", json=XOR_NETWORK)
    dataset = client.post("/v1/datasets", json={"name": "xor", "X": XOR_X, "y": XOR_Y})
    assert network.status_code == 201 and dataset.status_code == 201, dataset.text
    return network.json()["id"], dataset.json()["id"]


def _body(network_id: str, dataset_id: str, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "network_id": network_id,
        "dataset_id": dataset_id,
        "config": {"loss": "mse", "optimizer": {"name": "sgd", "momentum": 0.9}, "seed": 1},
        "parameters": {"optimizer.learning_rate": {"log_uniform": [0.05, 1.0]}},
        "method": "random",
        "max_trials": 4,
        "parallelism": 2,
        "objective": {"metric": "loss", "mode": "min"},
        "seed": 4,
    }
    body.update(overrides)
    return body


def _get(client: httpx.Client, sweep_id: str) -> dict[str, Any]:
    response = client.get(f"/v1/sweeps/{sweep_id}")
    assert response.status_code == 200, response.text
    sweep: dict[str, Any] = response.json()
    return sweep


def _wait(
    client: httpx.Client, sweep_id: str, predicate: Callable[[dict[str, Any]], bool], timeout: float
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while not predicate(sweep := _get(client, sweep_id)):
        assert time.monotonic() < deadline, f"timed out: {sweep}"
        time.sleep(0.2)
    return sweep


def _ended(sweep: dict[str, Any]) -> bool:
    return sweep["status"] in ("succeeded", "failed", "cancelled")


def _training(client: httpx.Client) -> Callable[[dict[str, Any]], bool]:
    def check(sweep: dict[str, Any]) -> bool:
        for trial in sweep["trials"]:
            run = client.get(f"/v1/runs/{trial['run_id']}").json()
            if run["status"] == "running" and run["epoch"] > 0:
                return True
        return False

    return check


def test_kill9_mid_sweep_and_restart_completes_it_training_no_trial_twice(serve: Any) -> None:
    server = serve(**ENV)
    asha = {"type": "asha", "min_epochs": RUNG, "reduction_factor": 3}
    with httpx.Client(base_url=server.url, timeout=30) as client:
        network_id, dataset_id = _xor(client)
        config = {**_body(network_id, dataset_id)["config"], "epochs": EPOCHS}
        body = _body(network_id, dataset_id, config=config, early_stopping=asha)
        sweep_id = client.post("/v1/sweeps", json=body).json()["id"]
        _wait(client, sweep_id, _training(client), timeout=120)
    workers = server.kill9_group()
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in workers):
        assert time.monotonic() < deadline, "a worker outlived the crash"
        time.sleep(0.05)
    server.start()
    with httpx.Client(base_url=server.url, timeout=30) as client:
        sweep = _wait(client, sweep_id, _ended, timeout=600)
        assert sweep["status"] == "succeeded", sweep
        assert [trial["number"] for trial in sweep["trials"]] == [0, 1, 2, 3]
        runs = client.get("/v1/runs", params={"sweep_id": sweep_id}).json()["data"]
        assert len(runs) == 4, "a trial was created twice"
        thinned = engine.history_epochs(EPOCHS, 1, Settings().history_max_points)
        for trial in sweep["trials"]:
            run = client.get(f"/v1/runs/{trial['run_id']}").json()
            assert run["attempts"] <= 1, run  # the crash used no attempt
            if trial["status"] == "pruned":
                assert run["status"] == "cancelled" and run["epoch"] == RUNG
            else:
                assert trial["status"] == "succeeded" and run["epoch"] == EPOCHS
            # Each epoch once: no gap, no duplicate, whatever was retrained after the crash.
            epochs = full_history(client, trial["run_id"])["epoch"]
            before = [epoch for epoch in thinned if epoch < run["epoch"]]
            assert epochs in (before, [*before, run["epoch"]]), trial
        assert sweep["best_trial"]["status"] == "succeeded"
    assert server.logs().count("Traceback") == 0, server.logs()[-5000:]


def test_a_new_sweep_queues_its_first_trials_at_once_not_at_the_next_round(
    serve: Any,
) -> None:
    """POST /v1/sweeps ends the supervisor's wait: with rounds 60 s apart, the first
    trials are created (and trained) within seconds, not after the round."""
    server = serve(BACKPROP_WORKERS=1, BACKPROP_POLL_SECONDS=60)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        network_id, dataset_id = _xor(client)
        time.sleep(1.0)  # the supervisor is in its 60 s wait
        config = {**_body(network_id, dataset_id)["config"], "epochs": 50}
        body = _body(network_id, dataset_id, config=config, max_trials=2, parallelism=2)
        posted = time.monotonic()
        sweep_id = client.post("/v1/sweeps", json=body).json()["id"]
        sweep = _wait(client, sweep_id, lambda s: len(s["trials"]) == 2, timeout=20)
        sweep = _wait(client, sweep_id, _ended, timeout=20)
        assert time.monotonic() - posted < 20
        assert sweep["status"] == "succeeded", sweep
    assert server.logs().count("Traceback") == 0, server.logs()[-5000:]


@pytest.fixture
def stack(
    tmp_path: Path, postgres_server: PostgresServer, redis_server: RedisServer
) -> Iterator[Callable[..., Stack]]:
    """``stack(workers=1)`` starts the compose-equivalent processes."""
    with stacks(tmp_path) as start:
        yield functools.partial(start, postgres_server, redis_server)


def test_a_sweep_on_the_celery_executor(stack: Callable[..., Stack]) -> None:
    running = stack(workers=1)
    with httpx.Client(base_url=running.url, timeout=30) as client:
        network_id, dataset_id = _xor(client)
        config = {**_body(network_id, dataset_id)["config"], "epochs": 300}
        body = _body(network_id, dataset_id, config=config, method="tpe", parallelism=1)
        sweep_id = client.post("/v1/sweeps", json=body).json()["id"]
        sweep = _wait(client, sweep_id, _ended, timeout=300)
        assert sweep["status"] == "succeeded", sweep
        trials = sweep["trials"]
        assert [trial["status"] for trial in trials] == ["succeeded"] * 4
        losses = [client.get(f"/v1/runs/{t['run_id']}").json()["loss"] for t in trials]
        assert [trial["objective"] for trial in trials] == losses
        assert sweep["best_trial"]["objective"] == min(losses)
        # ASHA on Celery: trials pause at the rung on a worker, the driver decides.
        asha = {"type": "asha", "min_epochs": 100, "reduction_factor": 3}
        body = _body(network_id, dataset_id, config=config, early_stopping=asha, max_trials=6)
        sweep_id = client.post("/v1/sweeps", json=body).json()["id"]
        sweep = _wait(client, sweep_id, _ended, timeout=300)
        assert sweep["status"] == "succeeded", sweep
        statuses = [trial["status"] for trial in sweep["trials"]]
        assert set(statuses) <= {"succeeded", "pruned"} and "pruned" in statuses, statuses
        for trial in sweep["trials"]:
            run = client.get(f"/v1/runs/{trial['run_id']}").json()
            assert run["epoch"] == (100 if trial["status"] == "pruned" else 300), trial
    for process in running.processes():
        assert "Traceback" not in process.log(), process.log()[-3000:]
