"""``benchmarks/sweep.py --quick`` runs to the end against a real server (no timing asserts)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.benchmarks import has_rows, run_quick

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_quick_sweep_benchmark_prints_the_table_and_writes_json(tmp_path: Path) -> None:
    lines, results = run_quick("sweep.py", tmp_path / "sweep.json")
    assert lines[0] == "| measure | result | goal | |"
    has_rows(lines, "`engine.fit` in 2 processes", "posted at once", "random sweep", "dispatch")
    assert results["at_once"]["statuses"] == ["succeeded"]
    assert results["sweep"]["status"] == "succeeded"
    assert results["sweep"]["trials"] == results["sizes"]["runs"]
