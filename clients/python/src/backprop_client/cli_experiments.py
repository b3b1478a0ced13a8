"""``backprop runs tag|delete|compare`` and ``backprop evaluate``."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from backprop_client.cli_common import EXIT_OK, Output, connection_options, run_command
from backprop_client.cli_files import UsageError, read_dataset_json
from backprop_client.cli_tables import comparison_table, confusion_tables, evaluation_lines
from backprop_client.client import Client

RUN_ID = click.argument("run_id")


def _tags(current: Sequence[str], add: Sequence[str], remove: Sequence[str]) -> list[str]:
    """``current`` without ``remove``, then ``add`` (no duplicates, order kept)."""
    dropped = set(remove)
    kept = [tag for tag in current if tag not in dropped]
    return list(dict.fromkeys([*kept, *add]))


@click.command("tag")
@RUN_ID
@click.option("--add", "add", multiple=True, metavar="TAG", help="Add this tag (repeatable).")
@click.option(
    "--remove", "remove", multiple=True, metavar="TAG", help="Remove this tag (repeatable)."
)
@click.option("--name", help="A new name for the run.")
@connection_options
@click.pass_context
def runs_tag(
    ctx: click.Context, run_id: str, add: tuple[str, ...], remove: tuple[str, ...], name: str | None
) -> int:
    """Add or remove a run's tags and/or rename it (without options: show them)."""

    def command(client: Client, output: Output) -> int:
        run = client.get_run(run_id)
        changes: dict[str, Any] = {} if name is None else {"name": name}
        if add or remove:
            changes["tags"] = _tags(run.tags, add, remove)
        if changes:
            run = client.update_run(run_id, **changes)
        if output.options.json:
            output.json(run.model_dump(mode="json"))
        else:
            shown = ", ".join(run.tags) or "-"
            output.line(f"run {run.id} name {run.name or '-'} tags {shown}")
        return EXIT_OK

    return run_command(ctx, command)


@click.command("delete")
@RUN_ID
@click.option("--force", is_flag=True, help="Cancel an unfinished run first, then delete it.")
@connection_options
@click.pass_context
def runs_delete(ctx: click.Context, run_id: str, force: bool) -> int:
    """Delete a run with its history and checkpoints (an unfinished one only with --force)."""

    def command(client: Client, output: Output) -> int:
        client.delete_run(run_id, force=force)
        if output.options.json:
            output.json({"id": run_id, "deleted": True})
        else:
            output.line(f"run {run_id} deleted")
        return EXIT_OK

    return run_command(ctx, command)


@click.command("compare")
@click.argument("run_ids", nargs=-1, required=True)
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write a PNG overlaying the runs' --metric curves.",
)
@click.option(
    "--metric",
    default="val_loss",
    show_default=True,
    help="The plotted column: loss, val_loss, a metric or val_<metric>.",
)
@click.option("--log", is_flag=True, help="A logarithmic y axis in the plot.")
@connection_options
@click.pass_context
def runs_compare(
    ctx: click.Context, run_ids: tuple[str, ...], plot_path: Path | None, metric: str, log: bool
) -> int:
    """Runs side by side: the config fields that differ, the final and best results."""

    def command(client: Client, output: Output) -> int:
        comparison = client.compare_runs(run_ids)
        if plot_path is not None:
            png = client.compare_plot(run_ids, metric=metric, log=log)
            try:
                plot_path.write_bytes(png)
            except OSError as exc:
                raise UsageError(f"cannot write {plot_path}: {exc.strerror or exc}") from None
            output.note(f"wrote {plot_path} ({metric} of {len(run_ids)} runs)")
        if output.options.json:
            document = comparison.model_dump(mode="json")
            if plot_path is not None:
                document["plot"] = str(plot_path)
            output.json(document)
        else:
            output.out.print(comparison_table(comparison))
            if not comparison.differing:
                output.note("the runs' configs are the same")
        return EXIT_OK

    return run_command(ctx, command)


# --------------------------------------------------------------------------- evaluate


def _number(cell: str) -> Any:
    """A CSV cell as an int, a float, or the text (a class name)."""
    text = cell.strip()
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def read_labeled_csv(path: Path, target: str) -> tuple[list[list[float]], list[Any]]:
    """``X`` and ``y`` from a CSV file with a header row; ``target`` names the y
    column(s), comma-separated; every other column is a feature."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    rows = [row for row in csv.reader(io.StringIO(text)) if any(cell.strip() for cell in row)]
    if len(rows) < 2:
        raise UsageError(f"{path}: expected a header row and at least one row of data")
    header = [name.strip() for name in rows[0]]
    targets = [name.strip() for name in target.split(",") if name.strip()]
    missing = [name for name in targets if name not in header]
    if not targets:
        raise UsageError("--target names the y column(s) of a CSV file, e.g. --target y")
    if missing:
        raise UsageError(
            f"--target: no column {', '.join(missing)} in {path} (columns: {', '.join(header)})"
        )
    y_index = [header.index(name) for name in targets]
    x_index = [i for i in range(len(header)) if i not in y_index]
    X: list[list[float]] = []
    y: list[Any] = []
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise UsageError(f"{path}, line {line}: {len(row)} cells, the header has {len(header)}")
        try:
            X.append([float(row[i]) for i in x_index])
        except ValueError:
            raise UsageError(f"{path}, line {line}: a feature is not a number") from None
        values = [_number(row[i]) for i in y_index]
        y.append(values[0] if len(values) == 1 else values)
    return X, y


@click.command("evaluate")
@RUN_ID
@click.option("--dataset", "dataset_id", help="A stored dataset's id.")
@click.option(
    "--data",
    "data_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help='A CSV file (with --target) or a JSON file {"X": ..., "y": ...}.',
)
@click.option("--target", help="The y column(s) of a --data CSV file, comma-separated.")
@click.option("--checkpoint", "checkpoint_id", help="Evaluate this checkpoint's weights.")
@connection_options
@click.pass_context
def evaluate(
    ctx: click.Context,
    run_id: str,
    dataset_id: str | None,
    data_path: Path | None,
    target: str | None,
    checkpoint_id: str | None,
) -> int:
    """A run's loss and metrics on a dataset or a file, without training (a confusion
    matrix and per-class scores for classification)."""

    def command(client: Client, output: Output) -> int:
        if (dataset_id is None) == (data_path is None):
            raise UsageError("give exactly one of --dataset ID and --data FILE")
        X: Any = None
        y: Any = None
        if data_path is not None:
            if data_path.suffix.lower() == ".csv":
                if not target:
                    raise UsageError(
                        "--target names the y column(s) of a CSV file, e.g. --target y"
                    )
                X, y = read_labeled_csv(data_path, target)
            else:
                _, X, y = read_dataset_json(data_path)
        result = client.evaluate_run(
            run_id, dataset_id=dataset_id, X=X, y=y, checkpoint_id=checkpoint_id
        )
        if output.options.json:
            output.json(result.model_dump(mode="json", by_alias=True))
            return EXIT_OK
        for text in evaluation_lines(result):
            output.line(text)
        for table in confusion_tables(result):
            output.out.print(table)
        return EXIT_OK

    return run_command(ctx, command)
