"""Hyperparameter sweeps (issue 13): /v1/sweeps with the real app and its sweep driver.

A server without workers (``client``) runs no supervisor, so these tests run the real
driver round (:class:`app.jobs.sweep_driver.SweepDriver`, what the supervisors call)
themselves: trials become queued runs, which is enough for the planned parameters,
counts, cancel and isolation. The live tests train XOR with a worker, whose supervisor
drives the sweeps.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import event

from app.db.database import Database
from app.jobs.sweep_driver import SweepDriver
from app.services import sweep_driver
from app.services.runs import RunLimits
from tests.conftest import XOR_NETWORK, create_xor, run_body

SWEEP_TERMINAL = ("succeeded", "failed", "cancelled")
KEYS = {"alpha": "alpha-key-0123456789", "beta": "beta-key-9876543210"}


def sweep_body(network_id: str, dataset_id: str, **overrides: Any) -> dict[str, Any]:
    """A random sweep of the XOR tutorial's learning rate, momentum and batch size."""
    body: dict[str, Any] = {
        "network_id": network_id,
        "dataset_id": dataset_id,
        "config": {"loss": "mse", "optimizer": {"name": "sgd"}, "epochs": 20, "seed": 1},
        "parameters": {
            "optimizer.learning_rate": {"log_uniform": [0.01, 1.0]},
            "optimizer.momentum": {"uniform": [0.0, 0.95]},
            "batch_size": {"int_uniform": [1, 4]},
            "shuffle": {"choice": [True, False]},
        },
        "method": "random",
        "max_trials": 6,
        "parallelism": 6,
        "objective": {"metric": "loss", "mode": "min"},
        "seed": 11,
    }
    body.update(overrides)
    return body


def wait_sweep(
    client: Any, sweep_id: str, predicate: Callable[[dict[str, Any]], bool], timeout: float = 60.0
) -> dict[str, Any]:
    """Poll the sweep until ``predicate(sweep)`` holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        response = client.get(f"/v1/sweeps/{sweep_id}")
        assert response.status_code == 200, response.text
        sweep: dict[str, Any] = response.json()
        if predicate(sweep):
            return sweep
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for sweep {sweep_id}: {sweep}")
        time.sleep(0.05)


def drive(client: Any) -> list[str]:
    """One driver round on the app's database (as a supervisor runs it)."""
    state = client.app.state
    dispatched: list[str] = []
    driver = SweepDriver(db=state.db, settings=state.settings, submit=dispatched.append)
    driven = driver.drive()
    assert driven == dispatched
    return driven


