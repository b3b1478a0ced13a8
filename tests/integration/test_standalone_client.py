"""``pip install ./clients/python`` into an empty virtual environment (no NumPy, no
server), then its ``backprop train`` against a real ``backprop serve``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.server import ServerProcess, running_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CLIENT = Path(__file__).resolve().parents[2] / "clients" / "python"
XOR_SPEC = {
    "name": "xor",
    "input_size": 2,
    "layers": [{"units": 3, "activation": "sigmoid"}, {"units": 1, "activation": "sigmoid"}],
    "init": {"scheme": "xavier_uniform", "seed": 7},
}
TERMINAL = {"TTY_COMPATIBLE": "1", "TTY_INTERACTIVE": "1", "TERM": "xterm", "COLUMNS": "150"}
"""rich draws its live progress bar as on a terminal."""


def _run(*args: str | Path, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(arg) for arg in args],
        capture_output=True,
        text=True,
        timeout=600,
        **kwargs,  # type: ignore[call-overload]
    )


@pytest.fixture(scope="session")
def client_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with only ``pip install ./clients/python`` (one install per session)."""
    venv = tmp_path_factory.mktemp("client-venv") / "venv"
    base = getattr(sys, "_base_executable", sys.executable)
    created = _run(base, "-m", "venv", venv)
    assert created.returncode == 0, created.stderr
    installed = _run(
        venv / "bin" / "python",
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        CLIENT,
        env={k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "UV_"))},
    )
    if installed.returncode != 0 and "Could not find a version" in installed.stderr:
        pytest.skip(f"the package index is not reachable: {installed.stderr[-300:]}")
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return venv


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(tmp_path_factory.mktemp("standalone-server")) as started:
        yield started


def test_the_client_installs_without_numpy_or_the_server(client_venv: Path) -> None:
    listed = _run(client_venv / "bin" / "python", "-m", "pip", "list", "--format", "json")
    names = {entry["name"].lower() for entry in json.loads(listed.stdout)}
    assert "backprop-client" in names and {"httpx", "httpx-sse", "rich", "click"} <= names
    assert not names & {"numpy", "backprop", "fastapi", "celery", "sqlalchemy", "matplotlib"}
    no_numpy = _run(client_venv / "bin" / "python", "-c", "import numpy")
    assert no_numpy.returncode != 0 and "No module named 'numpy'" in no_numpy.stderr
    helper = _run(
        client_venv / "bin" / "python",
        "-c",
        "from backprop_client import Prediction; Prediction(epoch=1, predictions=[[1.0]]).array()",
    )
    assert helper.returncode != 0 and "backprop-client[numpy]" in helper.stderr
    usage = _run(client_venv / "bin" / "backprop", "--help")
    assert usage.returncode == 0 and "train" in usage.stdout and "runs" in usage.stdout
    commands = usage.stdout.split("Commands:")[1].split()
    assert "train" in commands and "serve" not in commands  # serve comes with the server
    missing = _run(client_venv / "bin" / "backprop", "serve")
    assert missing.returncode == 2 and "No such command 'serve'" in missing.stderr


def test_train_xor_from_the_standalone_client(
    client_venv: Path, server: ServerProcess, tmp_path: Path
) -> None:
    (tmp_path / "xor.json").write_text(json.dumps(XOR_SPEC))
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKPROP_")}
    trained = _run(
        client_venv / "bin" / "backprop",
        "train",
        "xor.json",
        "--builtin",
        "xor",
        "--lr",
        "2",
        "--epochs",
        "3000",
        "--seed",
        "1",
        cwd=tmp_path,
        env={**env, **TERMINAL, "BACKPROP_URL": server.url},
    )
    assert trained.returncode == 0, trained.stdout + trained.stderr
    assert "━" in trained.stderr and "3000/3000" in trained.stderr  # the progress bar
    summary = trained.stdout.splitlines()
    assert "succeeded (completed) after 3000/3000 epochs" in summary[0]
    assert float(summary[1].split()[2]) < 0.01  # final loss
    run_id = summary[0].split()[1]
    listed = _run(
        client_venv / "bin" / "backprop", "--server", server.url, "--json", "runs", "list", env=env
    )
    assert listed.returncode == 0, listed.stderr
    assert [run["id"] for run in json.loads(listed.stdout)] == [run_id]
