"""The client side of the ``backprop`` command: ``train``, ``runs ...``, ``predict``.

These commands talk to a running server through :class:`app.client.Client`
(``--server`` or ``BACKPROP_URL``, ``--api-key`` or ``BACKPROP_API_KEY``).

Exit codes: 0 success; 1 the run failed or was cancelled; 2 a usage error, a
file that cannot be read, or a 4xx answer; 3 the server could not be reached or
answered 5xx; 130 interrupted (the run keeps training on the server).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from app.client import (
    DEFAULT_URL,
    BackpropConnectionError,
    BackpropError,
    Client,
    Run,
    ServerError,
)

BUILTINS = ("xor", "and", "or", "moons", "circles", "spirals", "iris", "digits")
EXIT_OK, EXIT_RUN_FAILED, EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
EXIT_PAUSED = 4
"""``watch``/``train`` stop following a paused run (it waits for ``runs resume``)."""

Handler = Callable[[Client, argparse.Namespace], int]


class UsageError(Exception):
    """A bad argument or an unreadable file: exit code 2 with the message."""


def _write(stream: TextIO, text: str) -> None:
    stream.write(text + "\n")
    stream.flush()


def out(text: str) -> None:
    """A line on stdout."""
    _write(sys.stdout, text)


def err(text: str) -> None:
    """A line on stderr."""
    _write(sys.stderr, text)


# --------------------------------------------------------------------------- progress


def _number(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "nan" if value is not None else "-"
    return f"{value:.6g}"


def describe_progress(run: Run) -> str:
    """``epoch 120/2000  loss 0.2345  accuracy 0.75``."""
    parts = [f"epoch {run.epoch}/{run.epochs}", f"loss {_number(run.loss)}"]
    if run.val_loss is not None:
        parts.append(f"val_loss {_number(run.val_loss)}")
    parts += [f"{name} {_number(value)}" for name, value in sorted(run.metrics.items())]
    return "  ".join(parts)


class ProgressBar:
    """Progress of one run on a stream.

    On a terminal the bar is redrawn in place on every update. Elsewhere (a pipe,
    a log file, CI) a line is printed when the status changes and at most every
    ``interval`` seconds, so that logs stay short.
    """

    def __init__(self, stream: TextIO, *, interval: float = 2.0, width: int = 30) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.interval = interval
        self.width = width
        self._last_status: str | None = None
        self._last_line = 0.0
        self._drawn = False

    def bar(self, run: Run) -> str:
        """``[#########.....................]  30%``."""
        fraction = min(1.0, run.epoch / run.epochs) if run.epochs else 0.0
        filled = round(fraction * self.width)
        return f"[{'#' * filled}{'.' * (self.width - filled)}] {fraction:4.0%}"

    def update(self, run: Run) -> None:
        """Show ``run``'s progress."""
        line = f"{self.bar(run)}  {describe_progress(run)}  {run.status}"
        if self.tty:
            self.stream.write("\r\x1b[2K" + line)
            self.stream.flush()
            self._drawn = True
            return
        now = time.monotonic()
        if run.status != self._last_status or now - self._last_line >= self.interval:
            _write(self.stream, line)
            self._last_status = run.status
            self._last_line = now

    def close(self, run: Run | None = None) -> None:
        """Finish the display (the last state is printed once more if it was not)."""
        if self.tty and self._drawn:
            self.stream.write("\n")
            self.stream.flush()
        elif not self.tty and run is not None and run.status != self._last_status:
            self.update(run)


def _duration(run: Run) -> str:
    if run.started_at is None or run.finished_at is None:
        return ""
    seconds = (run.finished_at - run.started_at).total_seconds()
    return f" in {seconds:.1f} s"


def summary(run: Run) -> list[str]:
    """The final report of a run."""
    reason = f" ({run.stop_reason})" if run.stop_reason else ""
    lines = [
        f"run {run.id} {run.status}{reason} after {run.epoch}/{run.epochs} epochs{_duration(run)}"
    ]
    final = [f"loss {_number(run.loss)}"]
    if run.val_loss is not None:
        final.append(f"val_loss {_number(run.val_loss)}")
    final += [f"{name} {_number(value)}" for name, value in sorted(run.metrics.items())]
    lines.append("final " + ", ".join(final))
    if run.error is not None:
        lines.append(f"error {run.error.code}: {run.error.message}")
    return lines


def follow(client: Client, run_id: str, args: argparse.Namespace) -> int:
    """Show a run's progress until it ends; print the summary; exit 0 only on success.

    A paused run ends the watch too, with a message and :data:`EXIT_PAUSED`.
    """
    progress = ProgressBar(sys.stdout, interval=args.progress_every)
    last: Run | None = None

    def on_progress(run: Run) -> None:
        nonlocal last
        last = run
        progress.update(run)

    try:
        run = client.wait(run_id, poll=args.poll, on_progress=on_progress)
    except KeyboardInterrupt:
        progress.close()
        err(
            f"interrupted; run {run_id} keeps training on the server "
            f"(`backprop runs watch {run_id}` to follow it, `backprop runs cancel {run_id}` "
            "to stop it)"
        )
        return EXIT_INTERRUPTED
    finally:
        if last is not None and last.terminal:
            progress.close(last)
    if run.paused:
        progress.close()
        err(
            f"run {run_id} is paused at epoch {run.epoch}/{run.epochs}; "
            f"`backprop runs resume {run_id}` continues it exactly where it stopped"
        )
        return EXIT_PAUSED
    for line in summary(run):
        out(line)
    return EXIT_OK if run.status == "succeeded" else EXIT_RUN_FAILED


# --------------------------------------------------------------------------- files


def read_json(path: Path) -> Any:
    """A JSON file, or a :class:`UsageError` that names it."""
    try:
        return json.loads(path.read_text())
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path} is not valid JSON: {exc}") from None


