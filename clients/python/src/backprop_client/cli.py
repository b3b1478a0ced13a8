"""The ``backprop`` command (Click): ``train``, ``runs ...``, ``predict``; and, where the
server is installed, its ``serve``, ``worker`` and ``migrate`` (plugins, see below).

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

import json
import logging
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import click

from backprop_client.cli_files import (
    UsageError,
    predictions_csv,
    read_dataset_json,
    read_network_spec,
    read_rows,
)
from backprop_client.cli_output import (
    RunProgress,
    Snapshot,
    print_json,
    runs_table,
    stderr_console,
    stdout_console,
    summary,
)
from backprop_client.client import DEFAULT_URL, Client
from backprop_client.errors import (
    BackpropConnectionError,
    BackpropError,
    RetryLater,
    ServerError,
)
from backprop_client.models import RUN_STATUSES, Dataset, Network, Run

logger = logging.getLogger(__name__)

PLUGIN_GROUP = "backprop_client.commands"
BUILTINS = ("xor", "and", "or", "moons", "circles", "spirals", "iris", "digits")
EXIT_OK, EXIT_RUN_FAILED, EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
EXIT_PAUSED = 4
"""``watch``/``train`` stop following a paused run (it waits for ``runs resume``)."""

Register = Callable[[click.Group], None]


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


# --------------------------------------------------------------------------- following a run


def _stream(client: Client, run_id: str, snapshot: Snapshot, progress: RunProgress) -> None:
    """Show the run's events until it ends or pauses (returns early if the stream cannot
    be had: the caller polls instead)."""
    try:
        for event in client.events(run_id, after=snapshot.epoch):
            snapshot.apply(event)
            progress.update(snapshot)
            if snapshot.status == "paused":
                return
    except (BackpropConnectionError, RetryLater) as exc:
        logger.info("run %s: no event stream (%s); polling", run_id, exc)


def follow(client: Client, output: Output, run_id: str, *, poll: float, every: float) -> int:
    """Show a run's progress (its event stream) until it ends; print the summary; exit 0
    only on success. A paused run ends the watch too, with :data:`EXIT_PAUSED`."""
    progress = RunProgress(output.err, run_id, interval=every)
    run = client.get_run(run_id)
    snapshot = Snapshot.of(run)
    progress.update(snapshot)
    try:
        if not (run.terminal or run.paused):
            _stream(client, run_id, snapshot, progress)
            run = client.wait(
                run_id, poll=poll, on_progress=lambda r: progress.update(Snapshot.of(r))
            )
    except KeyboardInterrupt:
        progress.close()
        output.note(
            f"interrupted; run {run_id} keeps training on the server "
            f"(`backprop runs watch {run_id}` to follow it, `backprop runs cancel {run_id}` "
            "to stop it)"
        )
        return EXIT_INTERRUPTED
    progress.close(Snapshot.of(run))
    if output.options.json:
        output.json(run.model_dump(mode="json"))
    if run.paused:
        output.note(
            f"run {run_id} is paused at epoch {run.epoch}/{run.epochs}; "
            f"`backprop runs resume {run_id}` continues it exactly where it stopped"
        )
        return EXIT_PAUSED
    if not output.options.json:
        for line in summary(run):
            output.line(line)
    return EXIT_OK if run.status == "succeeded" else EXIT_RUN_FAILED


# --------------------------------------------------------------------------- train


@dataclass
class TrainData:
    """Where ``train`` gets its dataset from."""

    data: Path | None
    builtin: str | None
    target: str | None
    n_samples: int | None
    noise: float | None
    data_seed: int | None


def _create_dataset(client: Client, source: TrainData) -> Dataset:
    if source.builtin:
        return client.create_dataset(
            builtin=source.builtin,
            n_samples=source.n_samples,
            noise=source.noise,
            seed=source.data_seed,
        )
    assert source.data is not None
    if source.data.suffix.lower() == ".csv":
        if not source.target:
            raise UsageError("--target names the y column(s) of a CSV file, e.g. --target y")
        try:
            content = source.data.read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read {source.data}: {exc.strerror or exc}") from None
        return client.upload_csv(content, source.target, filename=source.data.name)
    name, X, y = read_dataset_json(source.data)
    return client.create_dataset(name, X, y)


def _undo(client: Client, network: Network | None, dataset: Dataset | None) -> list[str]:
    """Delete what a failed ``train`` created (the network first: it may hold the run);
    the messages to show after the error."""
    removed, notes = [], []
    for kind, created, delete in (
        ("network", network, client.delete_network),
        ("dataset", dataset, client.delete_dataset),
    ):
        if created is None:
            continue
        try:
            delete(created.id)
            removed.append(f"{kind} {created.id}")
        except BackpropError as exc:
            notes.append(f"could not delete the {kind} {created.id} this command created: {exc}")
    if removed:
        notes.insert(0, f"removed {' and '.join(removed)} (created by this command)")
    return notes


def create_training(
    client: Client, spec: dict[str, Any], source: TrainData, config: dict[str, Any]
) -> tuple[Network, Dataset, Run]:
    """Create the dataset, the network and the run; on any failure delete what was created
    (the error carries what happened as notes, shown after it)."""
    network: Network | None = None
    dataset: Dataset | None = None
    try:
        dataset = _create_dataset(client, source)
        network = client.create_network(spec)
        return network, dataset, client.create_run(network.id, dataset.id, **config)
    except BaseException as exc:
        for note in _undo(client, network, dataset):
            exc.add_note(note)
        raise


def _train_config(
    loss: str,
    optimizer: str,
    lr: float | None,
    epochs: int,
    batch_size: int | None,
    seed: int | None,
) -> dict[str, Any]:
    options: dict[str, Any] = {"name": optimizer}
    if lr is not None:
        options["learning_rate"] = lr
    config: dict[str, Any] = {"loss": loss, "optimizer": options, "epochs": epochs}
    if batch_size is not None:
        config["batch_size"] = batch_size
    if seed is not None:
        config["seed"] = seed
    return config


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


@click.command("train")
@click.argument("network_file", metavar="NETWORK", type=click.Path(path_type=Path))
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    help='CSV file (with --target) or JSON file {"X": ..., "y": ...}.',
)
@click.option("--builtin", type=click.Choice(BUILTINS), help="A built-in dataset.")
@click.option("--target", help="CSV target column(s), comma-separated.")
@click.option("--n-samples", type=int, help="moons/circles/spirals: samples.")
@click.option("--noise", type=float, help="moons/circles/spirals: noise.")
@click.option("--data-seed", type=int, help="moons/circles/spirals: seed of the data.")
@click.option(
    "--loss", default="mse", show_default=True, help="mse, binary_cross_entropy, cross_entropy, ..."
)
@click.option(
    "--optimizer", default="sgd", show_default=True, help="sgd, adam, adamw, rmsprop, adagrad."
)
@click.option("--lr", type=float, help="Learning rate (default: the optimizer's).")
@click.option("--epochs", type=click.IntRange(min=1), default=1000, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), help="Mini-batch size (full batch).")
@click.option("--seed", type=int, help="The run's seed (drawn when omitted).")
@click.option("--detach", is_flag=True, help="Print only the run id (or its JSON) and exit.")
@progress_options
@connection_options
@click.pass_context
def train(
    ctx: click.Context,
    network_file: Path,
    data: Path | None,
    builtin: str | None,
    target: str | None,
    n_samples: int | None,
    noise: float | None,
    data_seed: int | None,
    loss: str,
    optimizer: str,
    lr: float | None,
    epochs: int,
    batch_size: int | None,
    seed: int | None,
    detach: bool,
    poll: float,
    progress_every: float,
) -> int:
    """Create a network (from the NETWORK spec file), a dataset and a run, and follow it.

    Exit 0 when the run succeeds, 1 when it fails or is cancelled. If the network, the
    dataset or the run cannot be created, what this command created is deleted again.
    """
    if (data is None) == (builtin is None):
        raise click.UsageError("give exactly one of --data FILE or --builtin NAME", ctx=ctx)
    source = TrainData(data, builtin, target, n_samples, noise, data_seed)
    config = _train_config(loss, optimizer, lr, epochs, batch_size, seed)

    def command(client: Client, output: Output) -> int:
        spec = read_network_spec(network_file)
        if source.data is not None and source.data.suffix.lower() != ".csv":
            read_dataset_json(source.data)  # a bad file fails before anything is created
        network, dataset, run = create_training(client, spec, source, config)
        if detach:
            if output.options.json:
                output.json(run.model_dump(mode="json"))
            else:
                output.line(run.id)
            return EXIT_OK
        output.note(
            f"run {run.id} {run.status}: network {network.id} ({network.n_parameters} "
            f"parameters), dataset {dataset.id} ({dataset.n_samples} x {dataset.n_features})"
        )
        return follow(client, output, run.id, poll=poll, every=progress_every)

    return run_command(ctx, command)


# --------------------------------------------------------------------------- runs

RUN_ID = click.argument("run_id")


@click.group("runs")
def runs() -> None:
    """List, watch, cancel, pause and resume runs; export their weights."""


@runs.command("list")
@click.option("--status", type=click.Choice(RUN_STATUSES), help="Only runs with this status.")
@click.option("--network", help="Only runs of this network id.")
@click.option("--dataset", help="Only runs on this dataset id.")
@click.option(
    "--limit", type=click.IntRange(1, 100), default=20, show_default=True, help="How many."
)
@connection_options
@click.pass_context
def runs_list(
    ctx: click.Context, status: str | None, network: str | None, dataset: str | None, limit: int
) -> int:
    """The newest runs, as a table (a JSON list with --json)."""

    def command(client: Client, output: Output) -> int:
        page = client.runs_page(limit=limit, status=status, network_id=network, dataset_id=dataset)
        if output.options.json:
            output.json([run.model_dump(mode="json") for run in page.data])
            return EXIT_OK
        output.out.print(runs_table(page.data))
        if page.has_more:
            output.note(f"... more: --limit {min(100, limit * 2)}")
        return EXIT_OK

    return run_command(ctx, command)


@runs.command("watch")
@RUN_ID
@progress_options
@connection_options
@click.pass_context
def runs_watch(ctx: click.Context, run_id: str, poll: float, progress_every: float) -> int:
    """Follow a run until it ends (exit 1 if it failed or was cancelled, 4 if it paused)."""
    return run_command(
        ctx, lambda client, output: follow(client, output, run_id, poll=poll, every=progress_every)
    )


def _show_run(output: Output, run: Run, note: str = "") -> int:
    if output.options.json:
        output.json(run.model_dump(mode="json"))
    else:
        output.line(f"run {run.id} {run.status}{note}")
    return EXIT_OK


@runs.command("cancel")
@RUN_ID
@connection_options
@click.pass_context
def runs_cancel(ctx: click.Context, run_id: str) -> int:
    """Cancel a run (idempotent)."""

    def command(client: Client, output: Output) -> int:
        run = client.cancel(run_id)
        return _show_run(output, run, " (cancel requested)" if run.cancel_requested else "")

    return run_command(ctx, command)


@runs.command("pause")
@RUN_ID
@connection_options
@click.pass_context
def runs_pause(ctx: click.Context, run_id: str) -> int:
    """Pause a run at its next epoch boundary (idempotent)."""

    def command(client: Client, output: Output) -> int:
        run = client.pause(run_id)
        return _show_run(output, run, " (pause requested)" if run.pause_requested else "")

    return run_command(ctx, command)


@runs.command("resume")
@RUN_ID
@connection_options
@click.pass_context
def runs_resume(ctx: click.Context, run_id: str) -> int:
    """Resume a paused run exactly where it stopped (idempotent)."""
    return run_command(ctx, lambda client, output: _show_run(output, client.resume(run_id)))


@runs.command("weights")
@RUN_ID
@click.option(
    "--format",
    "file_format",
    type=click.Choice(("json", "npz", "onnx")),
    default="json",
    show_default=True,
)
@click.option(
    "--output",
    "output_path",
    type=click.Path(path_type=Path),
    help="File to write (npz/onnx default: RUN_ID.npz / RUN_ID.onnx; json: stdout).",
)
@connection_options
@click.pass_context
def runs_weights(
    ctx: click.Context, run_id: str, file_format: str, output_path: Path | None
) -> int:
    """Export a run's weights: JSON, or the server's npz / ONNX export file."""

    def command(client: Client, output: Output) -> int:
        weights = client.run_weights(run_id)
        if file_format == "json":
            document = weights.model_dump(mode="json")
            if output_path is None:
                output.json(document)
                return EXIT_OK
            output_path.write_text(json.dumps(document) + "\n")
            path = output_path
        else:
            path = output_path or Path(f"{run_id}.{file_format}")
            path.write_bytes(client.export(run_id, file_format))
        output.note(f"wrote {path} (epoch {weights.epoch}, {len(weights.layers)} layers)")
        if output.options.json:
            output.json({"path": str(path), "format": file_format, "epoch": weights.epoch})
        return EXIT_OK

    return run_command(ctx, command)


# --------------------------------------------------------------------------- predict


@click.command("predict")
@RUN_ID
@click.option(
    "--input",
    "input_path",
    type=click.Path(path_type=Path),
    required=True,
    help='CSV rows of inputs (a header row is skipped) or JSON {"X": [[...]]}.',
)
@click.option(
    "--output",
    "output_path",
    type=click.Path(path_type=Path),
    help="File to write (default: stdout).",
)
@click.option(
    "--format",
    "file_format",
    type=click.Choice(("json", "csv")),
    help="Default: csv for an --output *.csv, else json (always json with --json).",
)
@connection_options
@click.pass_context
def predict(
    ctx: click.Context,
    run_id: str,
    input_path: Path,
    output_path: Path | None,
    file_format: str | None,
) -> int:
    """Run inputs through a run's network."""

    def command(client: Client, output: Output) -> int:
        prediction = client.predict(run_id, read_rows(input_path))
        chosen = file_format or (
            "csv" if output_path is not None and output_path.suffix.lower() == ".csv" else "json"
        )
        if output.options.json or chosen == "json":
            text = json.dumps(prediction.model_dump(mode="json")) + "\n"
        else:
            text = predictions_csv(prediction.predictions)
        if output_path is None:
            sys.stdout.write(text)
            sys.stdout.flush()
        else:
            output_path.write_text(text)
            rows = len(prediction.predictions)
            output.note(f"wrote {output_path} ({rows} rows, epoch {prediction.epoch})")
        return EXIT_OK

    return run_command(ctx, command)


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
@click.pass_context
def cli(
    ctx: click.Context, server: str, api_key: str | None, timeout: float, json_output: bool
) -> None:
    """Backprop: train multi-layer perceptrons on a Backprop server.

    The global options can also follow the subcommand: backprop runs list --server URL.
    """
    ctx.obj = Options(server=server, api_key=api_key or None, timeout=timeout, json=json_output)


CLIENT_COMMANDS: tuple[click.Command, ...] = (train, runs, predict)


def _plugins(extra: Iterable[Register]) -> list[Register]:
    found: list[Register] = list(extra)
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
