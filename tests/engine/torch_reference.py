"""The usual PyTorch training loop, run next to ``engine.fit`` on the same data, batches and masks.

``run_engine`` trains with a :class:`engine.Trainer` while recording the order of
its shuffled mini-batches and the dropout noise of every batch; ``run_torch``
trains an equivalent ``torch.nn.Sequential`` with those batches and that noise,
with ``torch.optim``, ``torch.optim.lr_scheduler``, ``torch.nn.utils.clip_grad_*``
and the ``torch.nn`` losses, stepping as a PyTorch user would: ``scheduler.step()``
after each epoch (``step(val_loss)`` for plateau; after each batch for onecycle).
Only importable when torch is installed.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

import engine
from engine.data import Dataset
from engine.layers import Dense

Array = NDArray[Any]

ACTIVATIONS: dict[str, Any] = {
    "identity": lambda layer: torch.nn.Identity(),
    "sigmoid": lambda layer: torch.nn.Sigmoid(),
    "tanh": lambda layer: torch.nn.Tanh(),
    "relu": lambda layer: torch.nn.ReLU(),
    "leaky_relu": lambda layer: torch.nn.LeakyReLU(layer.get("negative_slope", 0.01)),
    "softmax": lambda layer: torch.nn.Softmax(dim=1),
    "gelu": lambda layer: torch.nn.GELU(),
    "gelu_tanh": lambda layer: torch.nn.GELU(approximate="tanh"),
    "elu": lambda layer: torch.nn.ELU(),
    "selu": lambda layer: torch.nn.SELU(),
    "softplus": lambda layer: torch.nn.Softplus(),
    "silu": lambda layer: torch.nn.SiLU(),
}


@dataclass
class Recording:
    """What the engine did: the batches of every epoch and the dropout noise of every layer."""

    batches: list[Array] = field(default_factory=list)
    noise: list[Array] = field(default_factory=list)


class ReplayDropout(torch.nn.Module):
    """``torch.nn.Dropout``'s ``input * noise``, with the engine's noise, in training only."""

    def __init__(self, noise: Iterator[Array]) -> None:
        super().__init__()
        self.noise = noise

    def forward(self, x: Any) -> Any:
        if not self.training:
            return x
        return x * torch.from_numpy(next(self.noise))


def with_biases(spec: dict[str, Any], seed: int = 3) -> engine.Network:
    """The network of ``spec`` with non-zero biases, so their updates are compared too."""
    net = engine.Network.from_spec(spec)
    rng = np.random.default_rng(seed)
    weights = net.get_weights()
    for layer in weights:
        if layer["bias"] is not None:
            layer["bias"] = rng.normal(scale=0.3, size=layer["bias"].shape)
    net.set_weights(weights)
    return net


def run_engine(
    net: engine.Network, X: Array, y: Array, config: dict[str, Any], monkeypatch: Any
) -> tuple[engine.Trainer, engine.FitResult, Recording]:
    """Train ``net`` in place, recording its batches and dropout noise."""
    recording = Recording()
    take, drop = Dataset.take, Dense.drop

    def recording_take(self: Dataset, index: Any, out: Dataset) -> Dataset:
        recording.batches.append(np.array(index))
        return take(self, index, out)

    def recording_drop(self: Dense, A: Any, buffers: Any, rng: Any) -> Any:
        result = drop(self, A, buffers, rng)
        recording.noise.append(buffers.noise.copy())
        return result

    monkeypatch.setattr(Dataset, "take", recording_take)
    monkeypatch.setattr(Dense, "drop", recording_drop)
    trainer = engine.Trainer(net, X, y, config)
    result = trainer.run()
    monkeypatch.setattr(Dataset, "take", take)
    monkeypatch.setattr(Dense, "drop", drop)
    return trainer, result, recording


def logits_loss(config: dict[str, Any]) -> bool:
    """Whether the torch loss takes the last layer's pre-activations (the model omits it)."""
    loss = config.get("loss", "mse")
    options = config.get("loss_options") or {}
    return loss == "cross_entropy" or (
        loss == "binary_cross_entropy" and options.get("pos_weight") is not None
    )


