"""What every client command of ``backprop`` shares: the global options, the output
(stdout for results, stderr for progress), the error handling and exit codes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import click

from backprop_client.cli_files import UsageError
from backprop_client.cli_output import print_json, stderr_console, stdout_console
from backprop_client.client import DEFAULT_URL, Client
from backprop_client.errors import BackpropConnectionError, BackpropError, ServerError

BUILTINS = ("xor", "and", "or", "moons", "circles", "spirals", "iris", "digits")
EXIT_OK, EXIT_RUN_FAILED, EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
EXIT_PAUSED = 4
"""``watch``/``train`` stop following a paused run (it waits for ``runs resume``)."""


@dataclass
class Options:
    """The global options, set before the subcommand and overridable after it."""

    server: str = DEFAULT_URL
    api_key: str | None = None
    timeout: float = 30.0
    json: bool = False


class Output:
    """stdout for results, stderr for progress and messages."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self.out = stdout_console()
        self.err = stderr_console()

    def line(self, text: str) -> None:
        """A result line on stdout."""
        self.out.print(text, markup=False)

    def note(self, text: str) -> None:
        """A message on stderr."""
        self.err.print(text, markup=False)

    def json(self, value: Any) -> None:
        """``value`` as JSON on stdout."""
        print_json(self.out, value)


Command = Callable[[Client, Output], int]


def _options(ctx: click.Context) -> Options:
    options = ctx.find_object(Options)
    return options if options is not None else Options()


def run_command(ctx: click.Context, command: Command) -> int:
    """Run a client command; API errors become one line on stderr and an exit code."""
    options = _options(ctx)
    output = Output(options)
    try:
        with Client(options.server, api_key=options.api_key, timeout=options.timeout) as client:
            return command(client, output)
    except (UsageError, BackpropError) as exc:
        output.note(f"error: {exc}")
        for note in getattr(exc, "__notes__", ()):
            output.note(note)
        unavailable = isinstance(exc, BackpropConnectionError | ServerError)
        return EXIT_UNAVAILABLE if unavailable else EXIT_USAGE
    except KeyboardInterrupt as exc:
        output.note("interrupted")
        for note in getattr(exc, "__notes__", ()):
            output.note(note)
        return EXIT_INTERRUPTED


def _override(field: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    def store(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        options = ctx.find_object(Options)
        if options is not None and value not in (None, False):
            setattr(options, field, value)
        return value

    return store


def connection_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--server``, ``--api-key``, ``--timeout`` and ``--json`` after the subcommand too."""
    for option in reversed(
        [
            click.option(
                "--server",
                expose_value=False,
                callback=_override("server"),
                help="The server's URL (as before the subcommand).",
            ),
            click.option(
                "--api-key",
                expose_value=False,
                callback=_override("api_key"),
                help="Bearer token (as before the subcommand).",
            ),
            click.option(
                "--timeout",
                type=click.FloatRange(min=0.1),
                expose_value=False,
                callback=_override("timeout"),
                help="Seconds per request.",
            ),
            click.option(
                "--json",
                is_flag=True,
                default=False,
                expose_value=False,
                callback=_override("json"),
                help="Results as JSON on stdout.",
            ),
        ]
    ):
        command = option(command)
    return command


def progress_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--poll`` and ``--progress-every``."""
    command = click.option(
        "--progress-every",
        type=click.FloatRange(min=0.0),
        default=2.0,
        show_default=True,
        help="Without a terminal, print a progress line at most this often (seconds).",
    )(command)
    return click.option(
        "--poll",
        type=click.FloatRange(min=0.01),
        default=0.5,
        show_default=True,
        help="Seconds between polls (when the event stream is not available).",
    )(command)