def read_rows(path: Path) -> list[list[float]]:
    """Input rows from a CSV file (an optional header row is skipped) or a JSON file
    (``{"X": [[...]]}`` or a bare list of rows)."""
    if path.suffix.lower() == ".json":
        data = read_json(path)
        rows = data.get("X") if isinstance(data, dict) else data
        if not isinstance(rows, list):
            raise UsageError(f'{path}: expected {{"X": [[...], ...]}} or a list of rows')
        return rows
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    rows = [row for row in csv.reader(io.StringIO(text)) if any(cell.strip() for cell in row)]
    values: list[list[float]] = []
    for index, row in enumerate(rows):
        try:
            values.append([float(cell) for cell in row])
        except ValueError:
            if index == 0:
                continue  # a header row
            raise UsageError(f"{path}, line {index + 1}: not a number in {row}") from None
    if not values:
        raise UsageError(f"{path}: no rows")
    return values


# --------------------------------------------------------------------------- commands


def _train(client: Client, args: argparse.Namespace) -> int:
    spec = read_json(args.network)
    if not isinstance(spec, dict):
        raise UsageError(f"{args.network}: a network spec is a JSON object")
    spec.setdefault("name", args.network.stem)
    if args.builtin:
        dataset = client.create_dataset(
            builtin=args.builtin, n_samples=args.n_samples, noise=args.noise, seed=args.data_seed
        )
    elif args.data.suffix.lower() == ".csv":
        if not args.target:
            raise UsageError("--target names the y column(s) of a CSV file, e.g. --target y")
        try:
            dataset = client.upload_csv(args.data, args.target)
        except OSError as exc:
            raise UsageError(f"cannot read {args.data}: {exc.strerror or exc}") from None
    else:
        data = read_json(args.data)
        if not isinstance(data, dict) or "X" not in data or "y" not in data:
            raise UsageError(f'{args.data}: expected a JSON object {{"X": [[...]], "y": [...]}}')
        dataset = client.create_dataset(data.get("name") or args.data.stem, data["X"], data["y"])
    network = client.create_network(spec)
    optimizer: dict[str, Any] = {"name": args.optimizer}
    if args.lr is not None:
        optimizer["learning_rate"] = args.lr
    config: dict[str, Any] = {
        "loss": args.loss,
        "optimizer": optimizer,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
    }
    if args.seed is not None:
        config["seed"] = args.seed
    run = client.create_run(network.id, dataset.id, **config)
    out(
        f"run {run.id} {run.status}: network {network.id} ({network.n_parameters} parameters), "
        f"dataset {dataset.id} ({dataset.n_samples} x {dataset.n_features})"
    )
    if args.detach:
        return EXIT_OK
    return follow(client, run.id, args)


