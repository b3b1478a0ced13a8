"""The docs run as written: every shell, console and Python block of README.md and
docs/*.md is executed against a real ``backprop serve``, and every link resolves.

Per file, the executed blocks run in order in one ``bash`` process (variables such
as ``$API`` and ``$RUN`` carry over from block to block; each ``python`` block is
its own ``python -`` process). ``curl`` fails on an HTTP error (``--fail-with-body``)
unless the command prints the status itself with ``-w``. A ``console`` block's
output must match what the command printed (``...`` matches anything). Blocks that
cannot run here carry a visible ``<!-- docs-runner: skip (reason) -->`` marker, and
``SKIPPED`` below lists how many each file has, so the list cannot grow silently.
"""

from __future__ import annotations

import doctest
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.config import Settings
from app.main import create_app
from tests.support.docs_blocks import (
    EXECUTED,
    ROOT,
    Block,
    Command,
    anchors,
    blocks,
    doc_files,
    links,
)
from tests.support.server import ServerProcess, running_server

# Blocks that cannot run in a test, per file; each one carries its reason in the file.
SKIPPED = {
    "README.md": 2,
    "docs/operations.md": 3,
    "docs/performance.md": 1,
}

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


def relative(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def executed(path: Path) -> list[Block]:
    return [b for b in blocks(path) if b.lang in EXECUTED and b.skip_reason is None]


def expected_outputs(path: Path) -> dict[int, Command]:
    """Python blocks (by line) whose printed output a following marked block shows."""
    found: dict[int, Command] = {}
    previous: Block | None = None
    for block in blocks(path):
        if block.is_output:
            assert previous is not None and previous.lang == "python", (
                f"{block.where}: an output block must follow a python block"
            )
            found[previous.line] = Command(block.line, "python block", block.body)
        previous = block
    return found


def script(steps: list[tuple[str, Block, Any]]) -> str:
    """One bash script for a file's blocks; a marker line precedes every step."""
    parts = [PREAMBLE]
    for index, (kind, block, item) in enumerate(steps):
        parts.append(f"printf '\\n{MARK.format(index)}\\n'")
        if kind == "python":
            parts.append(
                f"\"$DOCS_PYTHON\" - <<'DOCS_RUNNER_PY_EOF'\n{block.body}DOCS_RUNNER_PY_EOF"
            )
        elif kind == "command":
            parts.append(item.text)
        else:
            parts.append(block.body)
    return "\n".join(parts) + "\n"


def file_steps(path: Path) -> list[tuple[str, Block, Any]]:
    steps: list[tuple[str, Block, Any]] = []
    shown = expected_outputs(path)
    for block in executed(path):
        if block.lang == "console":
            steps.extend(("command", block, command) for command in block.commands)
        elif block.lang == "python":
            steps.append(("python", block, shown.get(block.line)))
        else:
            steps.append(("shell", block, None))
    return steps


def outputs(stdout: str) -> dict[int, str]:
    """Each step's output, by step index."""
    pieces = SPLIT.split("\n" + stdout)
    return {int(pieces[i]): pieces[i + 1] for i in range(1, len(pieces) - 1, 2)}


def step_where(step: tuple[str, Block, Any]) -> str:
    kind, block, item = step
    return f"{relative(block.path)}:{item.line if kind == 'command' else block.line}"


@pytest.fixture(scope="module")
def docs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(tmp_path_factory.mktemp("docs-server")) as server:
        yield server


RUNNABLE = [relative(p) for p in doc_files() if executed(p)]


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("name", RUNNABLE)
def test_doc_blocks_run_against_a_real_server(
    name: str, docs_server: ServerProcess, tmp_path: Path
) -> None:
    steps = file_steps(ROOT / name)
    env = {
        **os.environ,
        "BACKPROP_URL": docs_server.url,
        "DOCS_PYTHON": sys.executable,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(ROOT),
        "COLUMNS": "100",
    }
    env.pop("BACKPROP_API_KEY", None)
    done = subprocess.run(
        ["bash", "-c", script(steps)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    got = outputs(done.stdout)
    if done.returncode != 0:
        last = max(got, default=0)
        pytest.fail(
            f"{step_where(steps[last])} exited {done.returncode}:\n{got.get(last, done.stdout)}"
        )
    assert sorted(got) == list(range(len(steps))), "some blocks did not run"
    stale: list[str] = []
    for index, (_kind, _block, item) in enumerate(steps):
        if item is None:
            continue
        want = item.expected.replace("…", "...").strip() + "\n"
        printed = got[index].strip() + "\n"
        if not CHECKER.check_output(want, printed, FLAGS):
            stale.append(
                f"{step_where(steps[index])}: `{item.text}` printed\n{printed}"
                f"but the docs show\n{want}"
            )
    assert not stale, "\n".join(stale)


def test_the_docs_have_executable_blocks() -> None:
    assert "README.md" in RUNNABLE
    for name in ("api.md", "engine.md", "operations.md"):
        assert f"docs/{name}" in RUNNABLE


def test_skipped_blocks_are_the_known_ones() -> None:
    skipped: dict[str, int] = {}
    for path in doc_files():
        count = sum(1 for b in blocks(path) if b.skip_reason is not None)
        if count:
            skipped[relative(path)] = count
    assert skipped == SKIPPED


def test_every_code_block_is_tagged() -> None:
    """An untagged fence would silently escape the runner."""
    untagged = [b.where for p in doc_files() for b in blocks(p) if not b.lang]
    assert untagged == []


def test_every_relative_link_and_anchor_resolves() -> None:
    broken: list[str] = []
    for path in doc_files():
        for target in links(path):
            if re.match(r"^[a-z]+:", target):
                continue
            file_part, _, anchor = target.partition("#")
            dest = (path.parent / file_part).resolve() if file_part else path
            if not dest.exists() or ROOT not in (dest, *dest.parents):
                broken.append(f"{relative(path)}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                broken.append(f"{relative(path)}: {target} (no such heading)")
    assert broken == []


def tracked_files() -> list[Path]:
    names = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    return [ROOT / n.decode() for n in names if n and (ROOT / n.decode()).is_file()]


def test_nothing_refers_to_files_outside_the_repository() -> None:
    outside = [".." + "/shared", "shared" + "/DESIGN", "shared" + "/STYLE", "/work" + "/"]
    hits = [
        f"{relative(path)}: {needle}"
        for path in tracked_files()
        for needle in outside
        if needle.encode() in path.read_bytes()
    ]
    assert hits == []


def settings_rows() -> dict[str, str]:
    """The configuration table of docs/operations.md: variable -> default cell."""
    text = (ROOT / "docs" / "operations.md").read_text()
    rows = re.findall(r"^\| `(BACKPROP_[A-Z_]+)` \| ([^|]+) \|", text, flags=re.M)
    return {name: default.strip() for name, default in rows}


def documented_default(name: str, field: Any) -> str:
    if field.default_factory is not None:
        return "CPU count"
    if field.default is None:
        return "unset"
    value = field.default
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"`{value}`"


def test_the_settings_table_is_settings() -> None:
    rows = settings_rows()
    expected = {
        f"BACKPROP_{name.upper()}": documented_default(name, field)
        for name, field in Settings.model_fields.items()
    }
    assert sorted(rows) == sorted(expected), "docs/operations.md and app/config.py differ"
    for name, default in expected.items():
        assert rows[name].split(" (")[0] == default, f"{name}: the docs say {rows[name]}"


def test_the_api_doc_names_every_route() -> None:
    schema = create_app(Settings()).openapi()
    text = (ROOT / "docs" / "api.md").read_text()
    table = set(re.findall(r"^\| (GET|POST|DELETE) \| `([^`]+)` \|", text, flags=re.M))
    routes = {
        (method.upper(), path)
        for path, operations in schema["paths"].items()
        for method in operations
    }
    assert table == routes


def test_architecture_describes_the_app_tree() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text()
    tree = re.search(r"<!-- app-tree -->\n```text\n(.*?)```", text, flags=re.S)
    assert tree, "docs/architecture.md lost its app/ tree"
    listed = set(re.findall(r"([A-Za-z_]+(?:\.py|/))", tree.group(1)))
    app = ROOT / "app"
    actual = {p.name + "/" if p.is_dir() else p.name for p in app.iterdir()}
    actual = {n for n in actual if n not in {"__init__.py", "__pycache__/"}}
    for sub in (p for p in app.iterdir() if p.is_dir() and p.name != "__pycache__"):
        actual |= {f.name for f in sub.glob("*.py") if f.name != "__init__.py"}
    missing = sorted(actual - listed)
    assert missing == [], f"app/ entries not in docs/architecture.md: {missing}"


def names_something(name: str) -> bool:
    """``app/jobs/lease.py``, ``app/static/``, or a module's attribute ``app/jobs/x.fn``."""
    if (ROOT / name.rstrip("/")).exists():
        return True
    module, _, _attribute = name.rpartition(".")
    return bool(module) and (ROOT / f"{module}.py").exists()


def test_repository_paths_named_in_the_docs_exist() -> None:
    pattern = r"`((?:app|engine|tests|benchmarks|alembic)/[\w/.*-]+)`"
    stale = [
        f"{relative(path)}: {name}"
        for path in doc_files()
        for name in sorted(set(re.findall(pattern, path.read_text())))
        if "*" not in name and not names_something(name)
    ]
    assert stale == []
