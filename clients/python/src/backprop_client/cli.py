"""The ``backprop`` command (Click): ``train``, ``runs ...``, ``predict``, ``evaluate``,
``sweep ...``; and, where the server is installed, its ``serve``, ``worker`` and
``migrate`` (plugins, see below).

Global options come before the subcommand (``backprop --server URL runs list``) and
are also accepted after it (``backprop runs list --server URL``):
``--server``/``$BACKPROP_URL``, ``--api-key``/``$BACKPROP_API_KEY``, ``--timeout``,
``--json`` (results as JSON on stdout). Progress and messages go to stderr.

Exit codes: 0 success; 1 the run failed or was cancelled; 2 a usage error, a file that
cannot be read, or a 4xx answer; 3 the server could not be reached or answered 5xx;
4 the run is paused; 130 interrupted (the run keeps training on the server).

Plugins: a package adds commands with an entry point in the group
``backprop_client.commands`` naming a function ``register(group: click.Group) -> None``;
the server package registers ``serve``, ``worker`` and ``migrate`` that way, so an
environment has one ``backprop`` however it was installed.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable, Sequence
from importlib.metadata import entry_points

import click

from backprop_client.cli_common import EXIT_INTERRUPTED, EXIT_OK, Options
from backprop_client.cli_experiments import evaluate
from backprop_client.cli_runs import predict, runs
from backprop_client.cli_sweeps import sweep
from backprop_client.cli_train import train
from backprop_client.client import DEFAULT_URL

logger = logging.getLogger(__name__)

PLUGIN_GROUP = "backprop_client.commands"
Register = Callable[[click.Group], None]


# --------------------------------------------------------------------------- the command


@click.group(
    "backprop", context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}
)
@click.option(
    "--server",
    envvar="BACKPROP_URL",
    default=DEFAULT_URL,
    show_default=True,
    help="The server's URL [env: BACKPROP_URL].",
)
@click.option("--api-key", envvar="BACKPROP_API_KEY", help="Bearer token [env: BACKPROP_API_KEY].")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    default=30.0,
    show_default=True,
    help="Seconds per request.",
)
@click.option("--json", "json_output", is_flag=True, help="Results as JSON on stdout.")
@click.version_option(package_name="backprop-client", prog_name="backprop")
@click.pass_context
def cli(
    ctx: click.Context, server: str, api_key: str | None, timeout: float, json_output: bool
) -> None:
    """Backprop: train multi-layer perceptrons on a Backprop server.

    The global options can also follow the subcommand: backprop runs list --server URL.
    """
    ctx.obj = Options(server=server, api_key=api_key or None, timeout=timeout, json=json_output)


CLIENT_COMMANDS: tuple[click.Command, ...] = (train, runs, predict, evaluate, sweep)


def _plugins(extra: Iterable[Register]) -> list[Register]:
    found: list[Register] = list(dict.fromkeys(extra))
    for point in entry_points(group=PLUGIN_GROUP):
        try:
            register = point.load()
        except Exception as exc:  # a broken plugin must not take the client commands down
            logger.warning("backprop: cannot load the %s commands: %s", point.value, exc)
            continue
        if register not in found:
            found.append(register)
    return found


def build_command(plugins: Iterable[Register] = ()) -> click.Group:
    """The whole ``backprop`` command: the client commands, then every plugin's."""
    group = click.Group(
        name=cli.name,
        callback=cli.callback,
        params=list(cli.params),
        help=cli.help,
        context_settings=cli.context_settings,
    )
    for command in CLIENT_COMMANDS:
        group.add_command(command)
    for register in _plugins(plugins):
        register(group)
    return group


def main(argv: Sequence[str] | None = None, *, plugins: Iterable[Register] = ()) -> int:
    """Entry point of the ``backprop`` console script; returns the exit code."""
    command = build_command(plugins)
    try:
        result = command.main(
            args=list(argv) if argv is not None else None,
            prog_name="backprop",
            standalone_mode=False,
        )
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.Abort:
        click.echo("interrupted", err=True)
        return EXIT_INTERRUPTED
    return result if isinstance(result, int) else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
