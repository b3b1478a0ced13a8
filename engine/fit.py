"""Training: :func:`fit` runs epochs of mini-batch backpropagation on a :class:`Network`."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from engine.callbacks import Callback
from engine.checkpoint import STATE_FORMAT, TrainingState, rng_state_from_json, rng_state_to_json
from engine.config import FitConfig
from engine.data import Dataset, check_compatible, prepare, split_validation
from engine.errors import ConfigError
from engine.losses import LOSSES
from engine.network import Network, as_float_dtype, draw_seed
from engine.optimizers import make_optimizer

logger = logging.getLogger(__name__)

Array = NDArray[np.floating]


@dataclass
class FitResult:
    """What :func:`fit` returns.

    Attributes
    ----------
    history : dict of str to list
        Equal-length columns: ``epoch``, ``loss``, ``val_loss`` (None without
        validation) and metrics (``accuracy``, ``val_accuracy``).
    stop_reason : str
        ``completed``, ``early_stopping``, ``diverged``, or the reason a
        callback gave to :meth:`Trainer.stop` (the service uses ``cancelled``).
    epochs_run : int
        The last epoch completed, counting from 1 (across resumes).
    """

    history: dict[str, list[Any]]
    stop_reason: str
    epochs_run: int
    seed: int
    message: str | None = None
    final_logs: dict[str, float | None] = field(default_factory=dict)
    best_value: float | None = None
    best_epoch: int | None = None


class Trainer:
    """One training run: data, optimizer, shuffling generator, early stopping, callbacks.

    Build it through :func:`fit`; callbacks receive it and may call :meth:`stop`
    and :meth:`state`.
    """

    def __init__(
        self,
        network: Network,
        X: ArrayLike,
        y: ArrayLike,
        config: Mapping[str, Any] | FitConfig,
        callbacks: Sequence[Callback] = (),
        validation_data: tuple[ArrayLike, ArrayLike] | None = None,
        initial_state: TrainingState | None = None,
    ) -> None:
        cfg = FitConfig.from_dict(config)
        check_compatible(network, cfg)
        seed = self._choose_seed(cfg, initial_state)
        self.config = cfg.with_seed(seed)
        self.network = network
        self.loss = LOSSES[cfg.loss]
        split_rng, self.shuffle_rng = np.random.default_rng(seed).spawn(2)
        self.train, self.val = self._datasets(X, y, validation_data, split_rng)
        dtype = as_float_dtype(cfg.dtype)
        self.optimizer = make_optimizer(cfg.optimizer, network.n_parameters, dtype)
        if initial_state is not None:
            self._check_state(initial_state)
        # Everything is validated: only now may the network change (a ConfigError
        # must leave the caller's network exactly as it was).
        network.astype(dtype)
        self.callbacks = tuple(callbacks)
        self.epoch = 0
        self.best_value: float | None = None
        self.best_epoch: int | None = None
        self.wait = 0
        self.best_params: Array | None = None
        self.history: dict[str, list[Any]] = {key: [] for key in self._history_keys()}
        self._stop_reason: str | None = None
        self._batches: dict[int, Dataset] = {}  # shuffled batches are gathered here, by size
        if initial_state is not None:
            self._restore(initial_state)

    # -- setup --------------------------------------------------------------------------

    @staticmethod
    def _choose_seed(cfg: FitConfig, state: TrainingState | None) -> int:
        if state is not None:
            state_seed = int(state.meta["seed"])
            if cfg.seed is not None and cfg.seed != state_seed:
                raise ConfigError(
                    ("seed",),
                    f"is {cfg.seed} but the checkpoint was trained "
                    f"with seed {state_seed}; resume with the same seed",
                )
            return state_seed
        return draw_seed() if cfg.seed is None else cfg.seed

    def _datasets(
        self,
        X: ArrayLike,
        y: ArrayLike,
        validation_data: tuple[ArrayLike, ArrayLike] | None,
        split_rng: np.random.Generator,
    ) -> tuple[Dataset, Dataset | None]:
        cfg = self.config
        data = prepare(self.network, cfg, X, y)
        validation = cfg.validation
        if validation is None:
            if validation_data is not None:
                return data, prepare(self.network, cfg, *validation_data, prefix=("validation",))
            return data, None
        if validation.fraction is not None:
            return split_validation(data, validation.fraction, split_rng)
        if validation_data is None:
            raise ConfigError(
                ("validation", "dataset_id"), "the validation dataset's arrays were not supplied"
            )
        return data, prepare(self.network, cfg, *validation_data, prefix=("validation",))

    def _history_keys(self) -> list[str]:
        keys = ["epoch", "loss", "val_loss"]
        if self.loss.is_classification:
            keys += ["accuracy", "val_accuracy"]
        return keys

    # -- public -------------------------------------------------------------------------

    def stop(self, reason: str = "cancelled") -> None:
        """Ask training to stop at the end of the current epoch with ``reason``."""
        self._stop_reason = reason

    def state(self, include_history: bool = False) -> TrainingState:
        """Everything needed to continue exactly from the current epoch.

        Parameters
        ----------
        include_history : bool
            Also store the history so far, so that a resumed :func:`fit`
            returns the whole history rather than the epochs after the state.
        """
        opt_arrays, opt_meta = self.optimizer.state()
        arrays: dict[str, NDArray[Any]] = {"params": self.network.params.copy()}
        arrays.update({f"optimizer.{k}": v for k, v in opt_arrays.items()})
        if self.best_params is not None:
            arrays["best_params"] = self.best_params.copy()
        if include_history:
            for key, column in self.history.items():
                values = [math.nan if v is None else v for v in column]
                arrays[f"history.{key}"] = np.asarray(
                    values, dtype=np.int64 if key == "epoch" else np.float64
                )
        meta = {
            "format": STATE_FORMAT,
            "epoch": self.epoch,
            "seed": self.config.seed,
            "rng": rng_state_to_json(dict(self.shuffle_rng.bit_generator.state)),
            "optimizer": {"name": self.config.optimizer.name, **opt_meta},
            "best": {"value": self.best_value, "epoch": self.best_epoch, "wait": self.wait},
            "dtype": self.config.dtype,
            "n_parameters": self.network.n_parameters,
            "has_history": include_history,
            "layout": network_layout(self.network),
            "config": resumable_config(self.config),
        }
        return TrainingState(arrays=arrays, meta=meta)

    def _check_state(self, state: TrainingState) -> None:
        """Raise :class:`ConfigError` unless ``state`` can continue this run."""
        meta = state.meta
        if meta.get("format") != STATE_FORMAT:
            raise ConfigError(
                ("initial_state",), f"unsupported checkpoint format {meta.get('format')!r}"
            )
        if int(meta["n_parameters"]) != self.network.n_parameters:
            raise ConfigError(
                ("initial_state",),
                f"the checkpoint has {meta['n_parameters']} "
                f"parameters but the network has {self.network.n_parameters}",
            )
        if meta["optimizer"]["name"] != self.config.optimizer.name:
            raise ConfigError(
                ("optimizer", "name"),
                f"differs from the checkpoint's optimizer {meta['optimizer']['name']!r}",
            )
        if meta["dtype"] != self.config.dtype:
            raise ConfigError(("dtype",), f"differs from the checkpoint's dtype {meta['dtype']!r}")
        self._check_same_run(meta)
        needed = set(self.optimizer.state()[0])
        stored = {k.removeprefix("optimizer.") for k in state.arrays if k.startswith("optimizer.")}
        if needed != stored:
            raise ConfigError(
                ("optimizer",),
                f"keeps state {sorted(needed)} but the checkpoint has {sorted(stored)}; "
                "resume with the optimizer settings it was trained with (e.g. the same momentum)",
            )

    def _check_same_run(self, meta: Mapping[str, Any]) -> None:
        """The network layout and every training setting but ``epochs`` must match."""
        layout = meta.get("layout")
        if layout is not None and layout != network_layout(self.network):
            raise ConfigError(
                ("initial_state",),
                f"the checkpoint was trained on a network with layout {layout}, not "
                f"{network_layout(self.network)}",
            )
        stored = meta.get("config")
        if stored is None:
            return
        current = resumable_config(self.config)
        for key, value in current.items():
            if stored.get(key) != value:
                raise ConfigError(
                    (key,),
                    f"is {value!r} but the checkpoint was trained with {stored.get(key)!r}; "
                    "resume with the same settings (only epochs may change)",
                )

    def _restore(self, state: TrainingState) -> None:
        meta = state.meta
        self.network.params[...] = state.arrays["params"]
        self.optimizer.load_state(
            {
                k.removeprefix("optimizer."): v
                for k, v in state.arrays.items()
                if k.startswith("optimizer.")
            },
            meta["optimizer"],
        )
        self.shuffle_rng.bit_generator.state = rng_state_from_json(meta["rng"])
        self.epoch = int(meta["epoch"])
        best = meta["best"]
        self.best_value = best["value"]
        self.best_epoch = best["epoch"]
        self.wait = int(best["wait"])
        if "best_params" in state.arrays:
            self.best_params = np.array(state.arrays["best_params"], dtype=self.network.dtype)
        if meta.get("has_history"):
            for key in self.history:
                column = state.arrays[f"history.{key}"].tolist()
                self.history[key] = (
                    [int(v) for v in column]
                    if key == "epoch"
                    else [None if math.isnan(v) else v for v in column]
                )

    # -- the loop -----------------------------------------------------------------------

    def run(self) -> FitResult:
        """Train until ``epochs``, early stopping, divergence or a callback's stop."""
        for callback in self.callbacks:
            callback.on_train_begin(self)
        with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
            stop_reason, message, last_logs = self._epochs()
        if stop_reason in ("completed", "early_stopping"):
            self._restore_best()
        history = {key: list(column) for key, column in self.history.items()}
        if last_logs is not None and (not history["epoch"] or history["epoch"][-1] != self.epoch):
            self._append(history, self.epoch, last_logs)
        result = FitResult(
            history=history,
            stop_reason=stop_reason,
            epochs_run=self.epoch,
            seed=int(self.config.seed or 0),
            message=message,
            final_logs=last_logs or {},
            best_value=self.best_value,
            best_epoch=self.best_epoch,
        )
        for callback in self.callbacks:
            callback.on_train_end(self, result)
        return result

    def _epochs(self) -> tuple[str, str | None, dict[str, float | None] | None]:
        """Run the remaining epochs; return (stop_reason, message, logs of the last epoch).

        When the loss is the only log (no validation, no metrics), the history
        is recorded with pre-bound appends and, without early stopping or
        callbacks, no logs dict is built at all: a tiny network then trains as
        fast as the hand-written loop, and a callback costs only its own call.
        """
        cfg, params, callbacks = self.config, self.network.params, self.callbacks
        every, early = cfg.history_every, cfg.early_stopping
        train_epoch = self._full_batch_epoch() if self._is_full_batch() else self._minibatch_epoch
        loss_only = self.val is None and not self.loss.is_classification
        append_epoch, append_loss, append_val = (
            self.history[k].append for k in ("epoch", "loss", "val_loss")
        )
        best = math.inf if self.best_value is None else self.best_value
        # The weights at the start of this epoch and of the one before: an update can
        # overflow the weights while its loss (computed before it) is still finite.
        snapshots = (np.empty_like(params), np.empty_like(params))
        first = self.epoch + 1
        last_loss: float | None = None
        last_logs: dict[str, float | None] | None = None
        for epoch in range(first, cfg.epochs + 1):
            snapshot = snapshots[epoch & 1]
            snapshot[...] = params
            loss, correct = train_epoch()
            if not math.isfinite(loss):
                params[...] = snapshot
                message = self._divergence_message(epoch)
                if epoch > first and not np.isfinite(params).all():
                    params[...] = snapshots[(epoch - 1) & 1]
                    message = self._divergence_message(epoch, overflowed=epoch - 1)
                if loss_only and last_loss is not None:
                    last_logs = {"loss": last_loss, "val_loss": None}
                return "diverged", message, last_logs
            self.epoch = epoch
            recorded = epoch % every == 0
            if loss_only:
                last_loss = loss
                if recorded:
                    append_epoch(epoch)
                    append_loss(loss)
                    append_val(None)
                if early is None:
                    if loss < best:
                        best = self.best_value = loss
                        self.best_epoch = epoch
                    if not callbacks:
                        continue
                logs = last_logs = {"loss": loss, "val_loss": None}
            else:
                logs = last_logs = self._logs(loss, correct)
                if recorded:
                    self._append(self.history, epoch, logs)
            if (early is not None or not loss_only) and self._early_stopping(epoch, logs):
                self._stop_reason = self._stop_reason or "early_stopping"
            for callback in callbacks:
                callback.on_epoch_end(self, epoch, logs, recorded)
            if self._stop_reason is not None:
                return self._unless_overflowed(self._stop_reason, snapshot, last_logs)
        if loss_only and last_loss is not None:
            last_logs = {"loss": last_loss, "val_loss": None}
        if self.epoch < first:
            return "completed", None, last_logs
        return self._unless_overflowed("completed", snapshots[self.epoch & 1], last_logs)

    def _unless_overflowed(
        self, reason: str, snapshot: Array, logs: dict[str, float | None] | None
    ) -> tuple[str, str | None, dict[str, float | None] | None]:
        """``(reason, None, logs)``, or ``diverged`` if the last update overflowed the weights.

        ``snapshot`` holds the weights at the start of the last epoch run.
        """
        params = self.network.params
        if np.isfinite(params).all():
            return reason, None, logs
        params[...] = snapshot
        return "diverged", self._divergence_message(None, overflowed=self.epoch), logs

    def _is_full_batch(self) -> bool:
        size = self.config.batch_size
        return size is None or size >= self.train.n_samples

    def _full_batch_epoch(self) -> Callable[[], tuple[float, int]]:
        """A closure that runs one full-batch epoch: forward, loss, backward, one update.

        Full-batch epochs never shuffle: a permutation of the whole batch is the
        same update, and keeping the order reproduces hand-written loops bit for bit.
        """
        data, network, loss_fn, reduction = (
            self.train,
            self.network,
            self.loss,
            self.config.reduction,
        )
        X, Y, labels = data.X, data.Y, data.labels
        plan = network.plan(data.n_samples)
        out = plan.spaces[-1]
        activation = network.layers[-1].activation
        forward, backward = plan.forward, plan.backward
        value_and_delta, step = loss_fn.value_and_delta, self.optimizer.step
        params, grads = network.params, network.grads
        count_correct = loss_fn.is_classification
        correct_fn = self._correct

        def epoch() -> tuple[float, int]:
            A = forward(X)
            loss, dZ = value_and_delta(out.Z, A, Y, reduction, activation, out.dA, out.work)
            correct = correct_fn(A, Y, labels) if count_correct else 0
            if loss - loss == 0.0:  # finite (inf - inf and nan - nan are nan), no call
                backward(dZ)
                step(params, grads)
            return loss, correct

        return epoch

    def _minibatch_epoch(self) -> tuple[float, int]:
        """One pass over shuffled (or ordered) mini-batches; one update per batch.

        Returns the epoch loss, the sample-weighted mean of the batch losses
        (``mean``) or their sum (``sum``), and the count of correct predictions.
        A non-finite batch loss ends the epoch before its update is applied.
        """
        data, cfg, network, loss_fn = self.train, self.config, self.network, self.loss
        n = data.n_samples
        batch = n if cfg.batch_size is None else min(cfg.batch_size, n)
        optimizer, params, grads = self.optimizer, network.params, network.grads
        activation = network.layers[-1].activation
        reduction = cfg.reduction
        count_correct = self.loss.is_classification
        order = self.shuffle_rng.permutation(n) if cfg.shuffle else None
        total, correct = 0.0, 0
        for start in range(0, n, batch):
            stop = min(start + batch, n)
            Xb, Yb, labels = self._batch(order, start, stop)
            plan = network.plan(stop - start)
            A = plan.forward(Xb)
            out = plan.spaces[-1]
            loss, dZ = loss_fn.value_and_delta(
                out.Z, A, Yb, reduction, activation, out.dA, out.work
            )
            if not math.isfinite(loss):
                return loss, correct
            if count_correct:
                correct += self._correct(A, Yb, labels)
            plan.backward(dZ)
            optimizer.step(params, grads)
            total += loss * (stop - start) if reduction == "mean" else loss
        return (total / n if reduction == "mean" else total), correct

    def _batch(
        self,
        order: NDArray[np.intp] | None,
        start: int,
        stop: int,
    ) -> tuple[Array, Array, NDArray[np.intp] | None]:
        """The training samples ``order[start:stop]`` (or ``start:stop`` without shuffling).

        Returns ``X`` (batch, n_features), ``Y`` (batch, n_outputs) and the labels
        (batch,) or None: views when unshuffled, else gathered into arrays that are
        allocated once per batch size and overwritten by the next batch.
        """
        data = self.train
        if order is None:
            labels = None if data.labels is None else data.labels[start:stop]
            return data.X[start:stop], data.Y[start:stop], labels
        index = order[start:stop]
        out = self._batches.get(stop - start)
        if out is None:
            out = self._batches[stop - start] = data.empty(stop - start)
        data.take(index, out)
        return out.X, out.Y, out.labels

    @staticmethod
    def _correct(A: Array, Y: Array, labels: NDArray[np.intp] | None) -> int:
        if labels is not None:
            return int(np.count_nonzero(A.argmax(axis=1) == labels))
        return int(np.count_nonzero((A > 0.5) == (Y > 0.5)))

    def _logs(self, loss: float, correct: int) -> dict[str, float | None]:
        logs: dict[str, float | None] = {"loss": loss, "val_loss": None}
        classification = self.loss.is_classification
        if classification:
            logs["accuracy"] = (
                correct / self.train.Y.size
                if self.train.labels is None
                else correct / self.train.n_samples
            )
            logs["val_accuracy"] = None
        if self.val is not None:
            Z, A = self.network.forward(self.val.X)
            logs["val_loss"] = self.loss.value(Z, A, self.val.Y, self.config.reduction)
            if classification:
                correct_val = self._correct(A, self.val.Y, self.val.labels)
                logs["val_accuracy"] = correct_val / (
                    self.val.n_samples if self.val.labels is not None else self.val.Y.size
                )
        return logs

    @staticmethod
    def _append(
        history: dict[str, list[Any]], epoch: int, logs: Mapping[str, float | None]
    ) -> None:
        history["epoch"].append(epoch)
        for key, column in history.items():
            if key != "epoch":
                column.append(logs.get(key))

    def _early_stopping(self, epoch: int, logs: Mapping[str, float | None]) -> bool:
        """Track the best monitored value; return True when patience has run out."""
        early = self.config.early_stopping
        monitor = (
            early.monitor if early is not None else ("val_loss" if self.val is not None else "loss")
        )
        value = logs[monitor]
        if value is None:
            return False
        min_delta = early.min_delta if early is not None else 0.0
        if self.best_value is None or value < self.best_value - min_delta:
            self.best_value, self.best_epoch, self.wait = value, epoch, 0
            if early is not None and early.restore_best:
                if self.best_params is None:
                    self.best_params = self.network.params.copy()
                else:
                    np.copyto(self.best_params, self.network.params)
            return False
        self.wait += 1
        return early is not None and self.wait >= early.patience

    def _restore_best(self) -> None:
        early = self.config.early_stopping
        if early is not None and early.restore_best and self.best_params is not None:
            self.network.params[...] = self.best_params

    def _divergence_message(self, epoch: int | None, overflowed: int | None = None) -> str:
        """Say where the loss (``epoch``) or the weights (``overflowed``) became non-finite."""
        lr = self.config.optimizer.learning_rate
        parts = []
        if epoch is not None:
            parts.append(f"the loss became NaN or infinite in epoch {epoch}")
        if overflowed is not None:
            parts.append(f"the update of epoch {overflowed} made the weights NaN or infinite")
        bad = overflowed if overflowed is not None else epoch
        kept = 0 if bad is None else bad - 1
        return (
            f"{'; '.join(parts)}; the weights are those after epoch {kept}. "
            f"Try a smaller learning_rate (e.g. {lr / 10:g})."
        )


