"""Run a Markdown file's executable blocks in one bash process and report what is stale.

Per file, the executed blocks run in order in one ``bash`` process (variables such
as ``$API`` and ``$RUN`` carry over from block to block; each ``python`` block is
its own ``python -`` process). ``curl`` fails on an HTTP error (``--fail-with-body``)
unless the command prints the status itself with ``-w``. A ``console`` command's
output, and a ``python`` block's when an output block follows it, must match what
was printed: ``...`` (or ``…``) matches anything, a line of just ``...`` any number
of lines (none too), and runs of whitespace compare equal.
"""

from __future__ import annotations

import doctest
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.support.docs_blocks import EXECUTED, ROOT, Block, Command, blocks

MARK = "@@docs-runner {}@@"
SPLIT = re.compile(r"\n@@docs-runner (\d+)@@\n")
PREAMBLE = """set -euo pipefail
exec 2>&1
curl() {
  local arg
  for arg in "$@"; do
    case "$arg" in -w|--write-out) command curl "$@"; return;; esac
  done
  command curl --fail-with-body "$@"
}
"""
CHECKER = doctest.OutputChecker()
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


@dataclass(frozen=True)
class Step:
    """One thing the script runs: a shell block, a python block or a console command."""

    kind: str
    block: Block
    expected: Command | None

    @property
    def where(self) -> str:
        line = self.expected.line if self.kind == "command" and self.expected else self.block.line
        return f"{relative(self.block.path)}:{line}"


def relative(path: Path) -> str:
    """``path`` relative to the repository (or as given, for files outside it)."""
    try:
        return path.relative_to(ROOT).as_posix()
    except ValueError:
        return str(path)


def executed(path: Path) -> list[Block]:
    """The blocks of ``path`` the runner executes (tagged, not skipped)."""
    return [b for b in blocks(path) if b.lang in EXECUTED and b.skip_reason is None]


def expected_outputs(path: Path) -> dict[int, Command]:
    """Python blocks (by line) whose printed output a following marked block shows."""
    found: dict[int, Command] = {}
    previous: Block | None = None
    for block in blocks(path):
        if block.is_output:
            if previous is None or previous.lang != "python":
                raise ValueError(f"{block.where}: an output block must follow a python block")
            found[previous.line] = Command(block.line, "python block", block.body)
        previous = block
    return found


def steps_of(path: Path) -> list[Step]:
    """Every step of a file, in order."""
    steps: list[Step] = []
    shown = expected_outputs(path)
    for block in executed(path):
        if block.lang == "console":
            steps.extend(Step("command", block, command) for command in block.commands)
        elif block.lang == "python":
            steps.append(Step("python", block, shown.get(block.line)))
        else:
            steps.append(Step("shell", block, None))
    return steps


def script(steps: list[Step]) -> str:
    """One bash script for a file's steps; a marker line precedes every step."""
    parts = [PREAMBLE]
    for index, step in enumerate(steps):
        parts.append(f"printf '\\n{MARK.format(index)}\\n'")
        if step.kind == "python":
            body = step.block.body
            parts.append(f"\"$DOCS_PYTHON\" - <<'DOCS_RUNNER_PY_EOF'\n{body}DOCS_RUNNER_PY_EOF")
        elif step.kind == "command" and step.expected is not None:
            parts.append(step.expected.text)
        else:
            parts.append(step.block.body)
    return "\n".join(parts) + "\n"


def outputs(stdout: str) -> dict[int, str]:
    """Each step's output, by step index."""
    pieces = SPLIT.split("\n" + stdout)
    return {int(pieces[i]): pieces[i + 1] for i in range(1, len(pieces) - 1, 2)}


def environment(url: str) -> dict[str, str]:
    """The blocks' environment: the server's URL, this venv's commands first, no API key."""
    env = {
        **os.environ,
        "BACKPROP_URL": url,
        "DOCS_PYTHON": sys.executable,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(ROOT),
        "COLUMNS": "100",
    }
    env.pop("BACKPROP_API_KEY", None)
    return env


def mismatch(step: Step, printed: str) -> str | None:
    """Why ``printed`` is not what the docs show for ``step`` (None when it is)."""
    if step.expected is None:
        return None
    want = step.expected.expected.replace("…", "...").strip() + "\n"
    want = want.replace("\n...\n", "...")  # a line of its own: any lines, or none
    got = printed.strip() + "\n"
    if CHECKER.check_output(want, got, FLAGS):
        return None
    return f"{step.where}: `{step.expected.text}` printed\n{got}but the docs show\n{want}"


def run_doc(path: Path, url: str, cwd: Path, timeout: float = 600.0) -> list[str]:
    """Run every executable block of ``path`` against ``url``; the problems found."""
    steps = steps_of(path)
    done = subprocess.run(
        ["bash", "-c", script(steps)],
        cwd=cwd,
        env=environment(url),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    got = outputs(done.stdout)
    if done.returncode != 0:
        last = max(got, default=0)
        return [f"{steps[last].where} exited {done.returncode}:\n{got.get(last, done.stdout)}"]
    if sorted(got) != list(range(len(steps))):
        return [f"{relative(path)}: only steps {sorted(got)} of {len(steps)} ran"]
    return [m for index, step in enumerate(steps) if (m := mismatch(step, got[index]))]
