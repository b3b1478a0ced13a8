"""clients/python/README.md: its Python examples run as written against a real server."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.server import running_server

pytestmark = pytest.mark.integration

README = Path(__file__).resolve().parents[2] / "clients" / "python" / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_the_client_readme_has_python_examples() -> None:
    assert python_blocks(), "clients/python/README.md lost its Python examples"


@pytest.mark.parametrize("index", range(len(python_blocks())))
def test_client_readme_python_example_runs(
    index: int,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    with running_server(tmp_path) as server:
        monkeypatch.setenv("BACKPROP_URL", server.url)
        exec(compile(python_blocks()[index], f"clients/python/README.md[{index}]", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert printed and printed[-1].startswith("succeeded"), printed
