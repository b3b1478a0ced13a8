"""The ``backprop`` client commands end to end against a real ``backprop serve``."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from backprop_client import Client

import engine
from app.cli import main
from tests.support.server import BACKPROP, ServerProcess, free_port, running_server

pytestmark = pytest.mark.integration

XOR_SPEC = {
    "name": "xor",
    "input_size": 2,
    "layers": [
        {"units": 3, "activation": "sigmoid"},
        {"units": 1, "activation": "sigmoid"},
    ],
    "init": {"scheme": "xavier_uniform", "seed": 7},
}
XOR_TRAIN = ["--loss", "mse", "--optimizer", "sgd", "--lr", "2", "--epochs", "3000", "--seed", "1"]


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(tmp_path_factory.mktemp("cli-server")) as started:
        yield started


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "xor.json").write_text(json.dumps(XOR_SPEC))
    return tmp_path


def backprop(
    server: ServerProcess | None, *args: str, cwd: Path, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run ``backprop ARGS`` with BACKPROP_URL pointing at ``server``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKPROP_")}
    if server is not None:
        env["BACKPROP_URL"] = server.url
    return subprocess.run(
        [str(BACKPROP), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def cli(server: ServerProcess, capsys: pytest.CaptureFixture[str], *args: str) -> Result:
    """``backprop ARGS --server URL`` in this process (no interpreter start-up)."""
    capsys.readouterr()
    code = main([*args, "--server", server.url])
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err)


def run_id_of(output: str) -> str:
    """The run id of ``train``'s messages (stderr) or of its summary (stdout)."""
    first = output.splitlines()[0].split()
    assert first[0] == "run", output
    return first[1]


