"""What the ``backprop`` command shows: a rich progress bar, tables, run summaries.

Results go to stdout; progress and messages go to stderr, so ``--json`` output and
``--detach``'s run id can be piped.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from backprop_client.events import RunEvent
from backprop_client.models import Run

WIDE = 200
"""Columns of a console that is not a terminal (tables are not squeezed into 80)."""


def stdout_console() -> Console:
    """The console for results (no markup or highlighting of the data)."""
    console = Console(highlight=False, soft_wrap=True)
    if not console.is_terminal:
        console = Console(highlight=False, soft_wrap=True, width=WIDE)
    return console


def stderr_console() -> Console:
    """The console for progress and messages."""
    return Console(stderr=True, highlight=False, soft_wrap=True)


def print_json(console: Console, value: Any) -> None:
    """``value`` as indented JSON on its own lines (no markup, no wrapping)."""
    console.print(json.dumps(value, indent=2), markup=False, highlight=False, soft_wrap=True)


def number(value: float | None) -> str:
    """``0.234567`` as ``0.234567``; None as ``-``; non-finite as ``nan``."""
    if value is None:
        return "-"
    return f"{value:.6g}" if math.isfinite(value) else "nan"


@dataclass
class Snapshot:
    """What the progress display knows of a run: from a :class:`Run` or its events."""

    epoch: int
    epochs: int
    status: str
    loss: float | None = None
    val_loss: float | None = None
    metrics: dict[str, float | None] = field(default_factory=dict)

    @classmethod
    def of(cls, run: Run) -> Snapshot:
        """The run's state."""
        return cls(run.epoch, run.epochs, run.status, run.loss, run.val_loss, dict(run.metrics))

    def apply(self, event: RunEvent) -> None:
        """Take in one event of the run's stream."""
        self.status = event.status or self.status
        if event.event in ("status", "end", "progress") and event.epoch is not None:
            self.epoch = event.epoch
        if event.event != "progress":
            return
        self.loss = event.loss
        val_loss = event.data.get("val_loss")
        self.val_loss = float(val_loss) if isinstance(val_loss, int | float) else None
        metrics = event.data.get("metrics")
        if isinstance(metrics, dict):
            self.metrics = {str(k): v for k, v in metrics.items() if v is None or _real(v)}

    def describe(self) -> str:
        """``loss 0.2345  val_loss 0.25  accuracy 0.75``."""
        parts = [f"loss {number(self.loss)}"]
        if self.val_loss is not None:
            parts.append(f"val_loss {number(self.val_loss)}")
        parts += [f"{name} {number(value)}" for name, value in sorted(self.metrics.items())]
        return "  ".join(parts)


def _real(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class RunProgress:
    """A run's progress on a console.

    On a terminal: rich's progress bar (epochs done of the total, the loss and
    metrics, the elapsed time), redrawn in place. Elsewhere (a pipe, a log file,
    CI): a line ``epoch 120/2000  loss 0.2345  running`` when the status changes
    and at most every ``interval`` seconds, so logs stay short.
    """

    def __init__(self, console: Console, run_id: str, *, interval: float = 2.0) -> None:
        self.console = console
        self.run_id = run_id
        self.interval = interval
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._last_status: str | None = None
        self._last_line = 0.0
        self._last_text: str | None = None

    def _start(self, snapshot: Snapshot) -> tuple[Progress, TaskID]:
        progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(),
            console=self.console,
            refresh_per_second=8,
        )
        task = progress.add_task(
            self.run_id, total=max(1, snapshot.epochs), stats=snapshot.describe()
        )
        progress.start()
        return progress, task

    def update(self, snapshot: Snapshot) -> None:
        """Show the run's state."""
        if self.console.is_terminal:
            if self._progress is None or self._task is None:
                self._progress, self._task = self._start(snapshot)
            self._progress.update(
                self._task,
                completed=snapshot.epoch,
                stats=f"{snapshot.describe()}  {snapshot.status}",
            )
            return
        now = time.monotonic()
        if snapshot.status != self._last_status or now - self._last_line >= self.interval:
            self._print_line(snapshot)
            self._last_line = now

    @staticmethod
    def _text(snapshot: Snapshot) -> str:
        return f"epoch {snapshot.epoch}/{snapshot.epochs}  {snapshot.describe()}  {snapshot.status}"

    def _print_line(self, snapshot: Snapshot) -> None:
        text = self._text(snapshot)
        self.console.print(text, markup=False)
        self._last_status = snapshot.status
        self._last_text = text

    def close(self, last: Snapshot | None = None) -> None:
        """Finish the display; the last state is shown once more if it was not."""
        if self._progress is not None:
            if last is not None and self._task is not None:
                self._progress.update(self._task, completed=last.epoch, refresh=True)
            self._progress.stop()
            self._progress = None
        elif last is not None and self._text(last) != self._last_text:
            # The run's final state, unless that very line was the last one shown (a
            # stream's last events can carry the final status before the final epoch).
            self._print_line(last)


def _duration(run: Run) -> str:
    if run.started_at is None or run.finished_at is None:
        return ""
    return f" in {(run.finished_at - run.started_at).total_seconds():.1f} s"


def summary(run: Run) -> list[str]:
    """The final report of a run: its outcome, the final loss and metrics, the error."""
    reason = f" ({run.stop_reason})" if run.stop_reason else ""
    lines = [
        f"run {run.id} {run.status}{reason} after {run.epoch}/{run.epochs} epochs{_duration(run)}"
    ]
    final = [f"loss {number(run.loss)}"]
    if run.val_loss is not None:
        final.append(f"val_loss {number(run.val_loss)}")
    final += [f"{name} {number(value)}" for name, value in sorted(run.metrics.items())]
    lines.append("final " + ", ".join(final))
    if run.error is not None:
        lines.append(f"error {run.error.code}: {run.error.message}")
    return lines


def runs_table(runs: list[Run]) -> Table:
    """Runs as a table: id, name, status, epochs, loss, accuracy (when recorded),
    created, tags."""
    table = Table(box=None, pad_edge=False, header_style="bold")
    for name in ("ID", "NAME", "STATUS", "EPOCH", "LOSS", "ACCURACY", "CREATED", "TAGS"):
        table.add_column(name, no_wrap=True)
    for run in runs:
        created = run.created_at.astimezone().strftime("%Y-%m-%d %H:%M:%S")
        table.add_row(
            run.id,
            run.name or "-",
            run.status,
            f"{run.epoch}/{run.epochs}",
            number(run.loss),
            number(run.metrics.get("accuracy")),
            created,
            ",".join(run.tags) or "-",
        )
    return table
