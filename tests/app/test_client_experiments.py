"""backprop_client's experiment methods against the real app: names, tags and metadata,
PATCH, list filters and sorts, evaluate, compare and the compare plot."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from backprop_client import (
    Client,
    Conflict,
    Evaluation,
    InvalidRequest,
    NotFound,
    RunComparison,
)

from tests.app.test_client import XOR_RUN, api
from tests.conftest import XOR_NETWORK, XOR_X, XOR_Y


@pytest.fixture
def bp(make_client: Callable[..., Any]) -> Iterator[Client]:
    with api(make_client) as client:
        yield client


@pytest.fixture
def live_bp(make_client: Callable[..., Any]) -> Iterator[Client]:
    with api(make_client, workers=1) as client:
        yield client


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def test_labels_on_create_and_patch_of_networks_and_datasets(bp: Client) -> None:
    net = bp.create_network(XOR_NETWORK, name="xor-a", tags=["xor", "base"], metadata={"k": 1})
    assert (net.name, net.tags, net.metadata) == ("xor-a", ["xor", "base"], {"k": 1})
    renamed = bp.update_network(net.id, name="xor-b")
    assert (renamed.name, renamed.tags, renamed.metadata) == ("xor-b", ["xor", "base"], {"k": 1})
    retagged = bp.update_network(net.id, tags=["new"], metadata={"owner": "ana"})
    assert (retagged.name, retagged.tags, retagged.metadata) == ("xor-b", ["new"], {"owner": "ana"})
    assert bp.get_network(net.id) == retagged
    data = bp.create_dataset("xor-data", XOR_X, XOR_Y, tags=["tiny"], metadata={"n": 4})
    assert (data.tags, data.metadata) == (["tiny"], {"n": 4})
    builtin = bp.create_dataset(builtin="moons", seed=1, tags=["moons"])
    assert builtin.tags == ["moons"]
    patched = bp.update_dataset(data.id, tags=[])
    assert (patched.name, patched.tags, patched.metadata) == ("xor-data", [], {"n": 4})
    with pytest.raises(NotFound):
        bp.update_dataset("ds_missing", name="x")


def test_list_filters_of_networks_and_datasets(bp: Client) -> None:
    nets = [
        bp.create_network(XOR_NETWORK, name=f"{prefix}-{i}", tags=tags)
        for i, (prefix, tags) in enumerate(
            [("alpha", ["a", "b"]), ("alpha", ["a"]), ("beta", ["b"]), ("beta", [])]
        )
    ]
    ids = [n.id for n in nets]
    assert [n.id for n in bp.list_networks(tags=["a"])] == [ids[1], ids[0]]
    assert [n.id for n in bp.list_networks(tags=["a", "b"])] == [ids[0]]
    assert [n.id for n in bp.list_networks(name_prefix="beta")] == [ids[3], ids[2]]
    assert [n.id for n in bp.networks_page(tags=["b"], name_prefix="beta").data] == [ids[2]]
    later = datetime.now(UTC) + timedelta(hours=1)
    assert list(bp.list_networks(created_after=later)) == []
    assert len(list(bp.list_networks(created_before=later))) == 4
    assert [n.id for n in bp.list_networks(created_after=nets[1].created_at)] == ids[:1:-1]
    bp.create_dataset("one", XOR_X, XOR_Y, tags=["x"])
    two = bp.create_dataset("two", XOR_X, XOR_Y, tags=["x", "y"])
    assert [d.id for d in bp.list_datasets(tags=["x", "y"])] == [two.id]
    assert [d.name for d in bp.datasets_page(name_prefix="on").data] == ["one"]


def test_runs_labels_filters_and_sorts(bp: Client) -> None:
    net = bp.create_network(XOR_NETWORK)
    data = bp.create_dataset("xor", XOR_X, XOR_Y)
    runs = [
        bp.create_run(net.id, data.id, name=f"exp-{i}", tags=["t", f"n{i % 2}"], **XOR_RUN)
        for i in range(5)
    ]  # no workers: they stay queued
    assert [r.name for r in runs] == [f"exp-{i}" for i in range(5)]
    newest = [r.id for r in reversed(runs)]
    assert [r.id for r in bp.list_runs(tags=["t"])] == newest
    assert [r.id for r in bp.list_runs(tags=["t", "n0"])] == newest[::2]
    assert [r.id for r in bp.list_runs(sort="created_at")] == newest[::-1]
    assert [r.id for r in bp.list_runs(sort="-name", page_size=2)] == newest
    assert [r.id for r in bp.runs_page(sort="name", limit=2).data] == newest[::-1][:2]
    assert [r.id for r in bp.list_runs(name_prefix="exp-3")] == [runs[3].id]
    assert list(bp.list_runs(sweep_id="sw_none")) == []
    with pytest.raises(InvalidRequest) as caught:
        bp.runs_page(sort="colour")
    assert "sort" in str(caught.value)
    patched = bp.update_run(runs[0].id, tags=["kept"], metadata={"note": "best"})
    assert (patched.name, patched.tags, patched.metadata) == ("exp-0", ["kept"], {"note": "best"})
    assert bp.update_run(runs[0].id, name=None).name is None  # None clears a run's name
    assert bp.get_run(runs[0].id).tags == ["kept"]
    with pytest.raises(Conflict):
        bp.delete_run(runs[1].id)
    bp.delete_run(runs[1].id, force=True)
    with pytest.raises(NotFound):
        bp.get_run(runs[1].id)


def test_evaluate_compare_and_plot(live_bp: Client) -> None:
    net = live_bp.create_network(XOR_NETWORK)
    data = live_bp.create_dataset("xor", XOR_X, XOR_Y)
    first = live_bp.create_run(net.id, data.id, name="slow", **{**XOR_RUN, "epochs": 300})
    second = live_bp.create_run(
        net.id,
        data.id,
        name="fast",
        **{**XOR_RUN, "epochs": 300, "optimizer": {"name": "sgd", "learning_rate": 2.0}},
    )
    for run in (first, second):
        assert live_bp.wait(run.id, poll=0.05, timeout=60).status == "succeeded"

    evaluation = live_bp.evaluate_run(first.id, X=np.array(XOR_X), y=np.array(XOR_Y))
    assert isinstance(evaluation, Evaluation) and evaluation.run_id == first.id
    (w1, b1), (w2, b2) = live_bp.run_weights(first.id).arrays()
    assert b1 is not None and b2 is not None
    outputs = _sigmoid(_sigmoid(np.array(XOR_X) @ w1 + b1) @ w2 + b2)
    assert evaluation.loss_name == "mse" and evaluation.n_samples == 4
    assert evaluation.loss == pytest.approx(float(np.mean((outputs - np.array(XOR_Y)) ** 2)))
    assert evaluation.metrics["mae"] == pytest.approx(float(np.mean(np.abs(outputs - XOR_Y))))
    stored = live_bp.evaluate_run(first.id, dataset_id=data.id)
    assert stored.dataset_id == data.id and stored.loss == pytest.approx(evaluation.loss)
    checkpoint = live_bp.checkpoints(first.id)[-1]
    at_checkpoint = live_bp.evaluate_run(first.id, dataset_id=data.id, checkpoint_id=checkpoint.id)
    assert at_checkpoint.checkpoint_id == checkpoint.id
    assert at_checkpoint.epoch == checkpoint.epoch
    initial = live_bp.evaluate_network(net.id, X=XOR_X, y=[0, 1, 1, 0], loss="binary_cross_entropy")
    assert initial.epoch == 0 and initial.run_id is None
    assert initial.confusion_matrix is not None and initial.per_class is not None
    assert sum(map(sum, initial.confusion_matrix[0])) == 4
    assert initial.per_class[0].class_ == 0
    with pytest.raises(ValueError, match="exactly one"):
        live_bp.evaluate_run(first.id, dataset_id=data.id, X=XOR_X, y=XOR_Y)
    with pytest.raises(ValueError, match="needs y"):
        live_bp.evaluate_run(first.id, X=XOR_X)
    with pytest.raises(InvalidRequest):
        live_bp.evaluate_run(first.id, X=[[0, 0, 0]], y=[[0]])

    comparison = live_bp.compare_runs([first.id, second.id])
    assert isinstance(comparison, RunComparison)
    assert [r.id for r in comparison.runs] == [first.id, second.id]
    assert [r.name for r in comparison.runs] == ["slow", "fast"]
    assert "optimizer.learning_rate" in comparison.differing
    rate = next(f for f in comparison.fields if f.field == "optimizer.learning_rate")
    assert rate.differs and rate.values == [0.5, 2.0]
    assert all(r.final["epoch"] == 300 for r in comparison.runs)
    png = live_bp.compare_plot([first.id, second.id], metric="loss", log=True)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(NotFound):
        live_bp.compare_runs([first.id, "run_missing"])
