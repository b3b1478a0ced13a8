"""Logging for operators: one line per event, as JSON (``BACKPROP_LOG_FORMAT=json``) or text.

Every process (``backprop serve``, its local workers, ``backprop worker`` and its
Celery pool processes) calls :func:`configure_logging` once. Structured fields
travel in the standard ``extra`` mapping and become top-level JSON keys::

    logger.info("run %s: claimed", run_id, extra={"event": "run.transition", "run_id": run_id})

Run transitions go through :func:`log_transition` so that each one is a single
line with ``event="run.transition"``, ``run_id``, ``status`` and, where known,
``previous`` and ``worker``.

A record is one line whatever it carries: logged values come from clients (paths,
ids, headers), and a newline in one must not forge a record. The text format
escapes control characters (a newline becomes the two characters backslash, n) and
prints a traceback on continuation lines that start with :data:`CONTINUATION`, so a
line that does not is always the start of a record; the JSON format escapes them as
JSON does, including the line separators JSON itself allows raw.
"""

from __future__ import annotations

import atexit
import json
import logging
import logging.handlers
import math
import queue
import re
import sys
from datetime import UTC, datetime
from typing import Any, Literal

LogFormat = Literal["text", "json"]

TEXT_FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"
CONTINUATION = "  | "
"""Start of each line of a traceback (or stack) under its record, in the text format."""

# C0 and C1 control characters (newline, carriage return, escape, ...), DEL, and the
# Unicode line and paragraph separators, which str.splitlines() and some viewers
# treat as line breaks.
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_JSON_LINE_BREAKS = {"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"}

# Attributes every LogRecord has; anything else on a record came from ``extra``.
_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", (), None)).keys()
    | {"message", "asctime", "color_message"}  # uvicorn's ANSI-coloured copy of the message
)

transitions = logging.getLogger("backprop.runs")


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(item) for item in value]
    return str(value)


def _escape_control(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED_ESCAPES.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_controls(text: str) -> str:
    """``text`` with every control character written as its Python escape (``\\n``, ``\\x1b``)."""
    return _CONTROLS.sub(_escape_control, text)


class TextFormatter(logging.Formatter):
    """:data:`TEXT_FORMAT`, one line per record, control characters escaped.

    A traceback or stack follows on lines that each start with :data:`CONTINUATION`
    (their own control characters escaped too), so nothing in a record, not even an
    exception message with a newline in it, can start a line that looks like a record.
    """

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        """Return the text of ``record``: its line, then any continuation lines."""
        record.message = record.getMessage().rstrip("\n")  # uvicorn ends some with one
        if self.usesTime():
            record.asctime = self.formatTime(record, self.datefmt)
        text = escape_controls(self.formatMessage(record))
        blocks = []
        if record.exc_info:
            blocks.append(self.formatException(record.exc_info))
        elif record.exc_text:
            blocks.append(record.exc_text)
        if record.stack_info:
            blocks.append(self.formatStack(record.stack_info))
        lines = [text]
        for block in blocks:
            lines.extend(CONTINUATION + escape_controls(line) for line in block.split("\n"))
        return "\n".join(lines)


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON object per line.

    Keys: ``time`` (ISO 8601 UTC), ``level``, ``logger``, ``message``, ``pid``,
    every ``extra`` field, and ``exc_info`` (the formatted traceback) when present.
    """

    def format(self, record: logging.LogRecord) -> str:
        """Return the JSON line for ``record``."""
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = _jsonable(value)
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        line = json.dumps(entry, ensure_ascii=False, separators=(",", ":"))
        # json.dumps escapes C0 controls but leaves these raw (valid in JSON strings).
        for char, escaped in _JSON_LINE_BREAKS.items():
            line = line.replace(char, escaped)
        return line


def make_formatter(log_format: LogFormat) -> logging.Formatter:
    """The formatter for ``log_format``."""
    if log_format == "json":
        return JsonFormatter()
    return TextFormatter()


class _InProcessQueueHandler(logging.handlers.QueueHandler):
    """Queues the record itself: the listener is in this process, so nothing needs to be
    made picklable (the stock ``prepare`` formats the message and drops ``exc_info``,
    which the JSON format reports as fields of their own)."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        record.message = record.getMessage()  # the arguments as they are now
        return record


_listener: logging.handlers.QueueListener | None = None


def stop_background_logging() -> None:
    """Write what is queued and stop the writer thread of ``background`` logging (at
    exit, or when reconfiguring); later records are written directly."""
    global _listener
    if _listener is None:
        return
    _listener.stop()
    root = logging.getLogger()
    for existing in list(root.handlers):  # records after this are written directly
        if isinstance(existing, _InProcessQueueHandler):
            root.removeHandler(existing)
            for handler in _listener.handlers:
                root.addHandler(handler)
    _listener = None


atexit.register(stop_background_logging)


def configure_logging(
    log_format: LogFormat = "text", level: int = logging.INFO, *, background: bool = False
) -> None:
    """Send every log record of this process to stderr in ``log_format``.

    Replaces the root logger's handlers (idempotent) and routes uvicorn's and
    Celery's loggers through the root logger, so that one process never mixes
    formats. With ``background`` (``backprop serve``) the records are formatted and
    written by a thread of their own (:class:`logging.handlers.QueueListener`): the
    event loop logs every request, and a write to stderr blocks when the pipe or the
    disk behind it is slow (90 ms once, seen as a ``/healthz`` stall during a large
    predict); the queue is written out at exit. Forked processes (Celery's pool) keep
    writing directly: a fork has no listener thread.
    """
    stop_background_logging()
    handler: logging.Handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(make_formatter(log_format))
    if background:
        records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        global _listener
        _listener = logging.handlers.QueueListener(records, handler)
        _listener.start()
        handler = _InProcessQueueHandler(records)
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "celery", "kombu"):
        named = logging.getLogger(name)
        named.handlers.clear()
        named.propagate = True
        named.setLevel(logging.NOTSET)  # the root's level decides
        named.disabled = False
    logging.captureWarnings(True)  # warnings become records in the same format
    # Alembic announces every plugin and context at INFO; migrations still log their steps.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)


def log_transition(
    run_id: str,
    status: str,
    *,
    previous: str | None = None,
    message: str = "",
    level: int = logging.INFO,
    **fields: Any,
) -> None:
    """Log one run transition (``event="run.transition"``) as a single line.

    Parameters
    ----------
    run_id : str
        The run.
    status : str
        The status it moved to (or ``cancel_requested``).
    previous : str, optional
        The status it left.
    message : str
        Free text appended to the message (e.g. the stop reason).
    **fields
        More structured fields (``worker``, ``epoch``, ``attempt``, ``stop_reason``…).
    """
    text = f"run {run_id}: {previous + ' -> ' if previous else ''}{status}"
    if message:
        text = f"{text} ({message})"
    extra = {"event": "run.transition", "run_id": run_id, "status": status, **fields}
    if previous is not None:
        extra["previous"] = previous
    transitions.log(level, text, extra=extra)
