"""Hooks called by :func:`engine.fit` at epoch boundaries."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.fit import FitResult, Trainer


class Callback:
    """Base class for training callbacks; override what you need.

    A callback can ask training to stop with ``trainer.stop(reason)`` and can
    take a checkpoint with ``trainer.state()``. The service reports progress,
    writes history and checkpoints, and honours cancellation this way.
    """

    def on_train_begin(self, trainer: Trainer) -> None:
        """Called once before the first epoch (also when resuming)."""

    def on_epoch_end(
        self, trainer: Trainer, epoch: int, logs: dict[str, float | None], recorded: bool
    ) -> None:
        """Called after every epoch.

        Parameters
        ----------
        trainer : Trainer
            The running trainer.
        epoch : int
            The epoch just completed, counting from 1.
        logs : dict
            ``loss``, ``val_loss`` and metrics of this epoch.
        recorded : bool
            Whether this epoch is in the history: a multiple of ``history_every``,
            thinned past ``history_max_points`` (:mod:`engine.history`). The last
            epoch run is always in the final history.
        """

    def on_train_end(self, trainer: Trainer, result: FitResult) -> None:
        """Called once with the result, whatever the stop reason."""
