"""``backprop runs ...`` and ``backprop predict``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from backprop_client.cli_common import (
    EXIT_OK,
    Output,
    connection_options,
    progress_options,
    run_command,
)
from backprop_client.cli_experiments import runs_compare, runs_delete, runs_tag
from backprop_client.cli_files import predictions_csv, read_rows
from backprop_client.cli_follow import follow
from backprop_client.cli_output import runs_table
from backprop_client.client import Client
from backprop_client.models import RUN_STATUSES, Run

RUN_ID = click.argument("run_id")


@click.group("runs")
def runs() -> None:
    """List, watch, cancel, pause, resume, tag, compare and delete runs; export weights."""


@runs.command("list")
@click.option("--status", type=click.Choice(RUN_STATUSES), help="Only runs with this status.")
@click.option("--network", help="Only runs of this network id.")
@click.option("--dataset", help="Only runs on this dataset id.")
@click.option(
    "--tag", "tags", multiple=True, metavar="TAG", help="Only runs with this tag (repeatable: all)."
)
@click.option("--name-prefix", help="Only runs whose name starts so.")
@click.option(
    "--sort",
    help="created_at, loss, val_loss, best_loss, best_epoch, epoch, name or metric:NAME; "
    "a leading - for descending [default: -created_at].",
)
@click.option(
    "--limit", type=click.IntRange(1, 100), default=20, show_default=True, help="How many."
)
@connection_options
@click.pass_context
def runs_list(
    ctx: click.Context,
    status: str | None,
    network: str | None,
    dataset: str | None,
    tags: tuple[str, ...],
    name_prefix: str | None,
    sort: str | None,
    limit: int,
) -> int:
    """The newest runs (or in --sort order), as a table (a JSON list with --json)."""

    def command(client: Client, output: Output) -> int:
        page = client.runs_page(
            limit=limit,
            status=status,
            network_id=network,
            dataset_id=dataset,
            tags=tags or None,
            name_prefix=name_prefix,
            sort=sort,
        )
        if output.options.json:
            output.json([run.model_dump(mode="json") for run in page.data])
            return EXIT_OK
        output.out.print(runs_table(page.data))
        if page.has_more:
            output.note(f"... more: --limit {min(100, limit * 2)}")
        return EXIT_OK

    return run_command(ctx, command)


@runs.command("watch")
@RUN_ID
@progress_options
@connection_options
@click.pass_context
def runs_watch(ctx: click.Context, run_id: str, poll: float, progress_every: float) -> int:
    """Follow a run until it ends (exit 1 if it failed or was cancelled, 4 if it paused)."""
    return run_command(
        ctx, lambda client, output: follow(client, output, run_id, poll=poll, every=progress_every)
    )


def _show_run(output: Output, run: Run, note: str = "") -> int:
    if output.options.json:
        output.json(run.model_dump(mode="json"))
    else:
        output.line(f"run {run.id} {run.status}{note}")
    return EXIT_OK


@runs.command("cancel")
@RUN_ID
@connection_options
@click.pass_context
def runs_cancel(ctx: click.Context, run_id: str) -> int:
    """Cancel a run (idempotent)."""

    def command(client: Client, output: Output) -> int:
        run = client.cancel(run_id)
        return _show_run(output, run, " (cancel requested)" if run.cancel_requested else "")

    return run_command(ctx, command)


@runs.command("pause")
@RUN_ID
@connection_options
@click.pass_context
def runs_pause(ctx: click.Context, run_id: str) -> int:
    """Pause a run at its next epoch boundary (idempotent)."""

    def command(client: Client, output: Output) -> int:
        run = client.pause(run_id)
        return _show_run(output, run, " (pause requested)" if run.pause_requested else "")

    return run_command(ctx, command)


@runs.command("resume")
@RUN_ID
@connection_options
@click.pass_context
def runs_resume(ctx: click.Context, run_id: str) -> int:
    """Resume a paused run exactly where it stopped (idempotent)."""
    return run_command(ctx, lambda client, output: _show_run(output, client.resume(run_id)))


@runs.command("weights")
@RUN_ID
@click.option(
    "--format",
    "file_format",
    type=click.Choice(("json", "npz", "onnx")),
    default="json",
    show_default=True,
)
@click.option(
    "--output",
    "output_path",
    type=click.Path(path_type=Path),
    help="File to write (npz/onnx default: RUN_ID.npz / RUN_ID.onnx; json: stdout).",
)
@connection_options
@click.pass_context
def runs_weights(
    ctx: click.Context, run_id: str, file_format: str, output_path: Path | None
) -> int:
    """Export a run's weights: JSON, or the server's npz / ONNX export file."""

    def command(client: Client, output: Output) -> int:
        weights = client.run_weights(run_id)
        if file_format == "json":
            document = weights.model_dump(mode="json")
            if output_path is None:
                output.json(document)
                return EXIT_OK
            output_path.write_text(json.dumps(document) + "\n")
            path = output_path
        else:
            path = output_path or Path(f"{run_id}.{file_format}")
            path.write_bytes(client.export(run_id, file_format))
        output.note(f"wrote {path} (epoch {weights.epoch}, {len(weights.layers)} layers)")
        if output.options.json:
            output.json({"path": str(path), "format": file_format, "epoch": weights.epoch})
        return EXIT_OK

    return run_command(ctx, command)


# --------------------------------------------------------------------------- predict


@click.command("predict")
@RUN_ID
@click.option(
    "--input",
    "input_path",
    type=click.Path(path_type=Path),
    required=True,
    help='CSV rows of inputs (a header row is skipped) or JSON {"X": [[...]]}.',
)
@click.option(
    "--output",
    "output_path",
    type=click.Path(path_type=Path),
    help="File to write (default: stdout).",
)
@click.option(
    "--format",
    "file_format",
    type=click.Choice(("json", "csv")),
    help="Default: csv for an --output *.csv, else json (always json with --json).",
)
@connection_options
@click.pass_context
def predict(
    ctx: click.Context,
    run_id: str,
    input_path: Path,
    output_path: Path | None,
    file_format: str | None,
) -> int:
    """Run inputs through a run's network."""

    def command(client: Client, output: Output) -> int:
        prediction = client.predict(run_id, read_rows(input_path))
        chosen = file_format or (
            "csv" if output_path is not None and output_path.suffix.lower() == ".csv" else "json"
        )
        if output.options.json or chosen == "json":
            text = json.dumps(prediction.model_dump(mode="json")) + "\n"
        else:
            text = predictions_csv(prediction.predictions)
        if output_path is None:
            sys.stdout.write(text)
            sys.stdout.flush()
        else:
            output_path.write_text(text)
            rows = len(prediction.predictions)
            output.note(f"wrote {output_path} ({rows} rows, epoch {prediction.epoch})")
        return EXIT_OK

    return run_command(ctx, command)


runs.add_command(runs_tag)
runs.add_command(runs_delete)
runs.add_command(runs_compare)