def _runs_list(client: Client, args: argparse.Namespace) -> int:
    page = client.runs_page(
        limit=args.limit, status=args.status, network_id=args.network, dataset_id=args.dataset
    )
    if args.json:
        out(json.dumps([run.model_dump(mode="json") for run in page.data], indent=2))
        return EXIT_OK
    rows = [("ID", "STATUS", "EPOCH", "LOSS", "CREATED")]
    for run in page.data:
        created = run.created_at.astimezone().strftime("%Y-%m-%d %H:%M:%S")
        rows.append((run.id, run.status, f"{run.epoch}/{run.epochs}", _number(run.loss), created))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        out("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    if page.has_more:
        out(f"... more: --limit {min(100, args.limit * 2)}")
    return EXIT_OK


def _runs_watch(client: Client, args: argparse.Namespace) -> int:
    return follow(client, args.run_id, args)


def _runs_cancel(client: Client, args: argparse.Namespace) -> int:
    run = client.cancel(args.run_id)
    out(f"run {run.id} {run.status}" + (" (cancel requested)" if run.cancel_requested else ""))
    return EXIT_OK


def _runs_pause(client: Client, args: argparse.Namespace) -> int:
    run = client.pause(args.run_id)
    out(f"run {run.id} {run.status}" + (" (pause requested)" if run.pause_requested else ""))
    return EXIT_OK


def _runs_resume(client: Client, args: argparse.Namespace) -> int:
    run = client.resume(args.run_id)
    out(f"run {run.id} {run.status}")
    return EXIT_OK


def _runs_weights(client: Client, args: argparse.Namespace) -> int:
    weights = client.run_weights(args.run_id)
    if args.format == "json":
        text = json.dumps(weights.model_dump(mode="json"))
        if args.output is None:
            out(text)
        else:
            args.output.write_text(text + "\n")
            err(f"wrote {args.output} (epoch {weights.epoch})")
        return EXIT_OK
    output = args.output or Path(f"{args.run_id}.{args.format}")
    output.write_bytes(client.export(args.run_id, args.format))
    err(f"wrote {output} (epoch {weights.epoch}, {len(weights.layers)} layers)")
    return EXIT_OK


def _predict(client: Client, args: argparse.Namespace) -> int:
    rows = read_rows(args.input)
    prediction = client.predict(args.run_id, rows)
    fmt = args.format or (
        "csv" if args.output is not None and args.output.suffix.lower() == ".csv" else "json"
    )
    if fmt == "json":
        text = json.dumps(prediction.model_dump(mode="json")) + "\n"
    else:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        width = len(prediction.predictions[0]) if prediction.predictions else 0
        writer.writerow([f"output_{i}" for i in range(width)])
        writer.writerows(
            [["nan" if v is None else repr(v) for v in row] for row in prediction.predictions]
        )
        text = buffer.getvalue()
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text)
        err(f"wrote {args.output} ({len(prediction.predictions)} rows, epoch {prediction.epoch})")
    return EXIT_OK


# --------------------------------------------------------------------------- parser


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _connection_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("server")
    group.add_argument(
        "--server",
        default=os.environ.get("BACKPROP_URL", DEFAULT_URL),
        help="the server's URL (default: $BACKPROP_URL or %(default)s)",
    )
    group.add_argument(
        "--api-key",
        default=os.environ.get("BACKPROP_API_KEY"),
        help="bearer token (default: $BACKPROP_API_KEY)",
    )
    group.add_argument(
        "--timeout", type=float, default=30.0, help="seconds per request (default 30)"
    )
    return common


def _progress_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("progress")
    group.add_argument("--poll", type=float, default=0.5, help="seconds between polls (0.5)")
    group.add_argument(
        "--progress-every",
        type=float,
        default=2.0,
        help="without a terminal, print a progress line at most this often (2 s)",
    )
    return common


