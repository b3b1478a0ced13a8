"""Learning-rate schedules: ``torch.optim.lr_scheduler``'s recursive ``step()`` forms.

A schedule owns the optimizer's :attr:`~engine.optimizers.Optimizer.lr`. Built at
the start of training it sets the first rate as the PyTorch class's constructor
does (its initial ``step()``: e.g. ``linear`` multiplies by ``start_factor``,
``onecycle`` starts at ``max_learning_rate / div_factor``). Then, as in the usual
PyTorch loop, :meth:`Schedule.epoch_end` runs once after each epoch's updates
(``plateau`` with the monitored value) and ``onecycle``'s :meth:`Schedule.batch_end`
after every update. Each rate is computed from the previous one with the class's
own expression (its ``get_lr``), in the same order of operations, so the rates
are PyTorch's to the last bit; the closed forms would differ in the last bits.

The state (``last_epoch``, plateau's best value and counters) is JSON, so a
checkpoint resumes mid-schedule bit for bit; the current rate is in the
optimizer's state.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from typing import Any, ClassVar

from engine.errors import ConfigError
from engine.optimizers import Optimizer
from engine.schedule_config import (
    CosineSchedule,
    ExponentialSchedule,
    LinearSchedule,
    MultiStepSchedule,
    OneCycleSchedule,
    PlateauSchedule,
    ScheduleConfig,
    StepSchedule,
)


class Schedule:
    """Base class. ``last_epoch`` counts the steps taken (epochs, or batches for onecycle).

    Parameters
    ----------
    optimizer : Optimizer
        Its ``lr`` is read and set; its value when the schedule is built is the
        base rate (``initial_lr``).
    """

    #: Stepped after every update (True) or after every epoch (False).
    per_batch: ClassVar[bool] = False

    def __init__(self, optimizer: Optimizer) -> None:
        self.optimizer = optimizer
        self.base_lr = optimizer.lr
        self.last_epoch = 0
        optimizer.lr = self.initial_lr()

    def initial_lr(self) -> float:
        """The rate set by the PyTorch constructor's initial step (``last_epoch`` 0)."""
        return self.optimizer.lr

    def next_lr(self, lr: float) -> float:
        """The rate after step ``last_epoch`` (already incremented) from the current ``lr``."""
        return lr

    def step(self) -> None:
        """One ``scheduler.step()``."""
        self.last_epoch += 1
        self.optimizer.lr = self.next_lr(self.optimizer.lr)

    def epoch_end(self, logs: Mapping[str, float | None]) -> None:
        """Called after each epoch's updates, with the epoch's logs."""
        self.step()

    def batch_end(self) -> None:
        """Called after each update (only for :attr:`per_batch` schedules)."""

    def state(self) -> dict[str, Any]:
        """JSON state that :meth:`load_state` restores."""
        return {"last_epoch": self.last_epoch}

    def check_state(self, state: Mapping[str, Any]) -> None:
        """Raise :class:`ConfigError` unless :meth:`state`'s output fits this schedule."""

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state`'s output."""
        self.last_epoch = int(state["last_epoch"])


class StepLR(Schedule):
    """``StepLR``."""

    def __init__(self, config: StepSchedule, optimizer: Optimizer) -> None:
        self.config = config
        super().__init__(optimizer)

    def next_lr(self, lr: float) -> float:
        if self.last_epoch == 0 or self.last_epoch % self.config.step_size != 0:
            return lr
        return lr * self.config.gamma


class MultiStepLR(Schedule):
    """``MultiStepLR`` (a milestone given twice multiplies by ``gamma**2``)."""

    def __init__(self, config: MultiStepSchedule, optimizer: Optimizer) -> None:
        self.config = config
        self.milestones = Counter(config.milestones)
        super().__init__(optimizer)

    def next_lr(self, lr: float) -> float:
        if self.last_epoch not in self.milestones:
            return lr
        try:
            factor = self.config.gamma ** self.milestones[self.last_epoch]
        except OverflowError:  # a gamma above 1 repeated past float range (PyTorch raises)
            factor = math.inf
        return lr * factor


class ExponentialLR(Schedule):
    """``ExponentialLR``."""

    def __init__(self, config: ExponentialSchedule, optimizer: Optimizer) -> None:
        self.config = config
        super().__init__(optimizer)

    def next_lr(self, lr: float) -> float:
        return lr * self.config.gamma


class CosineAnnealingLR(Schedule):
    """``CosineAnnealingLR``'s recursive form (it rises again past ``t_max``, as PyTorch's)."""

    def __init__(self, config: CosineSchedule, optimizer: Optimizer) -> None:
        self.config = config
        super().__init__(optimizer)

    def next_lr(self, lr: float) -> float:
        t_max, eta_min, epoch = self.config.t_max, self.config.eta_min, self.last_epoch
        if (epoch - 1 - t_max) % (2 * t_max) == 0:
            return lr + (self.base_lr - eta_min) * (1 - math.cos(math.pi / t_max)) / 2
        return (1 + math.cos(math.pi * epoch / t_max)) / (
            1 + math.cos(math.pi * (epoch - 1) / t_max)
        ) * (lr - eta_min) + eta_min


class LinearLR(Schedule):
    """``LinearLR``."""

    def __init__(self, config: LinearSchedule, optimizer: Optimizer) -> None:
        self.config = config
        super().__init__(optimizer)

    def initial_lr(self) -> float:
        return self.optimizer.lr * self.config.start_factor

    def next_lr(self, lr: float) -> float:
        c, epoch = self.config, self.last_epoch
        if epoch > c.total_iters:
            return lr
        return lr * (
            1.0
            + (c.end_factor - c.start_factor)
            / (c.total_iters * c.start_factor + (epoch - 1) * (c.end_factor - c.start_factor))
        )


class OneCycleLR(Schedule):
    """``OneCycleLR`` (two phases, ``cycle_momentum`` off), stepped after every update.

    Parameters
    ----------
    total_steps : int
        ``epochs x batches per epoch``.
    """

    per_batch = True

    def __init__(self, config: OneCycleSchedule, optimizer: Optimizer, total_steps: int) -> None:
        self.config = config
        self.total_steps = total_steps
        self.initial = config.max_learning_rate / config.div_factor
        self.min_lr = self.initial / config.final_div_factor
        self.phases = (
            (float(config.pct_start * total_steps) - 1, self.initial, config.max_learning_rate),
            (total_steps - 1, config.max_learning_rate, self.min_lr),
        )
        super().__init__(optimizer)

    def initial_lr(self) -> float:
        return self._lr(0)

    def next_lr(self, lr: float) -> float:
        return self._lr(self.last_epoch)

    def _lr(self, step_num: int) -> float:
        start_step = 0.0
        for index, (end_step, start_lr, end_lr) in enumerate(self.phases):
            if step_num <= end_step or index == len(self.phases) - 1:
                pct = (step_num - start_step) / (end_step - start_step)
                return self._anneal(start_lr, end_lr, pct)
            start_step = end_step
        raise AssertionError("unreachable: the last phase always applies")

    def _anneal(self, start: float, end: float, pct: float) -> float:
        if self.config.anneal_strategy == "cos":
            cos_out = math.cos(math.pi * pct) + 1
            return end + (start - end) / 2.0 * cos_out
        return (end - start) * pct + start

    def epoch_end(self, logs: Mapping[str, float | None]) -> None:
        """Nothing: onecycle steps per batch."""

    def batch_end(self) -> None:
        self.step()

    def state(self) -> dict[str, Any]:
        return {"last_epoch": self.last_epoch, "total_steps": self.total_steps}

    def check_state(self, state: Mapping[str, Any]) -> None:
        stored = int(state.get("total_steps", self.total_steps))
        if stored != self.total_steps:
            raise ConfigError(
                ("epochs",),
                f"onecycle's schedule spans epochs x batches per epoch = {stored} steps in "
                f"the checkpoint but {self.total_steps} now; resume with the epochs the run "
                "started with",
            )


class ReduceLROnPlateau(Schedule):
    """``ReduceLROnPlateau`` on the epoch's ``loss`` or ``val_loss`` (``eps`` 1e-8)."""

    EPS = 1e-8

    def __init__(self, config: PlateauSchedule, optimizer: Optimizer) -> None:
        self.config = config
        self.best = math.inf if config.mode == "min" else -math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0
        super().__init__(optimizer)

    def _is_better(self, current: float) -> bool:
        c, best = self.config, self.best
        if c.mode == "min" and c.threshold_mode == "rel":
            return current < best * (1.0 - c.threshold)
        if c.mode == "min":
            return current < best - c.threshold
        if c.threshold_mode == "rel":
            return current > best * (c.threshold + 1.0)
        return current > best + c.threshold

    def epoch_end(self, logs: Mapping[str, float | None]) -> None:
        value = logs.get(self.config.monitor)
        if value is None:
            return
        current = float(value)
        self.last_epoch += 1
        if self._is_better(current):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.config.patience:
            old_lr = self.optimizer.lr
            new_lr = max(old_lr * self.config.factor, self.config.min_lr)
            if old_lr - new_lr > self.EPS:
                self.optimizer.lr = new_lr
            self.cooldown_counter = self.config.cooldown
            self.num_bad_epochs = 0

    def state(self) -> dict[str, Any]:
        return {
            "last_epoch": self.last_epoch,
            "best": self.best,
            "num_bad_epochs": self.num_bad_epochs,
            "cooldown_counter": self.cooldown_counter,
        }

    def load_state(self, state: Mapping[str, Any]) -> None:
        super().load_state(state)
        self.best = float(state["best"])
        self.num_bad_epochs = int(state["num_bad_epochs"])
        self.cooldown_counter = int(state["cooldown_counter"])


def make_schedule(
    config: ScheduleConfig | None, optimizer: Optimizer, total_steps: int
) -> Schedule | None:
    """The schedule for ``config`` (None: constant rate), setting the optimizer's first rate.

    ``total_steps`` (epochs x batches per epoch) sizes ``onecycle``; with a
    ``pct_start`` that puts its first phase's end at step 0, PyTorch divides by
    zero, so that is a :class:`ConfigError` here.
    """
    if config is None:
        return None
    if isinstance(config, StepSchedule):
        return StepLR(config, optimizer)
    if isinstance(config, MultiStepSchedule):
        return MultiStepLR(config, optimizer)
    if isinstance(config, ExponentialSchedule):
        return ExponentialLR(config, optimizer)
    if isinstance(config, CosineSchedule):
        return CosineAnnealingLR(config, optimizer)
    if isinstance(config, LinearSchedule):
        return LinearLR(config, optimizer)
    if isinstance(config, OneCycleSchedule):
        check_onecycle(config, total_steps)
        return OneCycleLR(config, optimizer, total_steps)
    return ReduceLROnPlateau(config, optimizer)


def check_onecycle(config: ScheduleConfig | None, total_steps: int) -> None:
    """Raise :class:`ConfigError` if ``onecycle``'s warm-up is exactly one step long.

    PyTorch's ``OneCycleLR`` then divides by zero at the first step; the length
    depends on ``total_steps`` (epochs x batches per epoch), hence on the data.
    """
    if isinstance(config, OneCycleSchedule) and float(config.pct_start * total_steps) - 1 == 0:
        raise ConfigError(
            ("lr_schedule", "pct_start"),
            f"{config.pct_start:g} of the run's {total_steps} steps (epochs x batches per "
            "epoch) is exactly one step, which leaves the warm-up no length; use another "
            "pct_start",
        )