def test_train_xor_from_the_terminal(
    server: ServerProcess, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = backprop(
        server, "train", "xor.json", "--builtin", "xor", *XOR_TRAIN, "--poll", "0.1", cwd=workdir
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()  # the summary; messages and progress are on stderr
    notes = result.stderr.splitlines()
    run_id = run_id_of(result.stderr)
    assert "dataset ds_" in notes[0] and "(4 x 2)" in notes[0] and "13 parameters" in notes[0]
    assert any(line.startswith("epoch ") and "/3000" in line for line in notes[1:])  # progress
    assert len(lines) == 2
    assert lines[-2].startswith(f"run {run_id} succeeded (completed) after 3000/3000 epochs")
    assert lines[-1].startswith("final loss ")
    assert float(lines[-1].split()[2]) < 0.01
    with Client(server.url) as client:
        run = client.get_run(run_id)
        predictions = client.predict(run_id, [[0, 0], [0, 1], [1, 0], [1, 1]]).array()
    assert run.status == "succeeded" and run.config["optimizer"]["learning_rate"] == 2.0
    assert np.round(predictions).ravel().tolist() == [0, 1, 1, 0]

    listed = cli(server, capsys, "runs", "list", "--status", "succeeded")
    assert listed.code == 0 and run_id in listed.out and "3000/3000" in listed.out
    watched = cli(server, capsys, "runs", "watch", run_id)
    assert watched.code == 0
    assert watched.out.splitlines()[-2].startswith(f"run {run_id} succeeded")


def test_train_from_files(
    server: ServerProcess, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = str(workdir / "xor.json")
    (workdir / "xor.csv").write_text("a,b,target\n0,0,0\n0,1,1\n1,0,1\n1,1,0\n")
    csv_run = cli(
        server,
        capsys,
        "train",
        spec,
        "--data",
        str(workdir / "xor.csv"),
        "--target",
        "target",
        *XOR_TRAIN,
        "--poll",
        "0.1",
    )
    assert csv_run.code == 0, csv_run.err
    (workdir / "xor-data.json").write_text(
        json.dumps({"X": [[0, 0], [0, 1], [1, 0], [1, 1]], "y": [[0], [1], [1], [0]]})
    )
    json_run = cli(
        server,
        capsys,
        "train",
        spec,
        "--data",
        str(workdir / "xor-data.json"),
        *XOR_TRAIN,
        "--poll",
        "0.1",
    )
    assert json_run.code == 0, json_run.err
    # Same spec, data, config and seed: the same final loss.
    assert csv_run.out.splitlines()[-1] == json_run.out.splitlines()[-1]


def test_watch_ends_with_the_final_status_of_a_cancelled_run(
    server: ServerProcess, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    started = cli(
        server,
        capsys,
        "train",
        str(workdir / "xor.json"),
        "--builtin",
        "xor",
        "--epochs",
        "100000000",
        "--detach",
    )
    assert started.code == 0, started.err
    run_id = started.out.strip()  # --detach prints the run id only
    assert started.out == f"{run_id}\n" and run_id.startswith("run_")
    watcher = subprocess.Popen(
        [str(BACKPROP), "runs", "watch", run_id, "--poll", "0.1", "--progress-every", "0.2"],
        env={**os.environ, "BACKPROP_URL": server.url},
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert watcher.stderr is not None
    first = watcher.stderr.readline()  # the watcher is up and shows the run training
    assert "/100000000" in first and ("running" in first or "queued" in first), first
    cancelled = cli(server, capsys, "runs", "cancel", run_id)
    assert cancelled.code == 0 and run_id in cancelled.out
    rest, stderr = watcher.communicate(timeout=60)
    assert watcher.returncode == 1, first + rest + stderr
    lines = rest.splitlines()
    assert lines[-2].startswith(f"run {run_id} cancelled (cancelled)"), rest
    assert lines[-1].startswith("final loss "), rest


def test_weights_export_round_trips(
    server: ServerProcess, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trained = cli(
        server,
        capsys,
        "train",
        str(workdir / "xor.json"),
        "--builtin",
        "xor",
        *XOR_TRAIN,
        "--poll",
        "0.1",
    )
    run_id = run_id_of(trained.out)
    assert trained.code == 0, trained.err
    as_json = cli(server, capsys, "runs", "weights", run_id, "--format", "json")
    assert as_json.code == 0, as_json.err
    weights: dict[str, Any] = json.loads(as_json.out)
    assert weights["epoch"] == 3000 and len(weights["layers"]) == 2
    w_json = workdir / "w.json"
    to_file = cli(server, capsys, "runs", "weights", run_id, "--output", str(w_json))
    assert to_file.code == 0 and json.loads(w_json.read_text()) == weights
    npz_path = workdir / "w.npz"
    as_npz = cli(
        server, capsys, "runs", "weights", run_id, "--format", "npz", "--output", str(npz_path)
    )
    assert as_npz.code == 0 and str(npz_path) in as_npz.err
    with np.load(npz_path, allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    assert sorted(arrays) == [
        "layer0.bias",
        "layer0.weights",
        "layer1.bias",
        "layer1.weights",
        "spec",
    ]
    assert json.loads(arrays["spec"].tobytes())["epoch"] == 3000
    for index, layer in enumerate(weights["layers"]):
        assert np.array_equal(arrays[f"layer{index}.weights"], np.asarray(layer["weights"]))
        assert np.array_equal(arrays[f"layer{index}.bias"], np.asarray(layer["bias"]))
    # The exported weights reproduce the service's predictions in the engine.
    network = engine.Network.from_spec(XOR_SPEC)
    network.set_weights(
        [
            {"weights": arrays[f"layer{i}.weights"], "bias": arrays[f"layer{i}.bias"]}
            for i in range(2)
        ]
    )
    X = [[0, 0], [0, 1], [1, 0], [1, 1]]
    inputs_csv = workdir / "inputs.csv"
    inputs_csv.write_text("a,b\n" + "\n".join(f"{a},{b}" for a, b in X) + "\n")
    predicted = backprop(server, "predict", run_id, "--input", "inputs.csv", cwd=workdir)
    assert predicted.returncode == 0, predicted.stderr
    service = json.loads(predicted.stdout)
    assert service["epoch"] == 3000
    np.testing.assert_allclose(network.predict(np.asarray(X, float)), service["predictions"])
    inputs_json, out_csv = workdir / "inputs.json", workdir / "out.csv"
    inputs_json.write_text(json.dumps({"X": X}))
    as_csv = cli(
        server, capsys, "predict", run_id, "--input", str(inputs_json), "--output", str(out_csv)
    )
    assert as_csv.code == 0, as_csv.err
    rows = out_csv.read_text().splitlines()
    assert rows[0] == "output_0" and len(rows) == 5
    np.testing.assert_array_equal([float(r) for r in rows[1:]], np.ravel(service["predictions"]))


def test_errors_are_one_line_with_exit_codes(
    server: ServerProcess, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = backprop(server, "runs", "watch", "run_missing", cwd=workdir)
    assert missing.returncode == 2
    assert missing.stderr.strip() == "error: 404 Not Found: run 'run_missing' not found"
    bad = workdir / "bad.json"
    bad.write_text(json.dumps({**XOR_SPEC, "layers": [{"units": 1, "activation": "sigmoidal"}]}))
    invalid = cli(server, capsys, "train", str(bad), "--builtin", "xor")
    assert invalid.code == 2 and invalid.err.startswith("error: 422 Unprocessable")
    assert "body.layers.0.activation" in invalid.err
    no_file = cli(server, capsys, "train", str(workdir / "nope.json"), "--builtin", "xor")
    assert no_file.code == 2 and "cannot read" in no_file.err and "nope.json" in no_file.err
    no_target = cli(
        server, capsys, "train", str(workdir / "xor.json"), "--data", str(workdir / "x.csv")
    )
    assert no_target.code == 2 and "--target" in no_target.err
    assert main(["train", str(workdir / "xor.json")]) == 2
    assert "--data" in capsys.readouterr().err
    capsys.readouterr()
    down = main(["runs", "list", "--server", f"http://127.0.0.1:{free_port()}"])
    assert down == 3 and capsys.readouterr().err.startswith("error: cannot reach")


def test_global_options_before_or_after_the_subcommand(
    server: ServerProcess, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = backprop(None, "--server", server.url, "runs", "list", cwd=workdir)
    assert before.returncode == 0, before.stderr
    assert before.stdout.split()[:3] == ["ID", "NAME", "STATUS"]
    capsys.readouterr()
    assert main(["--server", server.url, "--json", "runs", "list", "--limit", "3"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert isinstance(listed, list) and len(listed) <= 3
    after = cli(server, capsys, "runs", "list", "--json", "--limit", "3")
    assert after.code == 0 and json.loads(after.out) == listed
    down = f"http://127.0.0.1:{free_port()}"  # the option after the subcommand wins
    assert main(["--server", down, "runs", "list", "--server", server.url]) == 0
    assert main(["--server", down, "runs", "list"]) == 3


def test_api_key_option_and_environment(tmp_path: Path, workdir: Path) -> None:
    with running_server(tmp_path, env={"BACKPROP_API_KEYS": "sesame"}) as locked:
        anonymous = backprop(locked, "runs", "list", cwd=workdir)
        assert anonymous.returncode == 2 and "401" in anonymous.stderr
        keyed = backprop(locked, "--api-key", "sesame", "runs", "list", cwd=workdir)
        assert keyed.returncode == 0, keyed.stderr
        after = backprop(locked, "runs", "list", "--api-key", "sesame", cwd=workdir)
        assert after.returncode == 0, after.stderr
        env = {**os.environ, "BACKPROP_URL": locked.url, "BACKPROP_API_KEY": "sesame"}
        from_env = subprocess.run(
            [str(BACKPROP), "--json", "runs", "list"],
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert from_env.returncode == 0 and json.loads(from_env.stdout) == []


def test_json_on_every_command(
    server: ServerProcess, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = str(workdir / "xor.json")
    trained = cli(server, capsys, "train", spec, "--builtin", "xor", *XOR_TRAIN, "--json")
    assert trained.code == 0, trained.err
    run = json.loads(trained.out)
    assert run["status"] == "succeeded" and run["epoch"] == 3000
    watched = cli(server, capsys, "runs", "watch", run["id"], "--json")
    assert watched.code == 0 and json.loads(watched.out)["id"] == run["id"]
    detached = cli(
        server, capsys, "train", spec, "--builtin", "xor", "--epochs", "100000000", "--detach",
        "--json",
    )  # fmt: skip
    queued = json.loads(detached.out)
    assert detached.code == 0 and queued["status"] in ("queued", "running")
    paused = cli(server, capsys, "runs", "pause", queued["id"], "--json")
    assert paused.code == 0 and json.loads(paused.out)["id"] == queued["id"]
    assert json.loads(paused.out)["status"] in ("paused", "running")  # running: pause requested
    resumed = cli(server, capsys, "runs", "resume", queued["id"], "--json")
    assert resumed.code in (0, 2), resumed.err  # 409 while a pause is still being honoured
    cancelled = cli(server, capsys, "runs", "cancel", queued["id"], "--json")
    assert cancelled.code == 0 and json.loads(cancelled.out)["id"] == queued["id"]
    npz = workdir / "w.npz"
    exported = cli(
        server, capsys, "runs", "weights", run["id"], "--format", "npz", "--output", str(npz),
        "--json",
    )  # fmt: skip
    assert exported.code == 0 and json.loads(exported.out) == {
        "path": str(npz),
        "format": "npz",
        "epoch": 3000,
    }
    inputs = workdir / "in.csv"
    inputs.write_text("0,0\n1,1\n")
    predicted = cli(server, capsys, "predict", run["id"], "--input", str(inputs), "--json")
    assert predicted.code == 0 and len(json.loads(predicted.out)["predictions"]) == 2


def test_a_failed_train_removes_what_it_created(
    server: ServerProcess, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with Client(server.url) as bp:
        networks = [n.id for n in bp.list_networks()]
        datasets = [d.id for d in bp.list_datasets()]
    spec = str(workdir / "xor.json")
    bad_run = cli(server, capsys, "train", spec, "--builtin", "xor", "--loss", "nonsense")
    assert bad_run.code == 2 and "422" in bad_run.err and "body.loss" in bad_run.err
    assert "removed network net_" in bad_run.err and " and dataset ds_" in bad_run.err
    bad = workdir / "bad.json"
    bad.write_text(json.dumps({**XOR_SPEC, "layers": [{"units": 1, "activation": "sigmoidal"}]}))
    bad_network = cli(server, capsys, "train", str(bad), "--builtin", "xor")
    assert bad_network.code == 2 and "removed dataset ds_" in bad_network.err
    with Client(server.url) as bp:
        assert [n.id for n in bp.list_networks()] == networks
        assert [d.id for d in bp.list_datasets()] == datasets


def test_train_shows_a_progress_bar_on_a_terminal(server: ServerProcess, workdir: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKPROP_")}
    terminal = {"TTY_COMPATIBLE": "1", "TTY_INTERACTIVE": "1", "TERM": "xterm", "COLUMNS": "150"}
    result = subprocess.run(
        [str(BACKPROP), "--server", server.url, "train", "xor.json", "--builtin", "xor",
         *XOR_TRAIN],
        cwd=workdir, env={**env, **terminal}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "━" in result.stderr and "3000/3000" in result.stderr  # rich's bar, epochs done
    assert "succeeded (completed) after 3000/3000 epochs" in result.stdout


def test_experiment_commands_against_a_real_server(server: ServerProcess, workdir: Path) -> None:
    """The installed ``backprop``: tag, list by tag and sort, compare with a plot,
    evaluate on a CSV file, delete; each with --json."""
    spec = str(workdir / "xor.json")
    ids = []
    for rate in ("0.5", "2"):
        trained = backprop(
            server, "--json", "train", spec, "--builtin", "xor", "--loss", "mse",
            "--optimizer", "sgd", "--lr", rate, "--epochs", "300", "--seed", "1", cwd=workdir,
        )  # fmt: skip
        assert trained.returncode == 0, trained.stderr
        ids.append(json.loads(trained.stdout)["id"])
    tagged = backprop(
        server, "runs", "tag", ids[0], "--add", "exp13", "--name", "slow", "--json", cwd=workdir
    )
    assert tagged.returncode == 0, tagged.stderr
    assert (json.loads(tagged.stdout)["name"], json.loads(tagged.stdout)["tags"]) == (
        "slow",
        ["exp13"],
    )
    listed = backprop(
        server, "runs", "list", "--tag", "exp13", "--sort", "-loss", "--json", cwd=workdir
    )
    assert [r["id"] for r in json.loads(listed.stdout)] == [ids[0]]
    plot = workdir / "compare.png"
    compared = backprop(
        server, "runs", "compare", *ids, "--plot", str(plot), "--metric", "loss", "--json",
        cwd=workdir,
    )  # fmt: skip
    assert compared.returncode == 0, compared.stderr
    assert "optimizer.learning_rate" in json.loads(compared.stdout)["differing"]
    assert plot.read_bytes()[:4] == b"\x89PNG"
    (workdir / "xor.csv").write_text("a,b,y\n0,0,0\n0,1,1\n1,0,1\n1,1,0\n")
    evaluated = backprop(
        server, "evaluate", ids[1], "--data", "xor.csv", "--target", "y", "--json", cwd=workdir
    )
    assert evaluated.returncode == 0, evaluated.stderr
    result = json.loads(evaluated.stdout)
    with Client(server.url) as bp:
        assert result["loss"] == pytest.approx(
            bp.evaluate_run(ids[1], X=[[0, 0], [0, 1], [1, 0], [1, 1]], y=[0, 1, 1, 0]).loss
        )
        deleted = backprop(server, "runs", "delete", ids[0], cwd=workdir)
        assert deleted.returncode == 0 and deleted.stdout.strip() == f"run {ids[0]} deleted"
        assert ids[0] not in [r.id for r in bp.list_runs()]
