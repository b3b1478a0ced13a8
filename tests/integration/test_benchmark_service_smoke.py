"""``benchmarks/service.py --quick`` runs to the end against a real server (no timing asserts)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_quick_service_benchmark_prints_the_table_and_writes_json(tmp_path: Path) -> None:
    output = tmp_path / "service.json"
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "service.py"),
            "--quick",
            "--output",
            str(output),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "| measure | result | goal | |"
    assert lines[1].startswith("|---|")
    for row in ("`POST` → `succeeded`", "dispatch", "pollers x 1/s", "max_points=1000", "growth"):
        assert any(line.startswith("|") and row in line for line in lines), row
    results = json.loads(output.read_text())
    assert results["quick"] is True
    # Correctness is checked even in the smoke run: the service trains exactly like engine.fit.
    assert results["overhead"]["bit_identical"] is True
    assert results["responsiveness"]["training_10hz"]["errors"] == 0
    assert results["table"] == "\n".join(lines[: results["table"].count("\n") + 1])
