"""The engine callback that buffers a run's progress between two database writes."""

from __future__ import annotations

import math
import time
from typing import Any

import engine
from app.datasets.arrays import clean_metrics, encode_weights, finite_or_none
from app.db.ids import new_id
from app.services.execution import Batch, PendingCheckpoint, Progress
from app.services.history import make_chunk
from engine import serialization

BASE_LOGS = ("loss", "val_loss", "lr")  # lr: the history's learning-rate column, not a metric
ENDED = ("completed", "early_stopping")
"""Engine stop reasons of a run that is over; any other reason but ``diverged`` and
``lease_lost`` is a stop at an exact checkpoint (shutdown or a request)."""


def _restored_best(trainer: engine.Trainer, result: engine.FitResult) -> bool:
    """Whether ``engine.fit`` ended on the best epoch's weights rather than the last's."""
    early = trainer.config.early_stopping
    return (
        result.stop_reason in ENDED
        and early is not None
        and early.restore_best
        and trainer.best_params is not None
        and result.best_epoch is not None
        and result.best_epoch != result.epochs_run
    )


class ProgressCallback(engine.Callback):
    """Track progress, capture checkpoints, and hand them over as a :class:`Batch`.

    The per-epoch work is one comparison and one clock read: the history is the
    trainer's own (``trainer.history``), sliced when a batch is taken, so it is not
    recorded twice. Checkpoints are captured at their epoch and kept until taken.
    This callback never touches the database: :class:`app.jobs.lease.RunLease`
    (the next callback) takes batches from it and writes them.

    Parameters
    ----------
    run_id : str
        The run.
    network : engine.Network
        The network being trained (for checkpoint weights).
    checkpoint_every : int or None
        Scheduled checkpoints every N epochs; None = automatic, time-based.
    monitor : str
        The logged value whose minimum is ``best_loss``.
    best_loss : float or None
        Best value so far (when resuming).
    best_epoch : int or None
        Its epoch (when resuming).
    start_epoch : int
        The epoch training starts after (the resume point).
    auto_checkpoint_seconds : float
        Interval of automatic checkpoints.
    keep_auto_checkpoints : int
        Automatic checkpoints kept when a batch could not be written.
    """

    def __init__(
        self,
        *,
        run_id: str,
        network: engine.Network,
        checkpoint_every: int | None,
        monitor: str,
        best_loss: float | None,
        start_epoch: int,
        best_epoch: int | None = None,
        auto_checkpoint_seconds: float,
        keep_auto_checkpoints: int,
    ) -> None:
        self.run_id = run_id
        self.network = network
        self.checkpoint_every = checkpoint_every
        self.monitor = monitor
        self.best = math.inf if best_loss is None else best_loss
        self.best_epoch = best_epoch if best_loss is not None else None
        self.weights_epoch: int | None = None  # set when restore_best restored an earlier epoch
        self.auto_seconds = auto_checkpoint_seconds
        self.keep_auto = keep_auto_checkpoints
        self.epoch = start_epoch
        self.start_epoch = start_epoch
        self.last_checkpoint_epoch = start_epoch
        self.logs: dict[str, float | None] = {}
        self._best_logs: dict[str, float | None] = {}  # the logs of the engine's best epoch
        self._trainer: engine.Trainer | None = None
        self._taken = 0  # entries of trainer.history already handed over in a batch
        self._start = 0  # where the last batch taken began (put_back returns there)
        self._tail: dict[str, list[Any]] | None = None  # the last epoch, when not recorded
        self._ending: PendingCheckpoint | None = None
        self._checkpoints: list[PendingCheckpoint] = []
        self._next_auto = time.monotonic() + auto_checkpoint_seconds

    # -- engine hooks -------------------------------------------------------------------

    def on_train_begin(self, trainer: engine.Trainer) -> None:
        """Remember the trainer: its history is read when a batch is taken."""
        self._trainer = trainer
        self._taken = len(trainer.history["epoch"])

    def on_epoch_end(
        self, trainer: engine.Trainer, epoch: int, logs: dict[str, float | None], recorded: bool
    ) -> None:
        """Track progress; capture a checkpoint when one is due."""
        self.epoch = epoch
        self.logs = logs
        value = logs.get(self.monitor)
        if value is not None and value < self.best:
            self.best = value
            self.best_epoch = epoch
        if trainer.best_epoch == epoch:  # what restore_best would restore
            self._best_logs = dict(logs)
        every = self.checkpoint_every
        if every is not None:
            if epoch % every == 0:
                self._checkpoints.append(self._capture(trainer, epoch, "scheduled"))
        else:
            now = time.monotonic()
            if now >= self._next_auto:
                self._checkpoints.append(self._capture(trainer, epoch, "auto"))
                self._next_auto = now + self.auto_seconds

    def on_train_end(self, trainer: engine.Trainer, result: engine.FitResult) -> None:
        """Keep the last epoch (the history of a run that ends has it) and take the
        checkpoint where training stopped."""
        self.epoch = result.epochs_run
        history = result.history
        recorded = trainer.history["epoch"]
        last_recorded = recorded[-1] if recorded else self.start_epoch
        if history.get("epoch") and history["epoch"][-1] > last_recorded:
            self._tail = {key: [column[-1]] for key, column in history.items()}
        if result.final_logs:
            self.logs = dict(result.final_logs)
        engine_best = result.best_value
        if engine_best is not None and math.isfinite(engine_best) and engine_best < self.best:
            self.best, self.best_epoch = engine_best, result.best_epoch
        if result.stop_reason in ("diverged", "lease_lost"):
            return
        if _restored_best(trainer, result):
            # The weights are the best epoch's (engine.fit restored them): so are the
            # run's best fields and the final checkpoint's label, whatever min_delta did.
            self.weights_epoch = self.best_epoch = result.best_epoch
            self.best = result.best_value if result.best_value is not None else self.best
            self._ending = self._capture(trainer, self.weights_epoch or 0, "final", best=True)
            return
        if self.last_checkpoint_epoch != result.epochs_run:
            kind = "final" if result.stop_reason in ENDED else "auto"
            self._ending = self._capture(trainer, result.epochs_run, kind)

    # -- batches ------------------------------------------------------------------------

    def _capture(
        self, trainer: engine.Trainer, epoch: int, kind: str, best: bool = False
    ) -> PendingCheckpoint:
        state = trainer.state(include_history=False)
        self.last_checkpoint_epoch = epoch
        logs = self._best_logs if best else self.logs
        return PendingCheckpoint(
            id=new_id("checkpoint"),
            epoch=epoch,
            kind=kind,
            loss=finite_or_none(logs.get("loss")),
            val_loss=finite_or_none(logs.get("val_loss")),
            state=serialization.encode_state(state),
            weights=encode_weights(self.network.get_weights()),
        )

    def progress(self) -> Progress:
        """The run's progress fields as of the last epoch seen."""
        return Progress(
            epoch=self.epoch,
            loss=finite_or_none(self.logs.get("loss")),
            val_loss=finite_or_none(self.logs.get("val_loss")),
            best_loss=finite_or_none(self.best),
            metrics=clean_metrics(self.logs, exclude=BASE_LOGS),
            best_epoch=self.best_epoch,
            weights_epoch=self.weights_epoch,
        )

    def take_batch(self) -> Batch:
        """Hand over what was buffered since the last batch (the buffers reset)."""
        columns: dict[str, list[Any]] = {}
        trainer = self._trainer
        if trainer is not None:
            end = len(trainer.history["epoch"])
            if end > self._taken:
                columns = {
                    key: column[self._taken : end] for key, column in trainer.history.items()
                }
        batch = Batch(
            progress=self.progress(),
            chunk=make_chunk(self.run_id, columns) if columns else None,
            checkpoints=self._checkpoints,
            tail=make_chunk(self.run_id, self._tail) if self._tail else None,
            ending=self._ending,
        )
        self._start = self._taken
        self._taken += len(columns.get("epoch", ()))
        self._checkpoints = []
        return batch

    def put_back(self, batch: Batch) -> None:
        """Take back a batch that could not be written: the next one includes it.

        The history is sliced again from the trainer, and of the automatic
        checkpoints only the newest ``keep_auto`` are kept (memory stays bounded
        through a long outage).
        """
        self._taken = self._start
        kept = batch.checkpoints + self._checkpoints
        autos = [pending for pending in kept if pending.kind == "auto"]
        dropped = {id(pending) for pending in autos[: max(0, len(autos) - self.keep_auto)]}
        self._checkpoints = [pending for pending in kept if id(pending) not in dropped]
