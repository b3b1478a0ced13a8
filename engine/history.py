r"""Which epochs a run records in its history: ``history_every``, thinned past ``history_max_points``.

With ``h = history_every`` and ``cap = history_max_points``:

- epochs up to ``h * cap`` are recorded at interval ``h`` (every ``h``-th epoch);
- after that the interval doubles each time the epoch number doubles: epochs in
  :math:`(h \cdot cap \cdot 2^{k-1},\ h \cdot cap \cdot 2^k]` are recorded at
  interval :math:`h \cdot 2^k` (the multiples of it);
- the last epoch run is always in the history (as without a cap).

``cap = None`` records every ``h``-th epoch forever. The rule depends only on the
epoch number, so a resumed run and the service compute the same epochs without
any stored state. A run of ``E`` epochs records at most

.. math:: cap + \lceil cap / 2 \rceil \cdot \lceil \log_2 (E / (h \cdot cap)) \rceil + 1

points (:func:`history_points` gives the exact number): each doubling segment
spans :math:`h \cdot cap \cdot 2^{k-1}` epochs at interval :math:`h \cdot 2^k`,
so it holds :math:`cap / 2` multiples (one more when ``cap`` is odd).
"""

from __future__ import annotations

MIN_HISTORY_POINTS = 10
"""The smallest ``history_max_points``: fewer points than this do not show a loss curve."""


def history_interval(epoch: int, every: int, max_points: int | None) -> tuple[int, int]:
    """The recording interval in force at ``epoch`` and the last epoch it applies to.

    Parameters
    ----------
    epoch : int
        An epoch number, counting from 1.
    every : int
        ``history_every``.
    max_points : int or None
        ``history_max_points``; None: no thinning (the interval never changes,
        and the last epoch returned is 0, which no epoch reaches).

    Returns
    -------
    interval, last : int
        ``epoch`` is recorded when ``epoch % interval == 0``; from ``last + 1`` on
        the interval is doubled (and ``last`` doubles with it).
    """
    if max_points is None:
        return every, 0
    span = every * max_points
    doublings = ((epoch - 1) // span).bit_length()
    return every << doublings, span << doublings


def is_recorded(epoch: int, every: int, max_points: int | None) -> bool:
    """Whether ``epoch`` is on the recording grid (the last epoch run is recorded anyway)."""
    interval, _ = history_interval(epoch, every, max_points)
    return epoch % interval == 0


def history_epochs(epochs: int, every: int, max_points: int | None) -> list[int]:
    """The epochs a run of ``epochs`` epochs records, the last one included.

    O(number of points); for the count alone use :func:`history_points`.
    """
    recorded: list[int] = []
    epoch = 0
    while True:
        interval, last = history_interval(epoch + 1, every, max_points)
        stop = epochs if max_points is None else min(epochs, last)
        recorded.extend(range(epoch + interval - epoch % interval, stop + 1, interval))
        if stop >= epochs:
            break
        epoch = stop
    if not recorded or recorded[-1] != epochs:
        recorded.append(epochs)
    return recorded


def history_points(epochs: int, every: int, max_points: int | None) -> int:
    """How many points a run of ``epochs`` epochs records (the last epoch included).

    Exact, in O(log epochs). It never decreases with ``epochs``, so it bounds the
    history of a run that stops early (early stopping, cancellation, divergence)
    and of a run resumed from a checkpoint, whose history follows the same rule.
    """
    if epochs < 1:
        return 0
    count = 0
    epoch = 0
    while epoch < epochs:
        interval, last = history_interval(epoch + 1, every, max_points)
        stop = epochs if max_points is None else min(epochs, last)
        count += stop // interval - epoch // interval
        epoch = stop
    return count + (0 if is_recorded(epochs, every, max_points) else 1)
