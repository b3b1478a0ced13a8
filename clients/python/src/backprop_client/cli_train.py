"""``backprop train``: create a dataset, a network and a run; follow the run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from backprop_client.cli_common import (
    BUILTINS,
    EXIT_OK,
    Output,
    connection_options,
    progress_options,
    run_command,
)
from backprop_client.cli_files import UsageError, read_dataset_json, read_network_spec
from backprop_client.cli_follow import follow
from backprop_client.client import Client
from backprop_client.errors import BackpropError
from backprop_client.models import Dataset, Network, Run


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
