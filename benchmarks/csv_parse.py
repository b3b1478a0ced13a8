"""CSV parsing throughput by kind of file (issue 10 defect 6, issue 12).

``.venv/bin/python benchmarks/csv_parse.py`` times ``app.datasets.parsing.parse_csv``
in this process (best of 3, warm) on files of each kind the parser has a path for:
numbers only (pyarrow's reader), a categorical text column (the exact path, rows from
pyarrow), the same with quotes (rows from :mod:`csv`), empty cells with
``missing="mean"``, 100,000 columns (NumPy's ``loadtxt``), and the same with a text
column (the exact path, whose wide blocks convert every numeric column at once: 1.3 s
and 80 MiB when it went column by column). It also measures each
parse's peak RSS above the RSS before it, in a fresh process per file (``VmHWM`` after
``clear_refs``), against issue 10's goals: > 20 MB/s for any CSV within the limits,
and < 3 x 8 bytes per cell + 64 MiB. Writes ``benchmarks/results/csv_parse.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "benchmarks"]
sys.path.insert(0, str(ROOT))

from app.datasets.parsing import parse_csv  # noqa: E402
from benchmarks.service import machine  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "csv_parse.json"
MIB = 1024 * 1024
SPECIES = np.array(["setosa", "versicolor", "virginica"])


def numbers(rows: int, columns: int, rng: np.random.Generator) -> list[list[str]]:
    """Rows of 4-decimal normal values, as text."""
    return [[f"{v:.4f}" for v in row] for row in rng.normal(size=(rows, columns)).tolist()]


def csv_file(header: list[str], rows: list[list[str]]) -> bytes:
    return ("\n".join([",".join(header), *(",".join(row) for row in rows)]) + "\n").encode()


def files(scale: float) -> list[tuple[str, bytes, str, str]]:
    """(name, content, target column, missing option) of each kind of file."""
    rng = np.random.default_rng(0)
    long_rows, wide_rows = int(200_000 * scale), int(20_000 * scale)
    out: list[tuple[str, bytes, str, str]] = []
    cells = numbers(wide_rows, 50, rng)
    out.append(
        ("numbers, 50 columns", csv_file([f"x{i}" for i in range(50)], cells), "x0", "error")
    )
    labels = SPECIES[rng.integers(0, 3, wide_rows)]
    rows = [[*row, str(label)] for row, label in zip(cells, labels, strict=True)]
    header = [*(f"x{i}" for i in range(50)), "species"]
    out.append(("50 numbers + a text column", csv_file(header, rows), "species", "error"))
    quoted = [[*row[:-1], f'"{row[-1]}"'] for row in rows]
    out.append(("the same, quoted text", csv_file(header, quoted), "species", "error"))
    short = numbers(long_rows, 4, rng)
    labels = SPECIES[rng.integers(0, 3, long_rows)]
    rows = [[*row, str(label)] for row, label in zip(short, labels, strict=True)]
    header = ["a", "b", "c", "d", "species"]
    out.append(("4 numbers + a text column", csv_file(header, rows), "species", "error"))
    holes = [
        [cell if (i + j) % 7 else "" for j, cell in enumerate(row)] for i, row in enumerate(short)
    ]
    rows = [[*row, str(i % 3)] for i, row in enumerate(holes)]
    out.append(("4 numbers, 1 in 7 empty", csv_file([*header[:4], "y"], rows), "y", "mean"))
    wide = 100_000
    out.append(
        (
            "100,000 columns, 1 row",
            csv_file([f"c{i}" for i in range(wide)], [["1"] * wide]),
            "c0",
            "error",
        )
    )
    header = [f"c{i}" for i in range(wide)]
    out.append(
        ("the same + a text column", csv_file(header, [["1"] * (wide - 1) + ["a"]]), "c0", "error")
    )
    return out


def seconds(content: bytes, target: str, missing: Any) -> float:
    parse_csv(content, [target], missing=missing)  # warm (imports, caches)
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        parse_csv(content, [target], missing=missing)
        best = min(best, time.perf_counter() - started)
    return best


PEAK = """
import sys
from pathlib import Path
import pyarrow.csv
from app.datasets.parsing import parse_csv

def status(field):
    line = next(l for l in open("/proc/self/status") if l.startswith(field))
    return int(line.split()[1]) * 1024

content = Path(sys.argv[1]).read_bytes()
baseline = status("VmRSS:")
with open("/proc/self/clear_refs", "w") as refs:
    refs.write("5")
parsed = parse_csv(content, [sys.argv[2]], missing=sys.argv[3])
print(status("VmHWM:") - baseline, parsed.X.size + parsed.y.size)
"""


def peak_bytes(content: bytes, target: str, missing: str, scratch: Path) -> tuple[int, int]:
    """Peak RSS above the baseline of one parse in a fresh process, and its cells."""
    path = scratch / "file.csv"
    path.write_bytes(content)
    result = subprocess.run(
        [sys.executable, "-c", PEAK, str(path), target, missing],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    peak, cells = result.stdout.split()
    return int(peak), int(cells)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the row counts")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as scratch:
        for name, content, target, missing in files(args.scale):
            took = seconds(content, target, missing)
            peak, cells = peak_bytes(content, target, missing, Path(scratch))
            limit = 3 * 8 * cells + 64 * MIB
            results.append(
                {
                    "file": name,
                    "mb": len(content) / 1e6,
                    "seconds": took,
                    "mb_per_s": len(content) / 1e6 / took,
                    "peak_mib": peak / MIB,
                    "peak_goal_mib": limit / MIB,
                }
            )
    print("| file | MB | ms | MB/s (goal > 20) | peak above baseline | goal |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['file']} | {r['mb']:.1f} | {r['seconds'] * 1000:.0f} | {r['mb_per_s']:.0f} "
            f"| {r['peak_mib']:.0f} MiB | {r['peak_goal_mib']:.0f} MiB |"
        )
    report = {"command": "python benchmarks/csv_parse.py", "machine": machine(), "results": results}
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
