"""Run a benchmark script's ``--quick`` smoke mode and read back what it printed and wrote."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def run_quick(script: str, output: Path, timeout: float = 300) -> tuple[list[str], dict[str, Any]]:
    """Run ``benchmarks/<script> --quick --output <output>``.

    Returns
    -------
    tuple
        The printed lines and the JSON results; the printed table must be the
        ``table`` the JSON holds, and it must be a Markdown table.
    """
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--quick", "--output", str(output)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    results: dict[str, Any] = json.loads(output.read_text())
    assert results["quick"] is True
    assert results["table"] == "\n".join(lines[: results["table"].count("\n") + 1])
    assert lines[1].startswith("|---|")
    return lines, results


def has_rows(lines: list[str], *names: str) -> None:
    """Assert that the printed table has a row naming each of ``names``."""
    for name in names:
        assert any(line.startswith("|") and name in line for line in lines), name
