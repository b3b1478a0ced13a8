"""A sweep's trials as the API shows them: each trial run's status, objective and rung."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from app.db.models import Run, Sweep, SweepRung

PRUNED = "pruned"
PRUNE = "prune"
PROMOTE = "promote"


@dataclass(frozen=True)
class TrialView:
    """One trial: its run, parameters, status (the run's, or ``pruned``) and objective."""

    number: int
    run_id: str | None
    parameters: dict[str, Any]
    status: str
    objective: float | None
    epoch: int
    rung: int | None

    @property
    def finished(self) -> bool:
        """Nothing more happens to it (its run is terminal, or it was pruned)."""
        return self.status in ("succeeded", "failed", "cancelled", PRUNED)


def _finite(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def final_objective(run: Run, metric: str) -> float | None:
    """The run's last value of ``metric`` (``loss``, ``val_loss`` or a recorded metric)."""
    if metric == "loss":
        return _finite(run.loss)
    if metric == "val_loss":
        return _finite(run.val_loss)
    return _finite((run.metrics or {}).get(metric))


def trials_of(sweep: Sweep, runs: Sequence[Run], rungs: Sequence[SweepRung]) -> list[TrialView]:
    """The created trials of ``sweep`` by number, from its runs and rung decisions."""
    metric = str(sweep.spec["objective"]["metric"])
    by_trial: dict[int, list[SweepRung]] = {}
    for rung in rungs:
        by_trial.setdefault(rung.trial, []).append(rung)
    views = []
    for run in runs:
        number = int(run.sweep_trial or 0)
        decided = sorted(by_trial.get(number, []), key=lambda row: row.rung)
        pruned = bool(decided) and decided[-1].decision == PRUNE
        objective = final_objective(run, metric) if run.status == "succeeded" else None
        if pruned:
            objective = _finite(decided[-1].value)
        views.append(
            TrialView(
                number=number,
                run_id=run.id,
                parameters=dict(sweep.planned[number]) if number < len(sweep.planned) else {},
                status=PRUNED if pruned else run.status,
                objective=objective,
                epoch=run.epoch,
                rung=decided[-1].rung if decided else None,
            )
        )
    return views


def best_of(sweep: Sweep, trials: Sequence[TrialView]) -> TrialView | None:
    """The succeeded trial with the best objective (the lowest number on a tie)."""
    done = [
        trial for trial in trials if trial.status == "succeeded" and trial.objective is not None
    ]
    if not done:
        return None
    sign = -1.0 if sweep.spec["objective"]["mode"] == "max" else 1.0
    return min(done, key=lambda trial: (sign * float(trial.objective or 0.0), trial.number))
