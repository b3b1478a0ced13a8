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
from engine.checkpoint import TrainingState
from engine.clipping import make_clip
from engine.config import FitConfig
from engine.data import Dataset, check_compatible, prepare, split_validation
from engine.errors import ConfigError
from engine.history import history_interval
from engine.losses import make_loss
from engine.metrics import MetricTracker
from engine.network import Network, as_float_dtype, draw_seed
from engine.optimizers import make_optimizer
from engine.resume import check_state, restore, trainer_state
from engine.schedules import make_schedule

logger = logging.getLogger(__name__)

Array = NDArray[np.floating]


@dataclass
class FitResult:
    """What :func:`fit` returns.

    Attributes
    ----------
    history : dict of str to list
        Equal-length columns: ``epoch``, ``loss``, ``val_loss`` (None without
        validation), each metric and its ``val_`` twin (``accuracy``,
        ``val_accuracy`` by default for classification), and ``lr`` (the learning
        rate at the epoch's first update) when there is an ``lr_schedule``.
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
        split_rng, self.shuffle_rng, self.dropout_rng = np.random.default_rng(seed).spawn(3)
        self.train, self.val = self._datasets(X, y, validation_data, split_rng)
        self.loss = make_loss(cfg.loss, cfg.loss_options, self.train.from_labels)
        self.val_loss_fn = (
            self.loss
            if self.val is None
            else make_loss(cfg.loss, cfg.loss_options, self.val.from_labels)
        )
        dtype = as_float_dtype(cfg.dtype)
        self.optimizer = make_optimizer(cfg.optimizer, network.n_parameters, dtype)
        self.schedule = make_schedule(
            cfg.lr_schedule, self.optimizer, cfg.epochs * self._batches_per_epoch()
        )
        self.clip = make_clip(cfg.grad_clip, network.n_parameters, dtype)
        self.metrics = self._trackers()
        if initial_state is not None:
            check_state(self, initial_state)
        # Everything is validated: only now may the network change (a ConfigError
        # must leave the caller's network exactly as it was).
        network.astype(dtype)
        network.dropout_rng = self.dropout_rng if network.has_dropout else None
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
            restore(self, initial_state)

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

    def _batch_size(self) -> int:
        size, n = self.config.batch_size, self.train.n_samples
        return n if size is None else min(size, n)

    def _batches_per_epoch(self) -> int:
        return -(-self.train.n_samples // self._batch_size())

    def _trackers(self) -> tuple[MetricTracker, MetricTracker | None] | None:
        """Metric accumulators for the training and the validation data (None: no metrics)."""
        names = self.config.metrics
        if not names:
            return None
        outputs = self.network.output_size
        val = None if self.val is None else MetricTracker(names, outputs, self.val.Y)
        return MetricTracker(names, outputs, self.train.Y), val

    def _history_keys(self) -> list[str]:
        keys = ["epoch", "loss", "val_loss"]
        for name in self.config.metrics:
            keys += [name, f"val_{name}"]
        if self.schedule is not None:
            keys.append("lr")
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
        return trainer_state(self, include_history)

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

        When the loss is the only log (no validation, metrics or schedule), the history
        is recorded with pre-bound appends and, without early stopping or
        callbacks, no logs dict is built at all: a tiny network then trains as
        fast as the hand-written loop, and a callback costs only its own call.
        """
        cfg, params, callbacks = self.config, self.network.params, self.callbacks
        early, optimizer, schedule = cfg.early_stopping, self.optimizer, self.schedule
        train_epoch = self._full_batch_epoch() if self._is_full_batch() else self._minibatch_epoch
        tracker = None if self.metrics is None else self.metrics[0]
        loss_only = self.val is None and tracker is None and schedule is None
        append_epoch, append_loss, append_val = (
            self.history[k].append for k in ("epoch", "loss", "val_loss")
        )
        best = math.inf if self.best_value is None else self.best_value
        # The weights at the start of this epoch and of the one before: an update can
        # overflow the weights while its loss (computed before it) is still finite.
        snapshots = (np.empty_like(params), np.empty_like(params))
        first = self.epoch + 1
        # The history's recording interval, doubled past each boundary (engine.history).
        interval, boundary = history_interval(first, cfg.history_every, cfg.history_max_points)
        last_loss: float | None = None
        last_logs: dict[str, float | None] | None = None
        for epoch in range(first, cfg.epochs + 1):
            snapshot = snapshots[epoch & 1]
            snapshot[...] = params
            if tracker is not None:
                tracker.reset()
            lr = optimizer.lr
            loss = train_epoch()
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
            recorded = epoch % interval == 0
            if epoch == boundary:
                interval, boundary = interval << 1, boundary << 1
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
                logs = last_logs = self._logs(loss, lr)
                if recorded:
                    self._append(self.history, epoch, logs)
            if (early is not None or not loss_only) and self._early_stopping(epoch, logs):
                self._stop_reason = self._stop_reason or "early_stopping"
            if schedule is not None:  # before the callbacks: their checkpoints include it
                schedule.epoch_end(logs)
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

    def _update(self) -> Callable[[Array, Array], None]:
        """One update from the batch's gradients: clip, optimizer step, per-batch schedule.

        Without clipping and a per-batch schedule this is the optimizer's ``step`` itself.
        """
        step, clip = self.optimizer.step, self.clip
        schedule = self.schedule
        per_batch = schedule.batch_end if schedule is not None and schedule.per_batch else None
        if clip is None and per_batch is None:
            return step

        def update(params: Array, grads: Array) -> None:
            if clip is not None:
                clip(grads)
            step(params, grads)
            if per_batch is not None:
                per_batch()

        return update

    def _full_batch_epoch(self) -> Callable[[], float]:
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
        value_and_delta, update = loss_fn.value_and_delta, self._update()
        params, grads = network.params, network.grads
        track = None if self.metrics is None else self.metrics[0].batch

        def epoch() -> float:
            A = forward(X)
            loss, dZ = value_and_delta(out.Z, A, Y, reduction, activation, out.dA, out.work)
            if track is not None:
                track(A, Y, labels)
            if loss - loss == 0.0:  # finite (inf - inf and nan - nan are nan), no call
                backward(dZ)
                update(params, grads)
            return loss

        return epoch

    def _minibatch_epoch(self) -> float:
        """One pass over shuffled (or ordered) mini-batches; one update per batch.

        Returns the epoch loss, the sample-weighted mean of the batch losses
        (``mean``) or their sum (``sum``); the metrics accumulate in the training
        tracker. A non-finite batch loss ends the epoch before its update is applied.
        """
        data, cfg, network, loss_fn = self.train, self.config, self.network, self.loss
        n = data.n_samples
        batch = self._batch_size()
        update, params, grads = self._update(), network.params, network.grads
        activation = network.layers[-1].activation
        reduction = cfg.reduction
        track = None if self.metrics is None else self.metrics[0].batch
        order = self.shuffle_rng.permutation(n) if cfg.shuffle else None
        total = 0.0
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
                return loss
            if track is not None:
                track(A, Yb, labels)
            plan.backward(dZ)
            update(params, grads)
            total += loss * (stop - start) if reduction == "mean" else loss
        return total / n if reduction == "mean" else total

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

    def _logs(self, loss: float, lr: float) -> dict[str, float | None]:
        """The epoch's logs: losses, metrics of the training and validation data, ``lr``."""
        logs: dict[str, float | None] = {"loss": loss, "val_loss": None}
        train, val, metrics = self.train, self.val, self.metrics
        if metrics is not None:
            for name, value in metrics[0].results(train.labels is not None).items():
                logs[name] = value
                logs[f"val_{name}"] = None
        if val is not None:
            Z, A = self.network.forward(val.X)
            logs["val_loss"] = self.val_loss_fn.value(Z, A, val.Y, self.config.reduction)
            if metrics is not None and metrics[1] is not None:
                tracker = metrics[1]
                tracker.reset()
                tracker.batch(A, val.Y, val.labels)
                for name, value in tracker.results(val.labels is not None).items():
                    logs[f"val_{name}"] = value
        if self.schedule is not None:
            logs["lr"] = lr
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
