"""Faults of the servers Backprop stands on, with real servers that the tests break.

- PostgreSQL stopped and started again while runs train (the compose stack: the
  API and two Celery workers), longer than a lease.
- PostgreSQL turned read-only while runs train, as a failover to a standby would.
- Redis stopped while runs train and others wait in its queue, and started
  again empty (no persistence: every message it held is gone).
- The disk under a SQLite database full while a run trains (``backprop serve``
  and its local workers, the database on a small tmpfs).

Each ends the same way: every run succeeded, its history has every epoch once,
and its weights and history equal those of the same run trained undisturbed.
While the database cannot be used, the API answers 503 with ``Retry-After``
and says why; reads keep working where the database still serves them.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import XOR_NETWORK, XOR_X, XOR_Y, run_body, started_server, wait_for
from tests.integration.conftest import Server
from tests.support.compose import FAST_HEALING, Stack, StartStack, stacks
from tests.support.history import full_history
from tests.support.services import (
    PostgresServer,
    RedisServer,
    start_postgres,
    start_redis,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EPOCHS = 400_000  # about 7 s of training on an idle machine
HISTORY_EVERY = 10
OUTAGE_SECONDS = 6.0  # twice the lease: every lease has expired when the database is back


@pytest.fixture(scope="module")
def private_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server of this module's own, which its tests stop and restart."""
    with started_server("PostgreSQL", lambda: start_postgres(private=True)) as server:
        yield server


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    """A Redis server of this test's own, which it stops and restarts."""
    with started_server("Redis", lambda: start_redis(private=True)) as server:
        yield server


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[StartStack]:
    """``launch(postgres, redis)`` starts the compose stack (API and two workers) on them."""
    with stacks(tmp_path) as start:
        yield start


# -- helpers ---------------------------------------------------------------------------


def _setup(client: httpx.Client) -> dict[str, Any]:
    """The XOR network and dataset; return the body of a long run on them."""
    network = client.post("/v1/networks", json=XOR_NETWORK)
    dataset = client.post("/v1/datasets", json={"name": "xor", "X": XOR_X, "y": XOR_Y})
    assert network.status_code == 201 and dataset.status_code == 201, dataset.text
    return run_body(
        network.json()["id"],
        dataset.json()["id"],
        epochs=EPOCHS,
        history_every=HISTORY_EVERY,
        seed=7,
    )


def _start_runs(client: httpx.Client, body: dict[str, Any], count: int) -> list[str]:
    run_ids = []
    for _ in range(count):
        response = client.post("/v1/runs", json=body)
        assert response.status_code == 202, response.text
        run_ids.append(response.json()["id"])
    return run_ids


