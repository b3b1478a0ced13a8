"""``make run`` takes HOST/PORT and installs only the serving dependencies (dry runs)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="no make")


def dry_run(*args: str) -> list[str]:
    """The commands ``make -n -B ARGS`` would run (every target considered out of date)."""
    # Under `make test` the parent make's variables would make this one a sub-make
    # (which prints "Entering/Leaving directory" lines and inherits its flags).
    env = {k: v for k, v in os.environ.items() if k not in {"MAKEFLAGS", "MFLAGS", "MAKELEVEL"}}
    result = subprocess.run(
        ["make", "--no-print-directory", "-n", "-B", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_make_run_takes_host_and_port_and_syncs_without_the_dev_group() -> None:
    commands = dry_run("run", "HOST=0.0.0.0", "PORT=8080")
    assert commands[-1].endswith("backprop serve --host 0.0.0.0 --port 8080")
    syncs = [line for line in commands if " sync " in line]
    assert syncs and all("--frozen --no-dev" in line for line in syncs)
    assert not any("torch" in line for line in commands)  # PyTorch belongs to `make test`


def test_make_run_defaults_to_localhost_8000() -> None:
    assert dry_run("run")[-1].endswith("backprop serve --host 127.0.0.1 --port 8000")


def test_the_test_environment_gets_the_dev_group() -> None:
    syncs = [line for line in dry_run("env") if " sync " in line]
    assert syncs and not any("--no-dev" in line for line in syncs)


def test_make_test_hands_out_files_in_the_suites_own_order() -> None:
    """tests/conftest.py puts slow files first; xdist's default reorder would undo it."""
    (command,) = [line for line in dry_run("pytest") if "bin/pytest" in line]
    assert "--dist loadfile" in command and "--no-loadscope-reorder" in command
