"""backprop_client's sweep methods against the real app with one worker."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from backprop_client import Client, InvalidRequest, NotFound, Sweep, SweepWaitTimeout, Trial

from tests.app.test_client import api
from tests.conftest import XOR_NETWORK, XOR_X, XOR_Y

PARAMETERS = {"optimizer.learning_rate": {"choice": [0.5, 2.0]}}
CONFIG = {"loss": "mse", "optimizer": {"name": "sgd"}, "epochs": 100, "seed": 1}


@pytest.fixture
def bp(make_client: Callable[..., Any]) -> Iterator[Client]:
    with api(make_client, workers=1) as client:
        yield client


def test_create_wait_get_list_and_cancel_sweeps(bp: Client) -> None:
    dataset = bp.create_dataset(name="xor", X=XOR_X, y=XOR_Y)
    sweep = bp.create_sweep(
        dataset.id,
        PARAMETERS,
        network=XOR_NETWORK,
        config=CONFIG,
        method="grid",
        objective={"metric": "loss", "mode": "min"},
        name="lr",
        tags=["client"],
    )
    assert isinstance(sweep, Sweep) and sweep.status == "queued" and sweep.seed >= 0
    done = bp.wait_sweep(sweep.id, poll=0.1, timeout=120)
    assert done.status == "succeeded" and len(done.trials) == 2
    assert all(isinstance(trial, Trial) for trial in done.trials)
    assert done.best_trial is not None
    assert done.best_trial.objective == min(t.objective for t in done.trials if t.objective)
    assert {run.id for run in bp.list_runs(sweep_id=sweep.id)} == {t.run_id for t in done.trials}
    assert bp.get_sweep(sweep.id).best_trial == done.best_trial
    assert [s.id for s in bp.list_sweeps(tags=["client"])] == [sweep.id]
    assert bp.sweeps_page(status="succeeded").data[0].id == sweep.id

    slow = bp.create_sweep(
        dataset.id,
        PARAMETERS,
        network_id=done.network_id,
        config={**CONFIG, "epochs": 10_000_000},
        parallelism=1,
        max_trials=2,
        objective={"metric": "loss"},
    )
    with pytest.raises(SweepWaitTimeout) as timed_out:
        bp.wait_sweep(slow.id, poll=0.1, timeout=0.3)
    assert timed_out.value.sweep.id == slow.id
    cancelled = bp.cancel_sweep(slow.id)
    assert cancelled.status == "cancelled"
    assert bp.wait_sweep(slow.id, timeout=30).status == "cancelled"


def test_sweep_errors_are_typed(bp: Client) -> None:
    dataset = bp.create_dataset(name="xor", X=XOR_X, y=XOR_Y)
    with pytest.raises(InvalidRequest) as invalid:
        bp.create_sweep(dataset.id, {"optimizer.nope": {"uniform": [0, 1]}}, network=XOR_NETWORK)
    assert invalid.value.status_code == 422
    assert invalid.value.detail[0]["loc"] == ["body", "parameters", "optimizer.nope"]
    with pytest.raises(NotFound):
        bp.get_sweep("swp_000000000000000000000000")
    with pytest.raises(NotFound):
        bp.cancel_sweep("swp_000000000000000000000000")
