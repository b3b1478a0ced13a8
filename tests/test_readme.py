"""The README's Python examples run as written."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import pytest

from tests.support.server import running_server

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_the_readme_has_python_examples() -> None:
    assert python_blocks(), "README.md lost its Python examples"


def needs_server(block: str) -> bool:
    """Client examples talk to a server at ``BACKPROP_URL``."""
    return "backprop_client" in block or "app.client" in block


@pytest.mark.parametrize(
    "index",
    [
        pytest.param(i, marks=[pytest.mark.integration] if needs_server(block) else [])
        for i, block in enumerate(python_blocks())
    ],
)
def test_readme_python_example_runs(
    index: int,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    block = python_blocks()[index]
    with contextlib.ExitStack() as stack:
        if needs_server(block):
            server = stack.enter_context(running_server(tmp_path))
            monkeypatch.setenv("BACKPROP_URL", server.url)
        exec(compile(block, f"README.md[python {index}]", "exec"), {})
    printed = capsys.readouterr().out
    assert "completed" in printed
