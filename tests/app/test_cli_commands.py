"""One ``backprop`` command: the client's commands plus the server's (entry point plugin),
and the usage errors that never reach a server."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from backprop_client import cli as client_cli

from app.cli import main, register
from tests.support.server import BACKPROP


def test_one_backprop_has_client_and_server_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    listed = capsys.readouterr().out.split("Commands:")[1].split()
    assert {"train", "runs", "predict", "evaluate", "serve", "worker", "migrate"} <= set(listed)
    assert "backprop_client.cli" in BACKPROP.read_text()  # the installed script
    assert client_cli.main(["--help"]) == 0  # the server's commands come by entry point
    assert "serve" in capsys.readouterr().out.split("Commands:")[1].split()


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("backprop, version 0.1.0")


def test_the_server_commands_register_once() -> None:
    calls: list[str] = []

    def counted(group: click.Group) -> None:
        calls.append("register")
        register(group)

    group = client_cli.build_command([counted, counted, register])
    assert sorted(group.commands) == [
        "evaluate",
        "migrate",
        "predict",
        "runs",
        "serve",
        "sweep",
        "train",
        "worker",
    ]
    assert calls == ["register"]  # and the entry point's own register was not called again


def test_a_plugin_adds_commands() -> None:
    @click.command("hello")
    def hello() -> int:
        click.echo("hi")
        return 0

    def plugin(group: click.Group) -> None:
        group.add_command(hello)

    assert client_cli.main(["hello"], plugins=[plugin]) == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "xor.json"], "--data FILE or --builtin NAME"),
        (["train", "xor.json", "--builtin", "xor", "--data", "d.json"], "exactly one"),
        (["train", "xor.json", "--builtin", "mnist"], "'mnist' is not one of"),
        (["train", "xor.json", "--builtin", "xor", "--epochs", "0"], "--epochs"),
        (["runs", "list", "--limit", "101"], "--limit"),
        (["runs", "list", "--status", "done"], "--status"),
        (["--timeout", "0", "runs", "list"], "--timeout"),
        (["runs", "watch"], "RUN_ID"),
        (["predict", "run_x"], "--input"),
        (["nonsense"], "No such command"),
    ],
)
def test_usage_errors_exit_2_naming_the_option(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_unreadable_files_exit_2_before_anything_is_sent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nowhere = "http://127.0.0.1:9"  # nothing may be sent: the files fail first
    (tmp_path / "xor.json").write_text('{"input_size": 2, "layers": []}')
    (tmp_path / "broken.json").write_text("{")
    cases = [
        ([str(tmp_path / "missing.json"), "--builtin", "xor"], "cannot read"),
        ([str(tmp_path / "broken.json"), "--builtin", "xor"], "is not valid JSON"),
        ([str(tmp_path / "xor.json"), "--data", str(tmp_path / "broken.json")], "not valid JSON"),
    ]
    for args, message in cases:
        assert main(["--server", nowhere, "train", *args]) == 2
        assert message in capsys.readouterr().err
