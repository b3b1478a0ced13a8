"""``benchmarks/engine.py --quick`` runs to the end and reports its table (no speed asserts)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.benchmarks import has_rows, run_quick


@pytest.mark.slow
def test_quick_benchmark_prints_the_table_and_writes_json(tmp_path: Path) -> None:
    lines, results = run_quick("engine.py", tmp_path / "engine.json")
    assert lines[0].startswith("| Measure | engine | reference | ratio | goal | met |")
    has_rows(
        lines, "Tiny: XOR", "scikit-learn", "PyTorch CPU", "adamw, cosine", "matmul peak", "Memory"
    )
    assert results["tiny"]["bit_identical"] is True
