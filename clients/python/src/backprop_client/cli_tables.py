"""Tables of the experiment commands: a run comparison and an evaluation."""

from __future__ import annotations

import json
from typing import Any

from rich.table import Table

from backprop_client.cli_output import number
from backprop_client.models import Evaluation, RunComparison


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return number(float(value)) if isinstance(value, float) else str(value)
    if isinstance(value, str):
        return value
    return json.dumps(value)


def _result_rows(comparison: RunComparison) -> list[tuple[str, list[Any]]]:
    """``final <key>`` and ``best <key>`` rows: epoch, losses and every metric recorded."""
    rows: list[tuple[str, list[Any]]] = []
    for part in ("final", "best"):
        results = [getattr(run, part) for run in comparison.runs]
        keys: list[str] = []
        for result in results:
            keys += [k for k in result if k != "metrics" and k not in keys]
        metric_names = sorted({m for result in results for m in (result.get("metrics") or {})})
        rows += [(f"{part} {key}", [result.get(key) for result in results]) for key in keys]
        rows += [
            (f"{part} {name}", [(result.get("metrics") or {}).get(name) for result in results])
            for name in metric_names
        ]
    return rows


def comparison_table(comparison: RunComparison) -> Table:
    """One column per run (its name, else its id): status, the config fields that
    differ, then the final and best results."""
    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("FIELD", no_wrap=True)
    for run in comparison.runs:
        table.add_column(run.name or run.id, no_wrap=True)
    table.add_row("id", *[run.id for run in comparison.runs])
    table.add_row("status", *[run.status for run in comparison.runs])
    for field in comparison.fields:
        if field.differs:
            table.add_row(field.field, *[_cell(value) for value in field.values])
    for label, values in _result_rows(comparison):
        table.add_row(label, *[_cell(value) for value in values])
    return table


def evaluation_lines(evaluation: Evaluation) -> list[str]:
    """``loss_name loss`` and the metrics, one line each."""
    source = evaluation.dataset_id or "the given data"
    weights = evaluation.checkpoint_id or evaluation.run_id or evaluation.network_id
    lines = [
        f"{weights} (epoch {evaluation.epoch}) on {source}, {evaluation.n_samples} samples",
        f"{evaluation.loss_name} {number(evaluation.loss)}",
    ]
    lines += [f"{name} {number(value)}" for name, value in sorted(evaluation.metrics.items())]
    return lines


def confusion_tables(evaluation: Evaluation) -> list[Table]:
    """The confusion matrix (rows: the true class) and the per-class scores, if any."""
    tables: list[Table] = []
    matrix = evaluation.confusion_matrix
    if matrix:
        # cross_entropy: one k x k matrix; binary_cross_entropy: one 2 x 2 per output.
        matrices = matrix if isinstance(matrix[0][0], list) else [matrix]
        for index, counts in enumerate(matrices):
            title = "confusion matrix" + (f" (output {index})" if len(matrices) > 1 else "")
            table = Table(title=title, box=None, pad_edge=False, header_style="bold")
            table.add_column("TRUE \\ PREDICTED", no_wrap=True)
            for column in range(len(counts)):
                table.add_column(str(column), justify="right")
            for row_index, row in enumerate(counts):
                table.add_row(str(row_index), *[str(count) for count in row])
            tables.append(table)
    if evaluation.per_class:
        table = Table(box=None, pad_edge=False, header_style="bold")
        for name in ("CLASS", "PRECISION", "RECALL", "F1", "SUPPORT"):
            table.add_column(name, justify="right")
        for scores in evaluation.per_class:
            table.add_row(
                str(scores.class_),
                number(scores.precision),
                number(scores.recall),
                number(scores.f1),
                str(scores.support),
            )
        tables.append(table)
    return tables
