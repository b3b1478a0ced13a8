"""Logging for operators: one line per event, as JSON (``BACKPROP_LOG_FORMAT=json``) or text.

Every process (``backprop serve``, its local workers, ``backprop worker`` and its
Celery pool processes) calls :func:`configure_logging` once. Structured fields
travel in the standard ``extra`` mapping and become top-level JSON keys::

    logger.info("run %s: claimed", run_id, extra={"event": "run.transition", "run_id": run_id})

Run transitions go through :func:`log_transition` so that each one is a single
line with ``event="run.transition"``, ``run_id``, ``status`` and, where known,
``previous`` and ``worker``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
from datetime import UTC, datetime
from typing import Any, Literal

LogFormat = Literal["text", "json"]

TEXT_FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"

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
        return json.dumps(entry, ensure_ascii=False, separators=(",", ":"))


def make_formatter(log_format: LogFormat) -> logging.Formatter:
    """The formatter for ``log_format``."""
    if log_format == "json":
        return JsonFormatter()
    return logging.Formatter(TEXT_FORMAT)


def configure_logging(log_format: LogFormat = "text", level: int = logging.INFO) -> None:
    """Send every log record of this process to stderr in ``log_format``.

    Replaces the root logger's handlers (idempotent) and routes uvicorn's and
    Celery's loggers through the root logger, so that one process never mixes
    formats.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(make_formatter(log_format))
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


def log_format_from_env() -> LogFormat:
    """``BACKPROP_LOG_FORMAT`` for processes that start before the settings exist."""
    return "json" if os.environ.get("BACKPROP_LOG_FORMAT", "").lower() == "json" else "text"


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
