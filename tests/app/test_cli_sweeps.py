"""``backprop sweep create|watch|list|cancel`` against the real app served over HTTP
(uvicorn on a thread, one worker), in this process."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from backprop_client import Client
from backprop_client.cli import main

from app.main import create_app
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
def cli(live: LiveApp, capsys: pytest.CaptureFixture[str]) -> Callable[..., Result]:
    def call(*args: str) -> Result:
        capsys.readouterr()
        code = main([*args, "--server", live.url])
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return call


def _sweep_file(tmp_path: Path, live: LiveApp, **overrides: Any) -> Path:
    with Client(live.url) as bp:
        dataset = bp.create_dataset(name="xor", X=XOR_X, y=XOR_Y)
    body = {
        "network": XOR_NETWORK,
        "dataset_id": dataset.id,
        "config": {"loss": "mse", "optimizer": {"name": "sgd"}, "epochs": 100, "seed": 1},
        "parameters": {"optimizer.learning_rate": {"choice": [0.5, 2.0]}},
        "method": "grid",
        "objective": {"metric": "loss"},
        "name": "cli-sweep",
        **overrides,
    }
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps(body))
    return path


def test_create_watch_list_cancel(
    cli: Callable[..., Result], live: LiveApp, tmp_path: Path
) -> None:
    path = _sweep_file(tmp_path, live)
    created = cli("sweep", "create", str(path))
    assert created.code == 0, created.err
    sweep_id = created.out.strip()
    assert sweep_id.startswith("swp_")
    watched = cli("sweep", "watch", sweep_id, "--poll", "0.1", "--json")
    assert watched.code == 0, watched.err
    sweep = json.loads(watched.out)
    assert sweep["status"] == "succeeded" and len(sweep["trials"]) == 2
    table = cli("sweep", "watch", sweep_id)
    assert table.code == 0 and "succeeded" in table.out
    assert f"best: trial {sweep['best_trial']['number']}" in table.out
    listed = cli("sweep", "list", "--json", "--status", "succeeded")
    assert [item["id"] for item in json.loads(listed.out)] == [sweep_id]
    assert "cli-sweep" in cli("sweep", "list").out

    slow = _sweep_file(tmp_path, live, config={"epochs": 10_000_000, "loss": "mse"})
    started = cli("sweep", "create", str(slow))
    assert started.code == 0, started.err
    cancelled = cli("sweep", "cancel", started.out.strip())
    assert cancelled.code == 0 and cancelled.out.strip().endswith("cancelled")
    after = cli("sweep", "watch", started.out.strip(), "--poll", "0.1")
    assert after.code == 1  # not succeeded


def test_bad_files_and_bodies_are_usage_errors(
    cli: Callable[..., Result], live: LiveApp, tmp_path: Path
) -> None:
    missing = cli("sweep", "create", str(tmp_path / "nope.json"))
    assert missing.code == 2 and "nope.json" in missing.err
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    assert cli("sweep", "create", str(broken)).code == 2
    invalid = _sweep_file(tmp_path, live, parameters={"optimizer.nope": {"uniform": [0, 1]}})
    result = cli("sweep", "create", str(invalid))
    assert result.code == 2 and "parameters.optimizer.nope" in result.err
    assert cli("sweep", "watch", "swp_000000000000000000000000").code == 2