def torch_model(
    net: engine.Network, config: dict[str, Any], dtype: Any, noise: Iterator[Array]
) -> Any:
    """A ``Sequential`` with ``net``'s current weights, activations and dropout."""
    layers = net.spec["layers"]
    modules: list[Any] = []
    for index, (layer, values) in enumerate(zip(layers, net.get_weights(), strict=True)):
        W, b = values["weights"], values["bias"]
        assert W is not None
        linear = torch.nn.Linear(*W.shape, bias=b is not None, dtype=dtype)
        with torch.no_grad():
            linear.weight.copy_(torch.tensor(W.T))
            if b is not None:
                linear.bias.copy_(torch.tensor(b))
        modules.append(linear)
        if not (index == len(layers) - 1 and logits_loss(config)):
            modules.append(ACTIVATIONS[layer["activation"]](layer))
        if layer.get("dropout"):
            modules.append(ReplayDropout(noise))
    return torch.nn.Sequential(*modules)


def torch_optimizer(config: dict[str, Any], parameters: Any) -> Any:
    options = {k: v for k, v in config.items() if k not in ("name", "learning_rate")}
    name, lr = config["name"], config.get("learning_rate")
    if name in ("adam", "adamw"):
        options["betas"] = (options.pop("beta1", 0.9), options.pop("beta2", 0.999))
    classes = {
        "sgd": (torch.optim.SGD, 0.001),
        "adam": (torch.optim.Adam, 0.001),
        "adamw": (torch.optim.AdamW, 0.001),
        "rmsprop": (torch.optim.RMSprop, 0.01),
        "adagrad": (torch.optim.Adagrad, 0.01),
    }
    cls, default_lr = classes[name]
    return cls(parameters, lr=default_lr if lr is None else lr, foreach=False, **options)


def torch_scheduler(config: dict[str, Any] | None, optimizer: Any, total_steps: int) -> Any:
    if config is None:
        return None
    options = {k: v for k, v in config.items() if k != "name"}
    scheduler = torch.optim.lr_scheduler
    name = config["name"]
    if name == "step":
        return scheduler.StepLR(optimizer, **options)
    if name == "multistep":
        return scheduler.MultiStepLR(optimizer, **options)
    if name == "exponential":
        return scheduler.ExponentialLR(optimizer, **options)
    if name == "cosine":
        return scheduler.CosineAnnealingLR(
            optimizer, T_max=options["t_max"], eta_min=options.get("eta_min", 0.0)
        )
    if name == "linear":
        return scheduler.LinearLR(optimizer, **options)
    if name == "onecycle":
        return scheduler.OneCycleLR(
            optimizer,
            max_lr=options.pop("max_learning_rate"),
            total_steps=total_steps,
            cycle_momentum=False,
            **options,
        )
    options.pop("monitor", None)
    return scheduler.ReduceLROnPlateau(optimizer, **options)


def torch_loss(config: dict[str, Any], dtype: Any) -> Any:
    loss, reduction = config.get("loss", "mse"), config.get("reduction", "mean")
    options = dict(config.get("loss_options") or {})
    nn = torch.nn
    if loss == "cross_entropy":
        weights = options.get("class_weights")
        return nn.CrossEntropyLoss(
            weight=None if weights is None else torch.tensor(weights, dtype=dtype),
            label_smoothing=options.get("label_smoothing", 0.0),
            reduction=reduction,
        )
    if loss == "binary_cross_entropy":
        pos_weight = options.get("pos_weight")
        if pos_weight is None:
            return nn.BCELoss(reduction=reduction)
        return nn.BCEWithLogitsLoss(
            pos_weight=torch.tensor(pos_weight, dtype=dtype), reduction=reduction
        )
    if loss == "huber":
        return nn.HuberLoss(reduction=reduction, **options)
    if loss == "smooth_l1":
        return nn.SmoothL1Loss(reduction=reduction, **options)
    return {"mse": nn.MSELoss, "l1": nn.L1Loss}[loss](reduction=reduction)


