"""The docs run as written: every shell, console and Python block of README.md and
docs/*.md is executed against a real ``backprop serve``, and every link resolves.

How blocks run is :mod:`tests.support.docs_runner`'s docstring. Blocks that
cannot run here carry a visible ``<!-- docs-runner: skip (reason) -->`` marker, and
``SKIPPED`` below lists how many each file has, so the list cannot grow silently.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args

import pytest

from app.api.schemas import RunStatus
from app.config import Settings
from app.main import create_app
from tests.support.docs_blocks import ROOT, anchors, blocks, doc_files, links
from tests.support.docs_runner import executed, relative, run_doc
from tests.support.server import ServerProcess, running_server

# Blocks that cannot run in a test, per file; each one carries its reason in the file.
SKIPPED = {
    "README.md": 2,
    "docs/operations.md": 3,
    "docs/performance.md": 1,
}
RUNNABLE = [relative(p) for p in doc_files() if executed(p)]


@pytest.fixture(scope="module")
def docs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(tmp_path_factory.mktemp("docs-server")) as server:
        yield server


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("name", RUNNABLE)
def test_doc_blocks_run_against_a_real_server(
    name: str, docs_server: ServerProcess, tmp_path: Path
) -> None:
    problems = run_doc(ROOT / name, docs_server.url, tmp_path)
    assert not problems, "\n".join(problems)


def write_doc(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "doc.md"
    path.write_text(text)
    return path


def test_the_runner_reports_stale_console_output(tmp_path: Path) -> None:
    fence = "`" * 3
    good = write_doc(tmp_path, f"{fence}console\n$ echo hello   world\nhello ...\n{fence}\n")
    assert run_doc(good, "http://127.0.0.1:9", tmp_path) == []
    lines = f"{fence}console\n$ printf 'a\\n%s' {{}}\na\n...\nz\n{fence}\n"
    for printed in ("z", "b\\nz", "b\\nc\\nz"):
        assert (
            run_doc(write_doc(tmp_path, lines.format(printed)), "http://127.0.0.1:9", tmp_path)
            == []
        )
    (problem,) = run_doc(write_doc(tmp_path, lines.format("b")), "http://127.0.0.1:9", tmp_path)
    assert "printed\na\nb" in problem
    stale = write_doc(tmp_path, f"{fence}console\n$ echo hello\ngoodbye\n{fence}\n")
    (problem,) = run_doc(stale, "http://127.0.0.1:9", tmp_path)
    assert "doc.md:2" in problem and "goodbye" in problem


def test_the_runner_reports_a_failing_block_and_stops(tmp_path: Path) -> None:
    fence = "`" * 3
    doc = write_doc(
        tmp_path,
        f"{fence}bash\necho one\n{fence}\n\n{fence}sh\nfalse\n{fence}\n\n"
        f"{fence}bash\ntouch never\n{fence}\n",
    )
    (problem,) = run_doc(doc, "http://127.0.0.1:9", tmp_path)
    assert problem.startswith(f"{doc}:5 exited 1")
    assert not (tmp_path / "never").exists()


def test_the_runner_checks_what_a_python_block_prints(tmp_path: Path) -> None:
    fence = "`" * 3
    marker = "<!-- docs-runner: output of the block above -->"
    text = f"{fence}python\nprint(6 * 7)\n{fence}\n\n{marker}\n{fence}text\n{{}}\n{fence}\n"
    assert run_doc(write_doc(tmp_path, text.format(42)), "http://127.0.0.1:9", tmp_path) == []
    (problem,) = run_doc(write_doc(tmp_path, text.format(41)), "http://127.0.0.1:9", tmp_path)
    assert "printed\n42" in problem


def test_the_runner_shares_variables_between_blocks_in_order(tmp_path: Path) -> None:
    fence = "`" * 3
    doc = write_doc(
        tmp_path, f"{fence}bash\nX=41\n{fence}\n{fence}console\n$ echo $((X + 1))\n42\n{fence}\n"
    )
    assert run_doc(doc, "http://127.0.0.1:9", tmp_path) == []


@pytest.mark.integration
def test_the_runner_fails_a_curl_that_gets_an_http_error(
    docs_server: ServerProcess, tmp_path: Path
) -> None:
    fence = "`" * 3
    failing = write_doc(tmp_path, f"{fence}bash\ncurl -s $BACKPROP_URL/v1/runs/run_nope\n{fence}\n")
    (problem,) = run_doc(failing, docs_server.url, tmp_path)
    assert "exited 22" in problem and "not found" in problem
    shown = write_doc(
        tmp_path,
        f"{fence}console\n$ curl -s -w ' %{{http_code}}' $BACKPROP_URL/v1/runs/run_nope\n"
        f'{{"detail":"run \'run_nope\' not found"}} 404\n{fence}\n',
    )
    assert run_doc(shown, docs_server.url, tmp_path) == []


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
    table = set(re.findall(r"^\| (GET|POST|PUT|PATCH|DELETE) \| `([^`]+)` \|", text, flags=re.M))
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


def test_the_status_table_names_every_status() -> None:
    text = (ROOT / "docs" / "api.md").read_text()
    table = set(re.findall(r"^\| `([a-z]+)` \| (?:yes|no) \|", text, flags=re.M))
    assert table == set(get_args(RunStatus))


def tutorial_rows(path: Path) -> list[str]:
    text = path.read_text()
    start = text.index("| tutorial code | API settings |")
    rows = re.findall(r"^\|.*\|$", text[start:].split("\n\n")[0], flags=re.M)
    return rows[2:]


def test_the_readme_and_engine_md_map_the_tutorials_alike() -> None:
    readme = tutorial_rows(ROOT / "README.md")
    assert len(readme) >= 10
    assert set(tutorial_rows(ROOT / "docs" / "engine.md")) <= set(readme)


def test_the_readme_stays_a_readme() -> None:
    assert len((ROOT / "README.md").read_text().splitlines()) <= 300
