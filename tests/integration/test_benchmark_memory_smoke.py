"""``benchmarks/memory.py --quick`` runs every case to the end against a real server
(no memory or timing asserts: the figures come from the full run)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.benchmarks import has_rows, run_quick

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_quick_memory_benchmark_prints_the_table_and_writes_json(tmp_path: Path) -> None:
    lines, results = run_quick("memory.py", tmp_path / "memory.json")
    assert lines[0].startswith("| case | status | peak RSS above baseline")
    has_rows(
        lines,
        "idle",
        "refused dataset body",
        "dataset at the limit, create",
        "`GET /data`",
        "predict",
        "decision-boundary.png",
        "`GET /weights`",
        "JSON upload",
        "CSV upload",
    )
    cases = results["results"]
    assert len(cases) == 11
    for case in cases:
        assert case["status"] == case["expected_status"], case
        assert case["healthz_requests"] > 0 and case["healthz_errors"] == 0, case
