"""Following a run: its event stream (httpx-sse) drawn by rich, polling as the fallback."""

from __future__ import annotations

import logging

from backprop_client.cli_common import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PAUSED,
    EXIT_RUN_FAILED,
    Output,
)
from backprop_client.cli_output import RunProgress, Snapshot, summary
from backprop_client.client import Client
from backprop_client.errors import BackpropConnectionError, RetryLater

logger = logging.getLogger(__name__)


def _stream(client: Client, run_id: str, snapshot: Snapshot, progress: RunProgress) -> None:
    """Show the run's events until it ends or pauses (returns early if the stream cannot
    be had: the caller polls instead)."""
    try:
        for event in client.events(run_id, after=snapshot.epoch):
            snapshot.apply(event)
            progress.update(snapshot)
            if snapshot.status == "paused":
                return
    except (BackpropConnectionError, RetryLater) as exc:
        logger.info("run %s: no event stream (%s); polling", run_id, exc)


def follow(client: Client, output: Output, run_id: str, *, poll: float, every: float) -> int:
    """Show a run's progress (its event stream) until it ends; print the summary; exit 0
    only on success. A paused run ends the watch too, with :data:`EXIT_PAUSED`."""
    progress = RunProgress(output.err, run_id, interval=every)
    run = client.get_run(run_id)
    snapshot = Snapshot.of(run)
    progress.update(snapshot)
    try:
        if not (run.terminal or run.paused):
            _stream(client, run_id, snapshot, progress)
            run = client.wait(
                run_id, poll=poll, on_progress=lambda r: progress.update(Snapshot.of(r))
            )
    except KeyboardInterrupt:
        progress.close()
        output.note(
            f"interrupted; run {run_id} keeps training on the server "
            f"(`backprop runs watch {run_id}` to follow it, `backprop runs cancel {run_id}` "
            "to stop it)"
        )
        return EXIT_INTERRUPTED
    progress.close(Snapshot.of(run))
    if output.options.json:
        output.json(run.model_dump(mode="json"))
    if run.paused:
        output.note(
            f"run {run_id} is paused at epoch {run.epoch}/{run.epochs}; "
            f"`backprop runs resume {run_id}` continues it exactly where it stopped"
        )
        return EXIT_PAUSED
    if not output.options.json:
        for line in summary(run):
            output.line(line)
    return EXIT_OK if run.status == "succeeded" else EXIT_RUN_FAILED
