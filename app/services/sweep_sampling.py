"""Trial parameters from Optuna's samplers, deterministic for a sweep's seed.

- ``grid`` and ``random``: every trial is drawn at creation, in one in-memory study
  (``GridSampler(space, seed)`` / ``RandomSampler(seed)``), and stored with the sweep.
- ``tpe``: one trial at a time, when the driver creates it, from a study rebuilt from
  the finished trials stored in the database (their parameters and objectives), with
  ``TPESampler(seed=seed_for(seed, number))``. The same finished trials give the same
  next trial; with ``parallelism`` 1 the whole sweep is reproducible.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.study import StudyDirection
from optuna.trial import TrialState

from app.services import sweep_space

optuna.logging.set_verbosity(optuna.logging.WARNING)


def seed_for(seed: int, number: int) -> int:
    """The sampler seed of trial ``number`` of a sweep seeded ``seed``."""
    return int(np.random.SeedSequence([seed, number]).generate_state(1)[0])


def _plain(params: dict[str, Any]) -> dict[str, Any]:
    """JSON-safe Python scalars (NumPy's become int/float)."""
    return {
        path: value.item() if isinstance(value, np.generic) else value
        for path, value in params.items()
    }


def plan(
    method: str, space: dict[str, BaseDistribution], max_trials: int, seed: int
) -> list[dict[str, Any]]:
    """The parameters of every trial of a grid or random sweep, in trial order.

    A grid sweep has ``min(max_trials, grid points)`` trials, in GridSampler's
    (seeded) order; a random one ``max_trials``.
    """
    if method == "grid":
        values = sweep_space.grid(space)
        points = int(np.prod([len(options) for options in values.values()]))
        sampler: optuna.samplers.BaseSampler = optuna.samplers.GridSampler(values, seed=seed)
        count = min(max_trials, points)
    else:
        sampler = optuna.samplers.RandomSampler(seed=seed)
        count = max_trials
    study = optuna.create_study(sampler=sampler)
    trials = []
    for index in range(count):
        trial = study.ask(space)
        trials.append(_plain(trial.params))
        if index < count - 1:  # the grid goes on to an unvisited point (the last would stop it)
            study.tell(trial, 0.0)
    return trials


def ask_tpe(
    space: dict[str, BaseDistribution],
    *,
    seed: int,
    number: int,
    mode: str,
    finished: Sequence[tuple[dict[str, Any], float]],
) -> dict[str, Any]:
    """The parameters of TPE trial ``number`` given the ``finished`` (parameters, objective)."""
    sampler = optuna.samplers.TPESampler(seed=seed_for(seed, number))
    direction = StudyDirection.MAXIMIZE if mode == "max" else StudyDirection.MINIMIZE
    study = optuna.create_study(sampler=sampler, direction=direction)
    for params, value in finished:
        study.add_trial(optuna.trial.create_trial(params=params, distributions=space, value=value))
    return _plain(study.ask(space).params)


def asha_prunes(
    *,
    min_epochs: int,
    reduction_factor: int,
    mode: str,
    rung_epochs: Sequence[int],
    others: Sequence[dict[int, float]],
    own: dict[int, float],
) -> bool:
    """Whether Optuna's ``SuccessiveHalvingPruner`` prunes a trial at its last rung.

    The study is rebuilt in memory from the stored rung values: ``others`` are the
    other trials' values by rung index, ``own`` this trial's, up to the rung being
    decided (a NaN value is pruned). The pruner compares the value with every value
    recorded at that rung and keeps the top ``1 / reduction_factor`` (at least one).
    """
    pruner = optuna.pruners.SuccessiveHalvingPruner(
        min_resource=min_epochs,
        reduction_factor=reduction_factor,
        min_early_stopping_rate=0,
        bootstrap_count=0,
    )
    direction = StudyDirection.MAXIMIZE if mode == "max" else StudyDirection.MINIMIZE
    study = optuna.create_study(direction=direction, pruner=pruner)
    for values in others:
        study.add_trial(_rung_trial(TrialState.PRUNED, values, rung_epochs, len(values)))
    study.add_trial(_rung_trial(TrialState.RUNNING, own, rung_epochs, len(own) - 1))
    trial = study.get_trials(deepcopy=False)[-1]
    return bool(pruner.prune(study, trial))


def _rung_trial(
    state: TrialState, values: dict[int, float], rung_epochs: Sequence[int], completed: int
) -> optuna.trial.FrozenTrial:
    """A trial with its values at the rungs' epochs; its first ``completed`` rungs done."""
    return optuna.trial.create_trial(
        state=state,
        params={},
        distributions={},
        intermediate_values={rung_epochs[rung]: value for rung, value in values.items()},
        system_attrs={f"completed_rung_{rung}": values[rung] for rung in range(completed)},
    )
