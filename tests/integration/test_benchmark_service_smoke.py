"""``benchmarks/service.py --quick``, ``benchmarks/load.py --quick`` and
``benchmarks/slow_clients.py --quick`` run to the end against a real server (no
timing asserts)."""

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
    assert results["pollers"] == 20 and results["runs"] == 2
    assert results["requests"] > 0
    assert results["errors"] == 0, results["error_samples"]
    assert results["kept_training"] is True
    # The event-stream phases: 20 subscribers on an every-epoch run beside the pollers.
    has_rows(lines, "subscribers disconnect", "subscribers that never read", "lag behind")
    sse = results["sse"]
    assert sse["subscribers"] == 20 and sse["alone"]["errors"] == 0
    assert sse["beside_pollers"]["errors"] == sse["beside_pollers"]["subscriber_errors"] == 0


def test_quick_slow_clients_benchmark_gets_every_408(tmp_path: Path) -> None:
    lines, results = run_quick("slow_clients.py", tmp_path / "slow_clients.json")
    assert lines[0] == "| measurement | value | goal |"
    has_rows(lines, "nothing else connected", "opened over one timeout", "opened at once")
    for phase in ("steady", "burst"):
        attack = results[phase]
        # Each phase outlasts one (spread) timeout after all are open: every one answered.
        assert attack["answers_408"] >= results["connections"], attack
        assert attack["other_answer_count"] == 0, attack["other_answers"]
        assert attack["healthz"]["non_200"] == 0 and attack["v1"]["non_200"] == 0