def network_layout(network: Network) -> dict[str, Any]:
    """The input size and layers of ``network`` (what a checkpoint's weights assume)."""
    spec = network.spec
    return {"input_size": spec["input_size"], "layers": spec["layers"]}


def resumable_config(config: FitConfig) -> dict[str, Any]:
    """The training settings a resumed run must share with its checkpoint (all but epochs)."""
    settings = config.to_dict()
    del settings["epochs"]
    return settings


def fit(
    network: Network,
    X: ArrayLike,
    y: ArrayLike,
    config: Mapping[str, Any] | FitConfig,
    callbacks: Sequence[Callback] = (),
    validation_data: tuple[ArrayLike, ArrayLike] | None = None,
    initial_state: TrainingState | None = None,
) -> FitResult:
    """Train ``network`` in place.

    Parameters
    ----------
    network : Network
        Trained in place; its parameters take the config's ``dtype``.
    X : array-like of shape (n_samples, input_size)
    y : array-like of shape (n_samples, n_outputs) or (n_samples,)
        Targets; 1-D integer class labels for ``cross_entropy``.
    config : dict or FitConfig
        The training fields of a run (see :class:`FitConfig`).
    callbacks : sequence of Callback
        Called at epoch boundaries.
    validation_data : (X_val, y_val), optional
        A separate validation set (for ``validation: {"dataset_id": ...}``).
    initial_state : TrainingState, optional
        A checkpoint to continue from exactly.

    Returns
    -------
    FitResult

    Raises
    ------
    ConfigError
        If the config, the data, or their combination with the network is invalid.
    """
    trainer = Trainer(network, X, y, config, callbacks, validation_data, initial_state)
    return trainer.run()
