"""Parse the Markdown docs into the code blocks the docs runner executes.

A fenced block tagged ``python``, ``bash``, ``sh`` or ``console`` is executed;
every other tag (``json``, ``text``, ``mermaid``, none) is shown only, except
that a block preceded by ``<!-- docs-runner: output of the block above -->`` is
what the ``python`` block before it must print. A block
preceded by ``<!-- docs-runner: skip (reason) -->`` is skipped and counted.

``console`` blocks hold commands (lines starting with ``$ ``, continued on lines
starting with ``> `` or after a trailing backslash) each followed by the output it must print; ``...`` (or
``…``) in the output matches anything, and runs of whitespace compare equal.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXECUTED = {"python", "bash", "sh", "console"}
FENCE = re.compile(r"^```([A-Za-z0-9_-]*)\s*$")
SKIP = re.compile(r"^<!-- docs-runner: skip \((?P<reason>[^)]+)\) -->$")
OUTPUT = "<!-- docs-runner: output of the block above -->"


@dataclass(frozen=True)
class Command:
    """One ``$ command`` of a console block and the output shown under it."""

    line: int
    text: str
    expected: str


@dataclass(frozen=True)
class Block:
    """One fenced code block of a Markdown file."""

    path: Path
    line: int
    lang: str
    body: str
    skip_reason: str | None = None
    is_output: bool = False
    commands: list[Command] = field(default_factory=list)

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def doc_files() -> list[Path]:
    """README.md and every Markdown file under docs/, in a stable order."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def console_commands(first_line: int, body: str) -> list[Command]:
    """Split a console block into its commands and their expected output."""
    commands: list[Command] = []
    lines = body.splitlines()
    index = 0
    while index < len(lines):
        if not lines[index].startswith("$ "):
            raise ValueError(f"line {first_line + index}: console output before any `$ ` command")
        start = index
        text = [lines[index][2:]]
        index += 1
        while index < len(lines) and (text[-1].endswith("\\") or lines[index].startswith("> ")):
            line = lines[index]
            text.append(line[2:] if line.startswith("> ") else line)
            index += 1
        output: list[str] = []
        while index < len(lines) and not lines[index].startswith("$ "):
            output.append(lines[index])
            index += 1
        commands.append(Command(first_line + start, "\n".join(text), "\n".join(output)))
    return commands


def blocks(path: Path) -> list[Block]:
    """Every fenced block of ``path`` in order, with its skip marker if any."""
    found: list[Block] = []
    lines = path.read_text().splitlines()
    index = 0
    while index < len(lines):
        match = FENCE.match(lines[index])
        if not match:
            index += 1
            continue
        start = index
        index += 1
        body: list[str] = []
        while index < len(lines) and lines[index].rstrip() != "```":
            body.append(lines[index])
            index += 1
        index += 1
        previous = next((ln for ln in reversed(lines[:start]) if ln.strip()), "")
        skip = SKIP.match(previous.strip())
        lang = match.group(1)
        text = "\n".join(body) + "\n"
        commands = console_commands(start + 2, text) if lang == "console" and not skip else []
        reason = skip.group("reason") if skip else None
        is_output = previous.strip() == OUTPUT
        found.append(Block(path, start + 1, lang, text, reason, is_output, commands))
    return found


def strip_fences(text: str) -> str:
    """The Markdown without its fenced blocks."""
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def strip_code(text: str) -> str:
    """The Markdown without fenced blocks and inline code (for the link check)."""
    return re.sub(r"`[^`\n]*`", "", strip_fences(text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`", "", heading.strip().lower())
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The anchors of every heading of a Markdown file (duplicates get -1, -2, ...)."""
    seen: dict[str, int] = {}
    result: set[str] = set()
    for line in strip_fences(path.read_text()).splitlines():
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        base = slug(match.group(1))
        count = seen.get(base, 0)
        seen[base] = count + 1
        result.add(base if count == 0 else f"{base}-{count}")
    return result


def links(path: Path) -> list[str]:
    """The targets of every inline Markdown link outside code."""
    return re.findall(r"\]\(([^)\s]+)\)", strip_code(path.read_text()))