def created(client: Any, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/v1/sweeps", json=body)
    assert response.status_code == 201, response.text
    assert response.headers["location"] == f"/v1/sweeps/{response.json()['id']}"
    sweep: dict[str, Any] = response.json()
    return sweep


def with_trials(client: Any, body: dict[str, Any], count: int) -> dict[str, Any]:
    """Create a sweep and run the driver: it creates ``count`` trials at once."""
    sweep = created(client, body)
    assert sweep["status"] == "queued" and sweep["trials"] == []
    drive(client)
    sweep = client.get(f"/v1/sweeps/{sweep['id']}").json()
    assert len(sweep["trials"]) == count, sweep
    return sweep


def _in_space(value: Any, spec: dict[str, Any]) -> bool:
    kind, values = next(iter(spec.items()))
    if kind == "choice":
        return value in values
    low, high = values
    if kind == "int_uniform":
        return isinstance(value, int) and low <= value <= high
    return isinstance(value, float) and low <= value <= high


def test_random_sweep_draws_seeded_parameters_within_the_space(client: Any) -> None:
    network_id, dataset_id = create_xor(client)
    body = sweep_body(network_id, dataset_id)
    sweep = with_trials(client, body, 6)
    assert sweep["id"].startswith("swp_") and sweep["object"] == "sweep"
    assert sweep["status"] == "running" and sweep["method"] == "random"
    trials = sweep["trials"]
    assert [trial["number"] for trial in trials] == list(range(6))
    for trial in trials:
        assert set(trial["parameters"]) == set(body["parameters"])
        for path, value in trial["parameters"].items():
            assert _in_space(value, body["parameters"][path]), (path, value)
        assert trial["status"] == "queued" and trial["objective"] is None
    # Random draws differ from each other.
    rates = [trial["parameters"]["optimizer.learning_rate"] for trial in trials]
    assert len(set(rates)) == 6
    # Each trial is an ordinary run with the parameters set in its config.
    runs = client.get("/v1/runs", params={"sweep_id": sweep["id"]}).json()["data"]
    assert {run["id"] for run in runs} == {trial["run_id"] for trial in trials}
    by_id = {run["id"]: run for run in runs}
    for trial in trials:
        run = by_id[trial["run_id"]]
        assert run["sweep_id"] == sweep["id"]
        assert (
            run["config"]["optimizer"]["learning_rate"]
            == trial["parameters"]["optimizer.learning_rate"]
        )
        assert run["config"]["batch_size"] == trial["parameters"]["batch_size"]
        assert run["config"]["shuffle"] == trial["parameters"]["shuffle"]
    single = client.get(f"/v1/runs/{trials[0]['run_id']}").json()
    assert single["sweep_id"] == sweep["id"]
    # Same seed: the same parameters; another seed: others.
    again = with_trials(client, body, 6)
    assert [t["parameters"] for t in again["trials"]] == [t["parameters"] for t in trials]
    other = with_trials(client, {**body, "seed": 12}, 6)
    assert [t["parameters"] for t in other["trials"]] != [t["parameters"] for t in trials]


def test_grid_sweep_tries_every_point_once(client: Any) -> None:
    network_id, dataset_id = create_xor(client)
    parameters = {
        "optimizer.learning_rate": {"choice": [0.1, 0.5]},
        "batch_size": {"int_uniform": [1, 3]},
    }
    body = sweep_body(
        network_id, dataset_id, method="grid", parameters=parameters, max_trials=10, parallelism=10
    )
    sweep = with_trials(client, body, 6)
    assert drive(client) == []  # nothing beyond the grid
    sweep = client.get(f"/v1/sweeps/{sweep['id']}").json()
    points = {
        (t["parameters"]["optimizer.learning_rate"], t["parameters"]["batch_size"])
        for t in sweep["trials"]
    }
    assert len(sweep["trials"]) == 6
    assert points == set(itertools.product([0.1, 0.5], [1, 2, 3]))
    # Fewer trials than points: distinct points, max_trials of them, same order per seed.
    small = with_trials(client, {**body, "max_trials": 4}, 4)
    firsts = [tuple(t["parameters"].values()) for t in small["trials"]]
    assert len(set(firsts)) == 4
    again = with_trials(client, {**body, "max_trials": 4}, 4)
    assert [tuple(t["parameters"].values()) for t in again["trials"]] == firsts


def test_network_spec_parameters_give_each_trial_its_network(client: Any) -> None:
    """``layers.0.units`` addresses the network spec: each trial trains a network of its
    own with that width (the sweep's network, its init seed included, otherwise)."""
    network_id, dataset_id = create_xor(client)
    parameters = {
        "layers.0.units": {"choice": [2, 5]},
        "optimizer.learning_rate": {"choice": [0.5]},
    }
    body = sweep_body(
        network_id, dataset_id, method="grid", parameters=parameters, max_trials=2, parallelism=2
    )
    base = client.get(f"/v1/networks/{network_id}").json()
    sweep = with_trials(client, body, 2)
    widths = set()
    for trial in sweep["trials"]:
        run = client.get(f"/v1/runs/{trial['run_id']}").json()
        assert run["network_id"] != network_id
        network = client.get(f"/v1/networks/{run['network_id']}").json()
        layers = network["layers"]
        assert layers[0]["units"] == trial["parameters"]["layers.0.units"]
        assert layers[1] == base["layers"][1]
        assert network["init"] == base["init"]
        assert run["config"]["optimizer"]["learning_rate"] == 0.5
        widths.add(layers[0]["units"])
    assert widths == {2, 5}
    assert client.get(f"/v1/networks/{network_id}").json() == base


def test_parallelism_bounds_the_unfinished_trials(client: Any) -> None:
    network_id, dataset_id = create_xor(client)
    sweep = with_trials(client, sweep_body(network_id, dataset_id, parallelism=2), 2)
    assert drive(client) == []  # both still queued (no workers): no third
    sweep = client.get(f"/v1/sweeps/{sweep['id']}").json()
    assert len(sweep["trials"]) == 2
    with client.app.state.db.reading() as session:  # idle: no write transaction per round
        assert not sweep_driver.has_work(session, sweep["id"])
    client.post(f"/v1/runs/{sweep['trials'][0]['run_id']}/cancel")
    db = client.app.state.db
    with db.reading() as session:
        assert sweep_driver.has_work(session, sweep["id"])
        assert sweep_driver.pending_work(session, sweep["id"]) == sweep_driver.Work(
            decisions=False, creations=1, ends=False
        )
    page = client.get("/v1/runs", params={"sweep_id": sweep["id"]}).json()
    assert len(page["data"]) == 2
    writes: list[object] = []
    record = writes.append
    event.listen(db.writer, "begin", record)
    try:  # the free slot's trial in one write: no decision, no creation found refused
        created = sweep_driver.step(
            db, sweep["id"], RunLimits.from_settings(client.app.state.settings)
        )
    finally:
        event.remove(db.writer, "begin", record)
    assert len(created) == 1 and len(writes) == 1
    assert len(client.get("/v1/sweeps/" + sweep["id"]).json()["trials"]) == 3


def test_cancel_stops_the_sweep_and_its_trials(client: Any) -> None:
    network_id, dataset_id = create_xor(client)
    sweep = with_trials(client, sweep_body(network_id, dataset_id, parallelism=2), 2)
    response = client.post(f"/v1/sweeps/{sweep['id']}/cancel")
    assert response.status_code == 200, response.text
    cancelled = response.json()
    assert cancelled["status"] == "cancelled"
    assert [trial["status"] for trial in cancelled["trials"]] == ["cancelled", "cancelled"]
    for trial in cancelled["trials"]:
        assert client.get(f"/v1/runs/{trial['run_id']}").json()["status"] == "cancelled"
    assert drive(client) == []  # the driver creates no more trials for it
    later = client.get(f"/v1/sweeps/{sweep['id']}").json()
    assert later["status"] == "cancelled" and len(later["trials"]) == 2
    again = client.post(f"/v1/sweeps/{sweep['id']}/cancel")
    assert again.status_code == 200 and again.json()["status"] == "cancelled"


BAD_BODIES: list[tuple[str, dict[str, Any], list[Any]]] = [
    (
        "unknown nested path",
        {"parameters": {"optimizer.nope": {"uniform": [0.1, 0.2]}}},
        ["body", "parameters", "optimizer.nope"],
    ),
    (
        "unknown top-level path",
        {"parameters": {"learning_rate": {"uniform": [0.1, 0.2]}}},
        ["body", "parameters", "learning_rate"],
    ),
    (
        "a service field",
        {"parameters": {"dataset_id": {"choice": ["a", "b"]}}},
        ["body", "parameters", "dataset_id"],
    ),
    (
        "empty segment",
        {"parameters": {"optimizer..learning_rate": {"uniform": [0.1, 0.2]}}},
        ["body", "parameters", "optimizer..learning_rate"],
    ),
    (
        "value the run refuses",
        {"parameters": {"batch_size": {"int_uniform": [0, 4]}}},
        ["body", "parameters", "batch_size"],
    ),
    (
        "uniform lo >= hi",
        {"parameters": {"optimizer.learning_rate": {"uniform": [0.5, 0.5]}}},
        ["body", "parameters", "optimizer.learning_rate", "uniform"],
    ),
    (
        "int_uniform lo > hi",
        {"parameters": {"batch_size": {"int_uniform": [4, 1]}}},
        ["body", "parameters", "batch_size", "int_uniform"],
    ),
    (
        "log_uniform lo <= 0",
        {"parameters": {"optimizer.learning_rate": {"log_uniform": [0.0, 1.0]}}},
        ["body", "parameters", "optimizer.learning_rate", "log_uniform"],
    ),
    (
        "empty choice",
        {"parameters": {"optimizer.learning_rate": {"choice": []}}},
        ["body", "parameters", "optimizer.learning_rate", "choice"],
    ),
    (
        "two distributions",
        {"parameters": {"optimizer.learning_rate": {"uniform": [0.1, 1], "choice": [1]}}},
        ["body", "parameters", "optimizer.learning_rate"],
    ),
    ("no parameters", {"parameters": {}}, ["body", "parameters"]),
    (
        "network spec path past the layers",
        {"parameters": {"layers.5.units": {"choice": [2, 3]}}},
        ["body", "parameters", "layers.5.units"],
    ),
    (
        "network spec value the network refuses",
        {"parameters": {"layers.0.activation": {"choice": ["sigmoid", "nope"]}}},
        ["body", "parameters", "layers.0.activation"],
    ),
    (
        "network spec value over the parameter limit",
        {"parameters": {"layers.0.units": {"choice": [2, 10_000_000]}}},
        ["body", "parameters", "layers.0.units"],
    ),
    ("unknown method", {"method": "bayes"}, ["body", "method"]),
    ("max_trials 0", {"max_trials": 0}, ["body", "max_trials"]),
    ("max_trials too many", {"max_trials": 1001}, ["body", "max_trials"]),
    ("parallelism 0", {"parallelism": 0}, ["body", "parallelism"]),
    ("parallelism too large", {"parallelism": 65}, ["body", "parallelism"]),
    ("grid of floats", {"method": "grid"}, ["body", "parameters", "optimizer.learning_rate"]),
    (
        "objective not recorded",
        {"objective": {"metric": "accuracy"}},
        ["body", "objective", "metric"],
    ),
    (
        "val_loss without validation",
        {"objective": {"metric": "val_loss"}},
        ["body", "objective", "metric"],
    ),
    (
        "objective mode",
        {"objective": {"metric": "loss", "mode": "up"}},
        ["body", "objective", "mode"],
    ),
    ("config with an id", {"config": {"network_id": "x"}}, ["body", "config", "network_id"]),
    ("config the run refuses", {"config": {"epochs": 0}}, ["body", "config", "epochs"]),
    ("config unknown field", {"config": {"epoch": 3}}, ["body", "config", "epoch"]),
    ("neither network nor network_id", {"network_id": None}, ["body", "network_id"]),
    ("both network and network_id", {"network": XOR_NETWORK}, ["body", "network_id"]),
    (
        "asha at or past the epochs",
        {"early_stopping": {"type": "asha", "min_epochs": 20, "reduction_factor": 2}},
        ["body", "early_stopping", "min_epochs"],
    ),
]


@pytest.mark.parametrize(
    ("override", "loc"), [case[1:] for case in BAD_BODIES], ids=[case[0] for case in BAD_BODIES]
)
def test_invalid_sweeps_are_422_naming_the_field(
    client: Any, override: dict[str, Any], loc: list[Any]
) -> None:
    network_id, dataset_id = create_xor(client)
    networks_before = len(client.get("/v1/networks").json()["data"])
    body = sweep_body(network_id, dataset_id)
    response = client.post("/v1/sweeps", json={**body, **override})
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == loc, response.json()
    assert client.get("/v1/sweeps").json()["data"] == []
    assert len(client.get("/v1/networks").json()["data"]) == networks_before


def test_parallelism_over_the_active_run_cap_is_422(make_client: Any) -> None:
    with make_client(max_active_runs=3) as client:
        network_id, dataset_id = create_xor(client)
        response = client.post("/v1/sweeps", json=sweep_body(network_id, dataset_id))
        assert response.status_code == 422, response.text
        detail = response.json()["detail"][0]
        assert (
            detail["loc"] == ["body", "parallelism"] and "BACKPROP_MAX_ACTIVE_RUNS" in detail["msg"]
        )
        ok = client.post("/v1/sweeps", json=sweep_body(network_id, dataset_id, parallelism=3))
        assert ok.status_code == 201, ok.text


def test_inline_network_is_stored_and_a_bad_one_is_not(client: Any) -> None:
    _, dataset_id = create_xor(client)
    body = sweep_body(None, dataset_id, network=XOR_NETWORK)  # type: ignore[arg-type]
    body.pop("network_id")
    sweep = created(client, body)
    network = client.get(f"/v1/networks/{sweep['network_id']}")
    assert network.status_code == 200 and network.json()["name"] == "xor"
    layers = [{"units": 3, "activation": "nope"}, XOR_NETWORK["layers"][1]]
    response = client.post(
        "/v1/sweeps", json={**body, "network": {**XOR_NETWORK, "layers": layers}}
    )
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"][:2] == ["body", "network"]
    misfit = {**XOR_NETWORK, "input_size": 3}  # does not fit the dataset: as for runs
    response = client.post("/v1/sweeps", json={**body, "network": misfit})
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["body", "dataset_id"]
    assert len(client.get("/v1/networks").json()["data"]) == 2  # create_xor's and the sweep's
    assert len(client.get("/v1/sweeps").json()["data"]) == 1


def test_unknown_network_or_dataset_is_404(client: Any) -> None:
    network_id, dataset_id = create_xor(client)
    missing_net = client.post(
        "/v1/sweeps", json=sweep_body("net_000000000000000000000000", dataset_id)
    )
    assert missing_net.status_code == 404, missing_net.text
    missing_ds = client.post(
        "/v1/sweeps", json=sweep_body(network_id, "ds_000000000000000000000000")
    )
    assert missing_ds.status_code == 404, missing_ds.text
    assert client.get("/v1/sweeps/swp_000000000000000000000000").status_code == 404
    assert client.post("/v1/sweeps/swp_000000000000000000000000/cancel").status_code == 404


def test_list_pages_and_filters(client: Any) -> None:
    network_id, dataset_id = create_xor(client)
    ids = [
        created(client, sweep_body(network_id, dataset_id, name=f"s{i}", tags=tags))["id"]
        for i, tags in enumerate([["a"], ["a", "b"], ["b"]])
    ]
    first = client.get("/v1/sweeps", params={"limit": 2}).json()
    assert [s["id"] for s in first["data"]] == ids[::-1][:2] and first["has_more"]
    rest = client.get("/v1/sweeps", params={"limit": 2, "after": first["next_after"]}).json()
    assert [s["id"] for s in rest["data"]] == [ids[0]] and not rest["has_more"]
    tagged = client.get("/v1/sweeps", params={"tag": "a"}).json()["data"]
    assert {s["id"] for s in tagged} == set(ids[:2])
    named = client.get("/v1/sweeps", params={"name_prefix": "s2"}).json()["data"]
    assert [s["id"] for s in named] == [ids[2]]
    client.post(f"/v1/sweeps/{ids[1]}/cancel")
    cancelled = client.get("/v1/sweeps", params={"status": "cancelled"}).json()["data"]
    assert [s["id"] for s in cancelled] == [ids[1]]
    assert client.get("/v1/sweeps", params={"status": "paused"}).status_code == 422


def test_another_tenant_sees_nothing(make_client: Any) -> None:
    with make_client(api_keys=",".join(KEYS.values())) as client:
        alpha = {"Authorization": f"Bearer {KEYS['alpha']}"}
        beta = {"Authorization": f"Bearer {KEYS['beta']}"}
        network_id = client.post("/v1/networks", json=XOR_NETWORK, headers=alpha).json()["id"]
        dataset = {"name": "xor", "X": [[0, 0], [0, 1], [1, 0], [1, 1]], "y": [[0], [1], [1], [0]]}
        dataset_id = client.post("/v1/datasets", json=dataset, headers=alpha).json()["id"]
        body = sweep_body(network_id, dataset_id, parallelism=2)
        sweep = client.post("/v1/sweeps", json=body, headers=alpha).json()
        assert len(drive(client)) == 2
        assert client.get(f"/v1/sweeps/{sweep['id']}", headers=beta).status_code == 404
        assert client.post(f"/v1/sweeps/{sweep['id']}/cancel", headers=beta).status_code == 404
        assert client.get("/v1/sweeps", headers=beta).json()["data"] == []
        runs = client.get("/v1/runs", params={"sweep_id": sweep["id"]}, headers=beta).json()
        assert runs["data"] == []
        theirs = client.post("/v1/sweeps", json=body, headers=beta)
        assert theirs.status_code == 404, theirs.text
        mine = client.get(f"/v1/sweeps/{sweep['id']}", headers=alpha).json()
        assert mine["status"] == "running" and len(mine["trials"]) == 2


def _finished(client: Any, body: dict[str, Any]) -> dict[str, Any]:
    sweep = created(client, body)
    return wait_sweep(client, sweep["id"], lambda s: s["status"] in SWEEP_TERMINAL, timeout=120)


def test_live_sweeps_record_objectives_and_the_best_trial(make_client: Any) -> None:
    with make_client(workers=1) as client:
        network_id, dataset_id = create_xor(client)
        body = sweep_body(network_id, dataset_id, method="tpe", max_trials=4, parallelism=1)
        sweep = _finished(client, body)
        assert sweep["status"] == "succeeded", sweep
        trials = sweep["trials"]
        assert len(trials) == 4 and all(t["status"] == "succeeded" for t in trials)
        for trial in trials:
            run = client.get(f"/v1/runs/{trial['run_id']}").json()
            assert trial["objective"] == run["loss"] and trial["epoch"] == run["epoch"] == 20
        objectives = [t["objective"] for t in trials]
        assert all(math.isfinite(value) for value in objectives)
        assert sweep["best_trial"]["objective"] == min(objectives)
        assert sweep["best_trial"] == min(trials, key=lambda t: t["objective"])
        # TPE with parallelism 1 is reproducible from its seed.
        again = _finished(client, body)
        assert [t["parameters"] for t in again["trials"]] == [t["parameters"] for t in trials]
        assert [t["objective"] for t in again["trials"]] == objectives
        # mode max picks the largest.
        worst = _finished(
            client, {**body, "method": "random", "objective": {"metric": "loss", "mode": "max"}}
        )
        assert worst["status"] == "succeeded"
        values = [t["objective"] for t in worst["trials"]]
        assert len(values) == 4 and worst["best_trial"]["objective"] == max(values)


def test_two_drivers_at_once_create_each_trial_once(client: Any) -> None:
    """Two servers' supervisors driving one sweep: the row lock and the unique
    (sweep_id, sweep_trial) index keep every trial single."""
    network_id, dataset_id = create_xor(client)
    body = sweep_body(network_id, dataset_id, max_trials=8, parallelism=8)
    sweep = created(client, body)
    settings = client.app.state.settings
    databases = [Database(settings.database_url) for _ in range(2)]
    dispatched: list[list[str]] = [[], []]
    drivers = [
        SweepDriver(db=db, settings=settings, submit=dispatched[index].append)
        for index, db in enumerate(databases)
    ]
    try:
        threads = [threading.Thread(target=driver.drive) for driver in drivers for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        for db in databases:
            db.dispose()
    sweep = client.get(f"/v1/sweeps/{sweep['id']}").json()
    assert [trial["number"] for trial in sweep["trials"]] == list(range(8))
    run_ids = dispatched[0] + dispatched[1]
    assert sorted(run_ids) == sorted(trial["run_id"] for trial in sweep["trials"])
    runs = client.get("/v1/runs", params={"sweep_id": sweep["id"]}).json()["data"]
    assert len(runs) == 8


def test_a_tenant_at_its_run_cap_delays_trials(make_client: Any) -> None:
    with make_client(max_active_runs=2) as client:
        network_id, dataset_id = create_xor(client)
        run = client.post("/v1/runs", json=run_body(network_id, dataset_id)).json()
        sweep = created(client, sweep_body(network_id, dataset_id, max_trials=3, parallelism=2))
        assert len(drive(client)) == 1  # the second trial would be a 429: it waits
        client.post(f"/v1/runs/{run['id']}/cancel")
        assert len(drive(client)) == 1
        sweep = client.get(f"/v1/sweeps/{sweep['id']}").json()
        assert [trial["number"] for trial in sweep["trials"]] == [0, 1]


def test_deleted_trials_keep_their_numbers_and_an_unsuccessful_sweep_fails(
    client: Any,
) -> None:
    network_id, dataset_id = create_xor(client)
    sweep = with_trials(client, sweep_body(network_id, dataset_id, max_trials=4, parallelism=2), 2)
    deleted = client.delete(f"/v1/runs/{sweep['trials'][1]['run_id']}", params={"force": True})
    assert deleted.status_code == 204
    assert len(drive(client)) == 1
    sweep = client.get(f"/v1/sweeps/{sweep['id']}").json()
    assert [trial["number"] for trial in sweep["trials"]] == [0, 2]
    for trial in sweep["trials"]:
        client.post(f"/v1/runs/{trial['run_id']}/cancel")
    assert len(drive(client)) == 1  # trial 3, the last one
    sweep = client.get(f"/v1/sweeps/{sweep['id']}").json()
    assert [trial["number"] for trial in sweep["trials"]] == [0, 2, 3]
    assert sweep["status"] == "running"
    client.post(f"/v1/runs/{sweep['trials'][2]['run_id']}/cancel")
    assert drive(client) == []
    sweep = client.get(f"/v1/sweeps/{sweep['id']}").json()
    assert sweep["status"] == "failed" and sweep["best_trial"] is None  # no trial succeeded
    assert (
        client.get("/v1/sweeps", params={"status": "failed"}).json()["data"][0]["id"] == sweep["id"]
    )
