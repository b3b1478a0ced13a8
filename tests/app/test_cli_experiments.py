"""``backprop runs tag|delete|compare|list --tag/--sort`` and ``backprop evaluate``
against the real app served over HTTP (uvicorn on a thread), in this process."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from backprop_client import Client
from backprop_client.cli import main

from app.main import create_app
from tests.app.test_client import XOR_RUN
from tests.conftest import XOR_NETWORK, XOR_X, XOR_Y
from tests.support.live_app import LiveApp, serve_app


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def live(settings_for: Callable[..., Any]) -> Iterator[LiveApp]:
    with serve_app(create_app(settings_for(workers=1, flush_seconds=0.05))) as started:
        yield started


@pytest.fixture
def bp(live: LiveApp) -> Iterator[Client]:
    with Client(live.url) as client:
        yield client


@pytest.fixture
def cli(live: LiveApp, capsys: pytest.CaptureFixture[str]) -> Callable[..., Result]:
    def call(*args: str) -> Result:
        capsys.readouterr()
        code = main([*args, "--server", live.url])
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return call


def _finished(bp: Client, *, names: list[str], rates: list[float]) -> list[str]:
    net = bp.create_network(XOR_NETWORK)
    data = bp.create_dataset("xor", XOR_X, XOR_Y)
    ids = []
    for name, rate in zip(names, rates, strict=True):
        config = {**XOR_RUN, "epochs": 200, "optimizer": {"name": "sgd", "learning_rate": rate}}
        ids.append(bp.create_run(net.id, data.id, name=name, **config).id)
    for run_id in ids:
        assert bp.wait(run_id, poll=0.05, timeout=60).status == "succeeded"
    return ids


def test_tag_rename_and_list_filters(bp: Client, cli: Callable[..., Result]) -> None:
    run_id, other = _finished(bp, names=["a-run", "b-run"], rates=[0.5, 2.0])
    shown = cli("runs", "tag", run_id)
    assert shown.code == 0 and shown.out.strip() == f"run {run_id} name a-run tags -"
    added = cli("runs", "tag", run_id, "--add", "x", "--add", "y", "--add", "x")
    assert added.code == 0 and "tags x, y" in added.out
    assert bp.get_run(run_id).tags == ["x", "y"]
    changed = cli(
        "runs", "tag", run_id, "--remove", "x", "--add", "z", "--name", "renamed", "--json"
    )
    assert changed.code == 0
    document = json.loads(changed.out)
    assert (document["name"], document["tags"]) == ("renamed", ["y", "z"])
    assert (bp.get_run(run_id).name, bp.get_run(run_id).tags) == ("renamed", ["y", "z"])
    assert bp.get_run(other).tags == []  # the other run is untouched

    listed = cli("runs", "list", "--tag", "y", "--tag", "z", "--json")
    assert listed.code == 0 and [r["id"] for r in json.loads(listed.out)] == [run_id]
    assert json.loads(cli("runs", "list", "--tag", "nope", "--json").out) == []
    prefixed = cli("runs", "list", "--name-prefix", "b-", "--json")
    assert [r["id"] for r in json.loads(prefixed.out)] == [other]
    by_loss = [r["id"] for r in json.loads(cli("runs", "list", "--sort", "loss", "--json").out)]
    losses = {r: bp.get_run(r).loss for r in (run_id, other)}
    assert by_loss == sorted(losses, key=lambda r: losses[r])
    descending = json.loads(cli("runs", "list", "--sort", "-loss", "--json").out)
    assert [r["id"] for r in descending] == by_loss[::-1]
    table = cli("runs", "list", "--sort", "name")
    assert table.code == 0 and table.out.index(other) < table.out.index(run_id)  # b < renamed
    rows = {line.split()[0]: line.split() for line in table.out.splitlines()[1:]}
    assert table.out.split()[:2] == ["ID", "NAME"] and table.out.splitlines()[0].endswith("TAGS")
    assert (rows[run_id][1], rows[run_id][-1]) == ("renamed", "y,z")
    assert (rows[other][1], rows[other][-1]) == ("b-run", "-")
    bad = cli("runs", "list", "--sort", "colour")
    assert bad.code == 2 and "sort" in bad.err
    too_long = cli("runs", "tag", run_id, "--add", "t" * 500)
    assert too_long.code == 2 and "tags" in too_long.err
    assert bp.get_run(run_id).tags == ["y", "z"]
    missing = cli("runs", "tag", "run_missing", "--add", "x")
    assert missing.code == 2 and "run_missing" in missing.err


def test_delete(bp: Client, cli: Callable[..., Result]) -> None:
    (run_id,) = _finished(bp, names=["done"], rates=[0.5])
    assert cli("runs", "delete", run_id).out.strip() == f"run {run_id} deleted"
    assert [r.id for r in bp.list_runs()] == []
    gone = cli("runs", "delete", run_id)
    assert gone.code == 2 and "not found" in gone.err.lower()
    net = bp.create_network(XOR_NETWORK)
    data = bp.create_dataset("xor", XOR_X, XOR_Y)
    long_run = bp.create_run(net.id, data.id, **{**XOR_RUN, "epochs": 10_000_000})
    refused = cli("runs", "delete", long_run.id)
    assert refused.code == 2 and "force" in refused.err
    assert bp.get_run(long_run.id).id == long_run.id
    forced = cli("runs", "delete", long_run.id, "--force", "--json")
    assert forced.code == 0 and json.loads(forced.out) == {"id": long_run.id, "deleted": True}
    assert list(bp.list_runs()) == []


def test_compare_with_a_plot(bp: Client, cli: Callable[..., Result], tmp_path: Path) -> None:
    slow, fast = _finished(bp, names=["slow", "fast"], rates=[0.5, 2.0])
    result = cli("runs", "compare", slow, fast)
    assert result.code == 0, result.err
    lines = {line.split()[0]: line.split()[1:] for line in result.out.splitlines() if line.strip()}
    assert lines["FIELD"] == ["slow", "fast"]
    assert lines["id"] == [slow, fast]
    assert lines["optimizer.learning_rate"] == ["0.5", "2"]
    assert "seed" not in lines and "epochs" not in lines  # equal fields are not shown
    runs = {r: bp.get_run(r) for r in (slow, fast)}
    assert result.out.count("final loss") == 1 and "best best_loss" in result.out
    final_loss = next(line for line in result.out.splitlines() if line.startswith("final loss"))
    assert final_loss.split()[2:] == [f"{runs[slow].loss:.6g}", f"{runs[fast].loss:.6g}"]
    plot = tmp_path / "curves.png"
    as_json = cli(
        "runs", "compare", slow, fast, "--plot", str(plot), "--metric", "loss", "--log", "--json"
    )
    assert as_json.code == 0, as_json.err
    document = json.loads(as_json.out)
    assert document["differing"] == bp.compare_runs([slow, fast]).differing
    assert document["plot"] == str(plot) and plot.read_bytes()[:4] == b"\x89PNG"
    no_metric = cli(
        "runs", "compare", slow, fast, "--plot", str(tmp_path / "x.png"), "--metric", "f9"
    )
    assert no_metric.code == 2 and not (tmp_path / "x.png").exists()
    missing = cli("runs", "compare", slow, "run_missing")
    assert missing.code == 2 and "run_missing" in missing.err
    assert main(["runs", "compare"]) == 2


def test_evaluate(bp: Client, cli: Callable[..., Result], tmp_path: Path) -> None:
    (run_id,) = _finished(bp, names=["r"], rates=[2.0])
    data_id = bp.get_run(run_id).dataset_id
    assert data_id is not None
    expected = bp.evaluate_run(run_id, X=XOR_X, y=XOR_Y)
    stored = cli("evaluate", run_id, "--dataset", data_id)
    assert stored.code == 0, stored.err
    assert f"mse {expected.loss:.6g}" in stored.out.splitlines()
    assert f"mae {expected.metrics['mae']:.6g}" in stored.out.splitlines()
    csv_file = tmp_path / "xor.csv"
    csv_file.write_text(
        "x1,y,x2\n" + "".join(f"{a},{t[0]},{b}\n" for (a, b), t in zip(XOR_X, XOR_Y, strict=True))
    )
    # columns in another order: y in the middle is taken out by name
    as_json = cli("evaluate", run_id, "--data", str(csv_file), "--target", "y", "--json")
    assert as_json.code == 0, as_json.err
    document = json.loads(as_json.out)
    assert document["loss"] == pytest.approx(expected.loss)
    checkpoint = bp.checkpoints(run_id)[-1]
    at = json.loads(
        cli("evaluate", run_id, "--dataset", data_id, "--checkpoint", checkpoint.id, "--json").out
    )
    assert (at["checkpoint_id"], at["epoch"]) == (checkpoint.id, checkpoint.epoch)

    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps({"X": XOR_X, "y": [[0], [1], [1], [0]]}))
    net = bp.create_network({**XOR_NETWORK, "name": "clf"})
    data = bp.create_dataset("xor-labels", XOR_X, [0, 1, 1, 0])
    config = {
        **XOR_RUN,
        "epochs": 200,
        "loss": "binary_cross_entropy",
        "optimizer": {"name": "sgd", "learning_rate": 2.0},
    }
    clf = bp.create_run(net.id, data.id, **config)
    assert bp.wait(clf.id, poll=0.05, timeout=60).status == "succeeded"
    shown = cli("evaluate", clf.id, "--data", str(labels))
    assert shown.code == 0, shown.err
    truth = np.array([0, 1, 1, 0])
    predicted = (bp.predict(clf.id, XOR_X).array().ravel() >= 0.5).astype(int)
    matrix = [[int(np.sum((truth == t) & (predicted == p))) for p in (0, 1)] for t in (0, 1)]
    assert "confusion matrix" in shown.out and "PRECISION" in shown.out
    matrix_part, scores_part = shown.out.split("confusion matrix")[1].split("CLASS")
    rows = [line.split() for line in matrix_part.splitlines() if line.strip()][1:]
    assert rows == [["0", *map(str, matrix[0])], ["1", *map(str, matrix[1])]]
    per_class = [line.split() for line in scores_part.splitlines() if line.strip()][1:]
    # binary_cross_entropy: the scores of each output (one here), support = its positives
    assert [(row[0], row[-1]) for row in per_class] == [("0", "2")]

    for args, message in [
        ((), "exactly one"),
        (("--dataset", data_id, "--data", str(labels)), "exactly one"),
        (("--data", str(csv_file)), "--target"),
        (("--data", str(csv_file), "--target", "z"), "no column z"),
        (("--data", str(tmp_path / "none.csv"), "--target", "y"), "cannot read"),
        (("--dataset", "ds_missing"), "ds_missing"),
    ]:
        bad = cli("evaluate", run_id, *args)
        assert bad.code == 2 and message in bad.err, (args, bad.err)
