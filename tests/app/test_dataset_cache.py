"""The worker's decoded-dataset cache (issue 12)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from app.config import Settings
from app.jobs.dataset_cache import Arrays, DatasetCache, process_cache
from app.jobs.execute_run import execute_run
from tests.conftest import XOR_NETWORK, run_body


def _arrays(rows: int, value: float = 0.0) -> Arrays:
    return np.full((rows, 8), value), np.zeros(rows, dtype=np.int64)  # 72 bytes a row


def test_cache_is_lru_and_bounded_by_bytes() -> None:
    cache = DatasetCache(max_bytes=72 * 25)
    loads: list[str] = []

    def loader(key: str, rows: int) -> Any:
        def load() -> Arrays:
            loads.append(key)
            return _arrays(rows, float(len(loads)))

        return load

    first = cache.get("a", loader("a", 10))
    assert cache.get("a", loader("a", 10)) is first and loads == ["a"]
    cache.get("b", loader("b", 10))
    cache.get("a", loader("a", 10))  # a is now the most recently used
    cache.get("c", loader("c", 10))  # 30 rows > 25: b goes
    assert cache.size_bytes == 72 * 20
    cache.get("a", loader("a", 10))
    cache.get("b", loader("b", 10))
    assert loads == ["a", "b", "c", "b"]
    assert (cache.hits, cache.misses) == (3, 4)
    with pytest.raises(ValueError, match="read-only"):
        first[0][0, 0] = 1.0


def test_a_dataset_larger_than_the_cache_is_not_kept() -> None:
    cache = DatasetCache(max_bytes=100)
    loads: list[int] = []

    def load() -> Arrays:
        loads.append(1)
        return _arrays(10)

    cache.get("big", load)
    cache.get("big", load)
    assert len(loads) == 2 and cache.size_bytes == 0
    assert DatasetCache(max_bytes=0).get("x", load)[0].shape == (10, 8)


def test_second_run_on_a_dataset_reads_the_cache(
    client: Any, settings_for: Callable[..., Settings]
) -> None:
    """Runs executed in this process (``execute_run``, as a worker does): the first
    decodes the dataset, the second, on a re-uploaded copy of it, finds it cached."""
    network = client.post("/v1/networks", json=XOR_NETWORK).json()["id"]
    body = {"name": "x", "X": [[0, 0], [0, 1], [1, 0], [1, 1]], "y": [0, 1, 1, 0]}
    first, copy = (client.post("/v1/datasets", json=body).json()["id"] for _ in range(2))
    runs = [
        client.post("/v1/runs", json=run_body(network, dataset, epochs=5)).json()["id"]
        for dataset in (first, copy)
    ]
    settings = settings_for(dataset_cache_bytes=1 << 20)
    cache = process_cache(settings.dataset_cache_bytes)
    cache.clear()  # another test in this process may have cached the same content
    hits, misses = cache.hits, cache.misses
    assert execute_run(runs[0], settings=settings).result == "succeeded"
    assert (cache.hits - hits, cache.misses - misses) == (0, 1)
    assert execute_run(runs[1], settings=settings).result == "succeeded"
    assert (cache.hits - hits, cache.misses - misses) == (1, 1)
    assert client.get(f"/v1/runs/{runs[1]}").json()["status"] == "succeeded"