def _training(client: httpx.Client, run_ids: list[str], at_least: int) -> None:
    """Wait until ``at_least`` of the runs trained some epochs and stored a checkpoint."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        busy = 0
        for run_id in run_ids:
            run = client.get(f"/v1/runs/{run_id}").json()
            assert run["status"] in ("queued", "running"), run
            checkpoints = client.get(f"/v1/runs/{run_id}/checkpoints").json()["data"]
            busy += run["status"] == "running" and any(c["epoch"] > 0 for c in checkpoints)
        if busy >= at_least:
            return
        time.sleep(0.1)
    raise AssertionError(f"fewer than {at_least} runs started training")


def _runs_training(client: httpx.Client, count: int) -> tuple[dict[str, Any], list[str]]:
    """Start ``count`` identical long runs; return once two (or all, if fewer) train."""
    body = _setup(client)
    run_ids = _start_runs(client, body, count)
    _training(client, run_ids, at_least=min(count, 2))
    return body, run_ids


def _all_succeeded(client: httpx.Client, run_ids: list[str], timeout: float = 300) -> None:
    for run_id in run_ids:
        done = wait_for(
            client, run_id, lambda run: run["status"] not in ("queued", "running"), timeout
        )
        assert done["status"] == "succeeded", done
        assert done["epoch"] == EPOCHS


_REFERENCE: dict[str, Any] = {}
"""The undisturbed run's ``history`` and ``weights``, trained once per module: every test
trains the same run (XOR, ``_setup``'s body), and its result is the same bits whatever
the database, so one reference serves them all (and checks that as well)."""


def _reference(client: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    """The history and weights of ``body`` trained undisturbed (now, the first time)."""
    if not _REFERENCE:
        (reference,) = _start_runs(client, body, 1)
        _all_succeeded(client, [reference])
        history = full_history(client, reference)
        assert history["epoch"] == list(range(HISTORY_EVERY, EPOCHS + 1, HISTORY_EVERY))
        weights = client.get(f"/v1/runs/{reference}/weights").json()
        _REFERENCE.update(history=history, weights=weights)
    return _REFERENCE


def _assert_undisturbed(client: httpx.Client, body: dict[str, Any], run_ids: list[str]) -> None:
    """Every run succeeds, trained by one worker, and its history and weights equal those
    of the same run trained undisturbed."""
    _all_succeeded(client, run_ids)
    attempts = [client.get(f"/v1/runs/{run_id}").json()["attempts"] for run_id in run_ids]
    assert attempts == [1] * len(run_ids), "a run was taken from its worker and trained again"
    reference = _reference(client, body)
    expected_history, expected_weights = reference["history"], reference["weights"]
    for run_id in run_ids:
        history = full_history(client, run_id)
        assert history["epoch"] == expected_history["epoch"], "an epoch is missing or repeated"
        assert history == expected_history
        assert client.get(f"/v1/runs/{run_id}/weights").json() == expected_weights


def _assert_503(response: httpx.Response, reason: str) -> None:
    assert response.status_code == 503, response.text
    assert int(response.headers["Retry-After"]) > 0
    assert reason in response.json()["detail"], response.json()


def _during(seconds: float, probe: Callable[[], None]) -> None:
    """Call ``probe`` repeatedly for ``seconds``."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        probe()
        time.sleep(0.5)


def _assert_workers_waited(stack: Stack) -> None:
    """The workers held training once their lease could have expired (another worker
    may take an expired run), and wrote when the database was back; no tracebacks."""
    events = {event.get("event") for worker in stack.workers for event in worker.events()}
    assert {"run.waiting_for_database", "run.database_back"} <= events, events
    for process in stack.processes():
        assert "Traceback" not in process.log(), process.log()[-4000:]


# -- PostgreSQL ------------------------------------------------------------------------


def test_postgresql_restart_during_training_loses_nothing(
    launch: StartStack,
    private_postgres: PostgresServer,
    redis_server: RedisServer,
) -> None:
    stack = launch(private_postgres, redis_server)
    with httpx.Client(base_url=stack.url, timeout=30) as client:
        body, run_ids = _runs_training(client, 4)  # two train, two wait for a worker
        private_postgres.halt()

        def probe() -> None:
            _assert_503(client.get(f"/v1/runs/{run_ids[0]}"), "the database is unreachable")
            _assert_503(client.post("/v1/networks", json=XOR_NETWORK), "unreachable")
            assert client.get("/healthz").status_code == 503

        _during(OUTAGE_SECONDS, probe)
        private_postgres.resume()
        _assert_undisturbed(client, body, run_ids)
    _assert_workers_waited(stack)


def test_postgresql_read_only_during_training_loses_nothing(
    launch: StartStack,
    private_postgres: PostgresServer,
    redis_server: RedisServer,
) -> None:
    stack = launch(private_postgres, redis_server)
    with httpx.Client(base_url=stack.url, timeout=30) as client:
        body, run_ids = _runs_training(client, 2)
        private_postgres.set_read_only(True)
        try:

            def probe() -> None:
                assert client.get(f"/v1/runs/{run_ids[0]}").status_code == 200
                assert client.get(f"/v1/runs/{run_ids[0]}/checkpoints").status_code == 200
                _assert_503(client.post("/v1/networks", json=XOR_NETWORK), "read-only")
                _assert_503(client.post("/v1/runs", json=body), "read-only")

            _during(OUTAGE_SECONDS, probe)
        finally:
            private_postgres.set_read_only(False)
        _assert_undisturbed(client, body, run_ids)
    _assert_workers_waited(stack)


# -- Redis -----------------------------------------------------------------------------


def test_redis_restart_during_training_loses_nothing(
    launch: StartStack,
    postgres_server: PostgresServer,
    private_redis: RedisServer,
) -> None:
    stack = launch(postgres_server, private_redis)
    with httpx.Client(base_url=stack.url, timeout=30) as client:
        body, run_ids = _runs_training(client, 4)  # two train, two wait in Redis's queue
        private_redis.halt()
        # Runs created while the broker is down are accepted (their message is sent later).
        run_ids += _start_runs(client, body, 1)
        _during(2.0, lambda: None)
        private_redis.resume()
        _assert_undisturbed(client, body, run_ids)
    api_events = stack.api.events()
    redispatched = {
        event["run_id"]
        for event in api_events
        if event.get("event") == "run.transition" and "re-dispatched" in event.get("message", "")
    }
    assert redispatched, "no lost message was re-dispatched"
    for process in stack.processes():
        assert "Traceback" not in process.log(), process.log()[-4000:]


# -- A full disk under SQLite ----------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 MiB tmpfs, so the test can fill it (needs the right to mount, as root has)."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)


def _fill(directory: Path) -> Path:
    """Write a file until the file system is full; return it."""
    filler = directory / "filler"
    descriptor = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        for block in (1 << 20, 1 << 12):
            with contextlib.suppress(OSError):
                while os.write(descriptor, b"\0" * block):
                    pass
    finally:
        os.close(descriptor)
    with pytest.raises(OSError) as full:
        (directory / "probe").write_bytes(b"\0" * 8192)
    assert full.value.errno == errno.ENOSPC
    return filler


def test_a_full_disk_under_sqlite_gives_503_and_loses_nothing(
    small_disk: Path, tmp_path: Path
) -> None:
    server = Server(
        small_disk / "backprop.db",
        tmp_path,
        {
            "BACKPROP_WORKERS": "1",
            **{
                key: str(value)
                for key, value in FAST_HEALING.items()
                if key != "BACKPROP_BROKER_RESTORE_INTERVAL"
            },
        },
    )
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            body, run_ids = _runs_training(client, 1)
            filler = _fill(small_disk)
            rows = [[float(i), float(i % 7)] for i in range(100_000)]  # needs new pages
            big = {"name": "big", "X": rows, "y": [[1.0]] * len(rows)}

            def probe() -> None:
                assert client.get(f"/v1/runs/{run_ids[0]}").status_code == 200
                _assert_503(client.post("/v1/datasets", json=big), "disk is full")

            _during(4.0, probe)
            filler.unlink()
            _assert_undisturbed(client, body, run_ids)
            assert client.post("/v1/datasets", json=big).status_code == 201
    finally:
        server.stop()
    with contextlib.closing(sqlite3.connect(small_disk / "backprop.db")) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert "Traceback" not in server.logs(), server.logs()[-4000:]
