"""``benchmarks/service.py --quick`` and ``benchmarks/load.py --quick`` run to the end
against a real server (no timing asserts)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.benchmarks import has_rows, run_quick

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_quick_service_benchmark_prints_the_table_and_writes_json(tmp_path: Path) -> None:
    lines, results = run_quick("service.py", tmp_path / "service.json")
    assert lines[0] == "| measure | result | goal | |"
    has_rows(
        lines, "`POST` → `succeeded`", "dispatch", "pollers x 1/s", "max_points=1000", "growth"
    )
    # Correctness is checked even in the smoke run: the service trains exactly like engine.fit.
    assert results["overhead"]["bit_identical"] is True
    assert results["responsiveness"]["training_10hz"]["errors"] == 0


def test_quick_load_benchmark_polls_without_errors_while_runs_train(tmp_path: Path) -> None:
    lines, results = run_quick("load.py", tmp_path / "load.json")
    assert lines[0] == "| measure | value | goal |"
    has_rows(lines, "requests/s", "p50 / p99", "errors", "server RSS start → end")
    assert results["pollers"] == 20 and results["runs"] == 4
    assert results["requests"] > 0
    assert results["errors"] == 0, results["error_samples"]
    assert results["kept_training"] is True
