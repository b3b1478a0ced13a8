"""Files the ``backprop`` command reads: network specs, datasets and inputs."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any


class UsageError(Exception):
    """A bad argument or an unreadable file: exit code 2 with the message."""


def read_json(path: Path) -> Any:
    """A JSON file, or a :class:`UsageError` that names it."""
    try:
        return json.loads(path.read_text())
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path} is not valid JSON: {exc}") from None


def read_network_spec(path: Path) -> dict[str, Any]:
    """A network spec (``POST /v1/networks`` body); its name defaults to the file's stem."""
    spec = read_json(path)
    if not isinstance(spec, dict):
        raise UsageError(f"{path}: a network spec is a JSON object")
    spec.setdefault("name", path.stem)
    return spec


def read_dataset_json(path: Path) -> tuple[str, Any, Any]:
    """``(name, X, y)`` from a JSON file ``{"X": [[...]], "y": [...], "name"?: ...}``."""
    data = read_json(path)
    if not isinstance(data, dict) or "X" not in data or "y" not in data:
        raise UsageError(f'{path}: expected a JSON object {{"X": [[...]], "y": [...]}}')
    return str(data.get("name") or path.stem), data["X"], data["y"]


def read_rows(path: Path) -> list[list[float]]:
    """Input rows from a CSV file (an optional header row is skipped) or a JSON file
    (``{"X": [[...]]}`` or a bare list of rows)."""
    if path.suffix.lower() == ".json":
        data = read_json(path)
        rows = data.get("X") if isinstance(data, dict) else data
        if not isinstance(rows, list):
            raise UsageError(f'{path}: expected {{"X": [[...], ...]}} or a list of rows')
        return rows
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    rows = [row for row in csv.reader(io.StringIO(text)) if any(cell.strip() for cell in row)]
    values: list[list[float]] = []
    for index, row in enumerate(rows):
        try:
            values.append([float(cell) for cell in row])
        except ValueError:
            if index == 0:
                continue  # a header row
            raise UsageError(f"{path}, line {index + 1}: not a number in {row}") from None
    if not values:
        raise UsageError(f"{path}: no rows")
    return values


def predictions_csv(predictions: list[list[float | None]]) -> str:
    """Predictions as CSV with a header ``output_0,output_1,...`` (None as ``nan``)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    width = len(predictions[0]) if predictions else 0
    writer.writerow([f"output_{i}" for i in range(width)])
    writer.writerows([["nan" if v is None else repr(v) for v in row] for row in predictions])
    return buffer.getvalue()
