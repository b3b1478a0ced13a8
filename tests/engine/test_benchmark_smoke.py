"""``benchmarks/engine.py --quick`` runs to the end and reports its table (no speed asserts)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_quick_benchmark_prints_the_table_and_writes_json(tmp_path: Path) -> None:
    output = tmp_path / "engine.json"
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "engine.py"),
            "--quick",
            "--output",
            str(output),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("| Measure | engine | reference | ratio | goal | met |")
    assert lines[1].startswith("|---|")
    for row in ("Tiny: XOR", "scikit-learn", "PyTorch CPU", "matmul peak", "Memory"):
        assert any(line.startswith("|") and row in line for line in lines), row
    results = json.loads(output.read_text())
    assert results["quick"] is True
    assert results["tiny"]["bit_identical"] is True
    assert results["table"] == "\n".join(lines[: results["table"].count("\n") + 1])