def clip(config: dict[str, Any] | None, parameters: Any) -> None:
    if config is None:
        return
    if "value" in config:
        torch.nn.utils.clip_grad_value_(parameters, config["value"])
        return
    norm_type = config.get("norm_type", 2.0)
    torch.nn.utils.clip_grad_norm_(
        parameters, config["max_norm"], norm_type=math.inf if norm_type == "inf" else norm_type
    )


def targets(data: Dataset, config: dict[str, Any], dtype: Any) -> Any:
    """Class indices for cross_entropy on labels (PyTorch's class-index targets), else Y."""
    if config.get("loss") == "cross_entropy" and data.from_labels:
        assert data.labels is not None
        return torch.tensor(data.labels, dtype=torch.long)
    return torch.tensor(data.Y, dtype=dtype)


@dataclass
class TorchRun:
    """The torch loop's final weights (fan_in, units) and biases, and its per-epoch logs."""

    layers: list[Array]
    loss: list[float]
    val_loss: list[float | None]
    lr: list[float]


def run_torch(
    model: Any,
    trainer: engine.Trainer,
    config: dict[str, Any],
    recording: Recording,
    dtype: Any,
) -> TorchRun:
    """Train ``model`` on the engine's split, batches and noise, as a PyTorch user would."""
    train, val = trainer.train, trainer.val
    epochs = config["epochs"]
    n = train.n_samples
    per_epoch = len(recording.batches) // epochs
    assert per_epoch * epochs == len(recording.batches), "every epoch had the same batches"
    reduction = config.get("reduction", "mean")
    optimizer = torch_optimizer(config["optimizer"], model.parameters())
    schedule = config.get("lr_schedule")
    scheduler = torch_scheduler(schedule, optimizer, epochs * per_epoch)
    name = None if schedule is None else schedule["name"]
    criterion = torch_loss(config, dtype)
    X, Y = torch.tensor(train.X, dtype=dtype), targets(train, config, dtype)
    run = TorchRun([], [], [], [])
    for epoch in range(epochs):
        model.train()
        run.lr.append(optimizer.param_groups[0]["lr"])
        total = 0.0
        for index in recording.batches[epoch * per_epoch : (epoch + 1) * per_epoch]:
            rows = torch.from_numpy(index)
            optimizer.zero_grad()
            value = criterion(model(X[rows]), Y[rows])
            value.backward()
            clip(config.get("grad_clip"), model.parameters())
            optimizer.step()
            if name == "onecycle":
                scheduler.step()
            total += value.item() * (len(index) if reduction == "mean" else 1)
        run.loss.append(total / n if reduction == "mean" else total)
        val_loss = None
        if val is not None:
            model.eval()
            with torch.no_grad():
                val_loss = criterion(
                    model(torch.tensor(val.X, dtype=dtype)), targets(val, config, dtype)
                ).item()
        run.val_loss.append(val_loss)
        if name == "plateau":
            scheduler.step(
                val_loss if schedule.get("monitor", "val_loss") == "val_loss" else run.loss[-1]
            )  # type: ignore[union-attr]
        elif scheduler is not None and name != "onecycle":
            scheduler.step()
    for module in model:
        if isinstance(module, torch.nn.Linear):
            run.layers.append(module.weight.detach().numpy().T)
            if module.bias is not None:
                run.layers.append(module.bias.detach().numpy())
    return run


def relative_error(net: engine.Network, torch_layers: list[Array]) -> float:
    """The largest ``max|a - b| / max|b|`` over the weight matrices and bias vectors."""
    ours: list[Array] = []
    for layer in net.get_weights():
        ours.append(np.asarray(layer["weights"]))
        if layer["bias"] is not None:
            ours.append(np.asarray(layer["bias"]))
    return max(
        float(np.abs(a - b).max() / np.abs(b).max())
        for a, b in zip(ours, torch_layers, strict=True)
    )
