"""ASHA early stopping of sweeps (issue 13): trials pause at their rungs, the driver asks
Optuna's SuccessiveHalvingPruner, promoted trials resume bit-identically.

Real app, one real worker: the supervisor's driver takes the decisions.
"""

from __future__ import annotations

import copy
from typing import Any

from tests.app.test_sweeps import SWEEP_TERMINAL, wait_sweep
from tests.conftest import wait_terminal

EPOCHS = 27
RUNGS = [3, 9]  # min_epochs 3, reduction factor 3, below 27 epochs
MOONS_NETWORK = {
    "name": "moons",
    "input_size": 2,
    "layers": [{"units": 8, "activation": "tanh"}, {"units": 2, "activation": "softmax"}],
    "init": {"scheme": "xavier_uniform", "seed": 3},
}
CONFIG = {
    "loss": "cross_entropy",
    "optimizer": {"name": "sgd"},
    "epochs": EPOCHS,
    "batch_size": 32,
    "validation": {"fraction": 0.25},
    "seed": 5,
}
PARAMETERS = {
    "optimizer.learning_rate": {"log_uniform": [0.001, 1.0]},
    "optimizer.momentum": {"uniform": [0.0, 0.9]},
}


def _set(config: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    for key in parents:
        config = config.setdefault(key, {})
    config[leaf] = value


def _sweep(client: Any, network_id: str, dataset_id: str) -> dict[str, Any]:
    body = {
        "network_id": network_id,
        "dataset_id": dataset_id,
        "config": CONFIG,
        "parameters": PARAMETERS,
        "method": "random",
        "max_trials": 12,
        "parallelism": 3,
        "objective": {"metric": "val_loss", "mode": "min"},
        "seed": 21,
        "early_stopping": {"type": "asha", "min_epochs": 3, "reduction_factor": 3},
    }
    response = client.post("/v1/sweeps", json=body)
    assert response.status_code == 201, response.text
    sweep_id = response.json()["id"]
    return wait_sweep(client, sweep_id, lambda s: s["status"] in SWEEP_TERMINAL, timeout=300)


def _decisions(sweep: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [
        (t["number"], t["status"], t["rung"], t["epoch"], t["objective"]) for t in sweep["trials"]
    ]


def test_seeded_asha_sweep_decides_the_same_and_resumes_bit_identically(
    make_client: Any,
) -> None:
    with make_client(workers=1) as client:
        network_id = client.post("/v1/networks", json=MOONS_NETWORK).json()["id"]
        moons = {"builtin": "moons", "n_samples": 200, "noise": 0.2, "seed": 1}
        dataset_id = client.post("/v1/datasets", json=moons).json()["id"]
        first = _sweep(client, network_id, dataset_id)
        second = _sweep(client, network_id, dataset_id)
        assert first["status"] == second["status"] == "succeeded", first
        assert len(first["trials"]) == 12
        assert [t["parameters"] for t in first["trials"]] == [
            t["parameters"] for t in second["trials"]
        ]
        assert _decisions(first) == _decisions(second)

        statuses = [t["status"] for t in first["trials"]]
        assert "pruned" in statuses and "succeeded" in statuses, statuses
        for trial in first["trials"]:
            run = client.get(f"/v1/runs/{trial['run_id']}").json()
            if trial["status"] == "pruned":  # stopped at its rung; its run is cancelled
                assert run["status"] == "cancelled"
                assert trial["epoch"] == RUNGS[trial["rung"]] == run["epoch"]
                assert trial["objective"] == run["val_loss"]
            else:
                assert trial["status"] == "succeeded" and run["epoch"] == EPOCHS
                assert trial["rung"] == len(RUNGS) - 1  # promoted at every rung
                assert trial["objective"] == run["val_loss"]
        survivors = [t for t in first["trials"] if t["status"] == "succeeded"]
        best = min(survivors, key=lambda t: (t["objective"], t["number"]))
        assert first["best_trial"] == best

        # Trial 0 is promoted at every rung (the first value at a rung always is):
        # paused twice, resumed twice, and each epoch recorded once.
        trial = first["trials"][0]
        assert trial["status"] == "succeeded"
        history = client.get(f"/v1/runs/{trial['run_id']}/history").json()
        assert history["epoch"] == list(range(1, EPOCHS + 1))
        # The same config trained without pauses gives the same weights, bit for bit.
        config = copy.deepcopy(CONFIG)
        for path, value in trial["parameters"].items():
            _set(config, path, value)
        straight = client.post(
            "/v1/runs", json={**config, "network_id": network_id, "dataset_id": dataset_id}
        )
        assert straight.status_code == 202, straight.text
        done = wait_terminal(client, straight.json()["id"], timeout=120)
        assert done["status"] == "succeeded" and done["val_loss"] == trial["objective"]
        paused_weights = client.get(f"/v1/runs/{trial['run_id']}/weights").json()
        straight_weights = client.get(f"/v1/runs/{done['id']}/weights").json()
        assert paused_weights == straight_weights
