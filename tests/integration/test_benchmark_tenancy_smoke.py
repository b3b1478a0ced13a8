"""``benchmarks/tenancy.py --quick`` runs to the end on SQLite (no timing asserts)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.benchmarks import has_rows, run_quick

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_quick_tenancy_benchmark_prints_the_table_and_writes_json(tmp_path: Path) -> None:
    lines, results = run_quick("tenancy.py", tmp_path / "tenancy.json")
    assert lines[0] == "| measure | new | old | ratio |"
    has_rows(lines, "fair pick, sqlite", "data check", "tiny write behind", "quota sums")
    assert results["fair_pick"] and results["storage"]
    creation = results["run_creation"]
    assert creation["tiny_write_ms"]["writes"] >= 5 and creation["tiny_write_old_ms"]["writes"] >= 5
