"""``backprop sweep create|watch|list|cancel``: hyperparameter sweeps."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click
from rich.live import Live
from rich.table import Table

from backprop_client.cli_common import (
    EXIT_OK,
    EXIT_RUN_FAILED,
    Output,
    connection_options,
    run_command,
)
from backprop_client.cli_files import UsageError
from backprop_client.cli_output import number
from backprop_client.client import Client
from backprop_client.models import Sweep

SWEEP_ID = click.argument("sweep_id")
SWEEP_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")


@click.group("sweep")
def sweep() -> None:
    """Create, watch, list and cancel hyperparameter sweeps."""


def read_sweep_file(path: Path) -> dict[str, Any]:
    """The ``POST /v1/sweeps`` body in a JSON file (a usage error if unreadable)."""
    try:
        body = json.loads(path.read_text())
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise UsageError(f"{path}: not JSON ({exc})") from exc
    if not isinstance(body, dict):
        raise UsageError(f"{path}: a JSON object (the POST /v1/sweeps body) is expected")
    return body


def trials_table(sweep: Sweep) -> Table:
    """A sweep's trials: number, run, status, epoch, rung, objective, parameters."""
    best = sweep.best_trial.number if sweep.best_trial is not None else None
    title = f"{sweep.id} {sweep.status}: {len(sweep.trials)}/{sweep.max_trials} trials"
    table = Table(title=title, box=None, pad_edge=False, header_style="bold")
    for name in ("#", "RUN", "STATUS", "EPOCH", "RUNG", "OBJECTIVE", "PARAMETERS"):
        table.add_column(name, no_wrap=name != "PARAMETERS")
    for trial in sweep.trials:
        parameters = ", ".join(f"{path}={value}" for path, value in trial.parameters.items())
        marker = " *" if trial.number == best else ""
        table.add_row(
            f"{trial.number}{marker}",
            trial.run_id or "-",
            trial.status,
            str(trial.epoch),
            "-" if trial.rung is None else str(trial.rung),
            number(trial.objective),
            parameters,
        )
    return table


def _ended(output: Output, sweep: Sweep) -> int:
    if output.options.json:
        output.json(sweep.model_dump(mode="json"))
    else:
        output.out.print(trials_table(sweep))
        if sweep.best_trial is not None:
            best = sweep.best_trial
            output.line(f"best: trial {best.number} ({best.run_id}) {number(best.objective)}")
        if sweep.error:
            output.note(f"error: {sweep.error}")
    return EXIT_OK if sweep.status == "succeeded" else EXIT_RUN_FAILED


@sweep.command("create")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--watch", is_flag=True, help="Then follow it until it ends.")
@click.option("--poll", type=click.FloatRange(min=0.05), default=1.0, show_default=True)
@connection_options
@click.pass_context
def sweep_create(ctx: click.Context, file: Path, watch: bool, poll: float) -> int:
    """Start the sweep in FILE (a JSON POST /v1/sweeps body); print its id."""

    def command(client: Client, output: Output) -> int:
        body = {"dataset_id": None, "parameters": {}, **read_sweep_file(file)}
        created = client.create_sweep(**body)  # a missing field: the server's 422 names it
        if watch:
            output.note(f"sweep {created.id} created")
            return _watch(client, output, created.id, poll)
        if output.options.json:
            output.json(created.model_dump(mode="json"))
        else:
            output.line(created.id)
        return EXIT_OK

    return run_command(ctx, command)


def _watch(client: Client, output: Output, sweep_id: str, poll: float) -> int:
    current = client.get_sweep(sweep_id)
    if output.err.is_terminal and not output.options.json:
        with Live(trials_table(current), console=output.err, transient=True) as live:
            while not current.terminal:
                time.sleep(poll)
                current = client.get_sweep(sweep_id)
                live.update(trials_table(current))
        return _ended(output, current)
    seen = ""
    while True:
        done = sum(1 for trial in current.trials if trial.status not in ("queued", "running"))
        line = f"sweep {sweep_id}: {current.status}, {done}/{len(current.trials)} trials done"
        if line != seen:
            output.note(line)
            seen = line
        if current.terminal:
            return _ended(output, current)
        time.sleep(poll)
        current = client.get_sweep(sweep_id)


@sweep.command("watch")
@SWEEP_ID
@click.option("--poll", type=click.FloatRange(min=0.05), default=1.0, show_default=True)
@connection_options
@click.pass_context
def sweep_watch(ctx: click.Context, sweep_id: str, poll: float) -> int:
    """Follow a sweep's trials until it ends (exit 1 unless it succeeded)."""
    return run_command(ctx, lambda client, output: _watch(client, output, sweep_id, poll))


@sweep.command("list")
@click.option("--status", type=click.Choice(SWEEP_STATUSES), help="Only sweeps with this status.")
@click.option("--tag", "tags", multiple=True, metavar="TAG", help="Only with this tag (all).")
@click.option("--limit", type=click.IntRange(1, 100), default=20, show_default=True)
@connection_options
@click.pass_context
def sweep_list(ctx: click.Context, status: str | None, tags: tuple[str, ...], limit: int) -> int:
    """The newest sweeps (a JSON list with --json)."""

    def command(client: Client, output: Output) -> int:
        page = client.sweeps_page(limit=limit, status=status, tags=tags or None)
        if output.options.json:
            output.json([item.model_dump(mode="json") for item in page.data])
            return EXIT_OK
        table = Table(box=None, pad_edge=False, header_style="bold")
        for name in ("ID", "NAME", "STATUS", "METHOD", "TRIALS", "BEST"):
            table.add_column(name, no_wrap=True)
        for item in page.data:
            best = item.best_trial.objective if item.best_trial is not None else None
            table.add_row(
                item.id,
                item.name or "-",
                item.status,
                item.method,
                f"{len(item.trials)}/{item.max_trials}",
                number(best),
            )
        output.out.print(table)
        return EXIT_OK

    return run_command(ctx, command)


@sweep.command("cancel")
@SWEEP_ID
@connection_options
@click.pass_context
def sweep_cancel(ctx: click.Context, sweep_id: str) -> int:
    """Cancel a sweep and its unfinished trials."""

    def command(client: Client, output: Output) -> int:
        cancelled = client.cancel_sweep(sweep_id)
        if output.options.json:
            output.json(cancelled.model_dump(mode="json"))
        else:
            output.line(f"{cancelled.id} {cancelled.status}")
        return EXIT_OK

    return run_command(ctx, command)
