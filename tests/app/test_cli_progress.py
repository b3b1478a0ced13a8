"""The CLI's progress lines off a terminal (a pipe, a CI log)."""

from __future__ import annotations

import io

from backprop_client.cli_output import RunProgress, Snapshot
from rich.console import Console


def _progress() -> tuple[RunProgress, io.StringIO]:
    out = io.StringIO()
    return RunProgress(Console(file=out, force_terminal=False), "run_x", interval=60), out


def test_the_last_line_is_the_final_state_even_when_the_stream_ended_on_an_earlier_epoch() -> None:
    progress, out = _progress()
    progress.update(Snapshot(0, 5000, "running"))
    # A stream's sampled events can bring the final status with an earlier epoch.
    progress.update(Snapshot(3001, 5000, "succeeded", loss=0.000459))
    progress.close(Snapshot(5000, 5000, "succeeded", loss=0.000256))
    lines = out.getvalue().splitlines()
    assert lines[-1].startswith("epoch 5000/5000  loss 0.000256") and "succeeded" in lines[-1]
    assert len(lines) == 3


def test_the_final_state_is_not_printed_twice() -> None:
    progress, out = _progress()
    final = Snapshot(5000, 5000, "succeeded", loss=0.000256)
    progress.update(Snapshot(0, 5000, "running"))
    progress.update(final)
    progress.close(final)
    assert out.getvalue().count("epoch 5000/5000") == 1