def add_client_commands(sub: Any) -> None:
    """Add ``train``, ``runs`` and ``predict`` to the ``backprop`` subcommands."""
    connection, progress = _connection_options(), _progress_options()

    train = sub.add_parser(
        "train",
        parents=[connection, progress],
        help="create a network, a dataset and a run on a server, and follow it",
        description="Create the network, the dataset and the run, show the progress, "
        "and print a summary. Exit 0 when the run succeeds, 1 when it fails or is cancelled.",
    )
    train.add_argument("network", type=Path, help="network spec JSON file (POST /v1/networks)")
    data = train.add_mutually_exclusive_group(required=True)
    data.add_argument(
        "--data", type=Path, help='CSV file (with --target) or JSON file {"X": ..., "y": ...}'
    )
    data.add_argument("--builtin", choices=BUILTINS, help="a built-in dataset")
    train.add_argument("--target", help="CSV target column(s), comma-separated")
    train.add_argument("--n-samples", type=int, help="moons/circles/spirals: samples")
    train.add_argument("--noise", type=float, help="moons/circles/spirals: noise")
    train.add_argument("--data-seed", type=int, help="moons/circles/spirals: seed of the data")
    train.add_argument(
        "--loss", default="mse", help="mse, binary_cross_entropy or cross_entropy (mse)"
    )
    train.add_argument("--optimizer", default="sgd", help="sgd or adam (sgd)")
    train.add_argument("--lr", type=float, help="learning rate (the optimizer's default)")
    train.add_argument("--epochs", type=_positive, default=1000, help="epochs (1000)")
    train.add_argument("--batch-size", type=_positive, help="mini-batch size (full batch)")
    train.add_argument("--seed", type=int, help="the run's seed (drawn when omitted)")
    train.add_argument(
        "--detach", action="store_true", help="print the run id and exit without following"
    )
    train.set_defaults(client_command=_train)

    runs = sub.add_parser(
        "runs", help="list, watch, cancel, pause, resume runs and export their weights"
    )
    runs_sub = runs.add_subparsers(dest="runs_command", required=True)
    listing = runs_sub.add_parser("list", parents=[connection], help="the newest runs")
    listing.add_argument(
        "--status", choices=("queued", "running", "paused", "succeeded", "failed", "cancelled")
    )
    listing.add_argument("--network", help="only runs of this network id")
    listing.add_argument("--dataset", help="only runs on this dataset id")
    listing.add_argument("--limit", type=_positive, default=20, help="how many (20, at most 100)")
    listing.add_argument("--json", action="store_true", help="the runs as JSON")
    listing.set_defaults(client_command=_runs_list)
    watch = runs_sub.add_parser(
        "watch",
        parents=[connection, progress],
        help="follow a run until it ends (exit 1 if it failed or was cancelled)",
    )
    watch.add_argument("run_id")
    watch.set_defaults(client_command=_runs_watch)
    cancel = runs_sub.add_parser("cancel", parents=[connection], help="cancel a run")
    cancel.add_argument("run_id")
    cancel.set_defaults(client_command=_runs_cancel)
    pause = runs_sub.add_parser("pause", parents=[connection], help="pause a run")
    pause.add_argument("run_id")
    pause.set_defaults(client_command=_runs_pause)
    resume = runs_sub.add_parser("resume", parents=[connection], help="resume a paused run")
    resume.add_argument("run_id")
    resume.set_defaults(client_command=_runs_resume)
    weights = runs_sub.add_parser(
        "weights", parents=[connection], help="export a run's weights as npz or JSON"
    )
    weights.add_argument("run_id")
    weights.add_argument("--format", choices=("json", "npz", "onnx"), default="json")
    weights.add_argument(
        "--output",
        type=Path,
        help="file to write (npz/onnx default: RUN_ID.npz / RUN_ID.onnx; json: stdout); npz and "
        "onnx are the server's GET /v1/runs/{id}/export files",
    )
    weights.set_defaults(client_command=_runs_weights)

    predict = sub.add_parser(
        "predict", parents=[connection], help="run inputs through a run's network"
    )
    predict.add_argument("run_id")
    predict.add_argument(
        "--input",
        type=Path,
        required=True,
        help='CSV rows of inputs (a header row is skipped) or JSON {"X": [[...]]}',
    )
    predict.add_argument("--output", type=Path, help="file to write (default: stdout)")
    predict.add_argument(
        "--format", choices=("json", "csv"), help="default: csv for an --output *.csv, else json"
    )
    predict.set_defaults(client_command=_predict)


def run_client_command(args: argparse.Namespace) -> int:
    """Run a client command; API errors become one line on stderr and an exit code."""
    handler: Handler = args.client_command
    try:
        with Client(args.server, api_key=args.api_key, timeout=args.timeout) as client:
            return handler(client, args)
    except UsageError as exc:
        err(f"error: {exc}")
        return EXIT_USAGE
    except (BackpropConnectionError, ServerError) as exc:
        err(f"error: {exc}")
        return EXIT_UNAVAILABLE
    except BackpropError as exc:
        err(f"error: {exc}")
        return EXIT_USAGE
    except KeyboardInterrupt:
        err("interrupted")
        return EXIT_INTERRUPTED
