"""What ``docker compose up`` starts, as local processes: the API and Celery workers.

The commands and the environment are read from ``docker-compose.yml``; only the
network addresses change (the compose service names ``postgres`` and ``redis``
become this test's servers, and the API listens on a free loopback port), plus
the timing overrides a test asks for (short leases and polls). tests/test_deploy.py
checks that nothing else differs.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.support.services import PostgresServer, RedisServer, free_port

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
BIN_DIR = Path(sys.executable).parent

ADDRESS_KEYS = ("BACKPROP_DATABASE_URL", "BACKPROP_BROKER_URL")
"""Environment values that name other compose services (replaced by local addresses)."""

TUNING_KEYS = frozenset(
    {
        "BACKPROP_LEASE_SECONDS",
        "BACKPROP_POLL_SECONDS",
        "BACKPROP_FLUSH_SECONDS",
        "BACKPROP_AUTO_CHECKPOINT_SECONDS",
        "BACKPROP_MAX_ATTEMPTS",
        "BACKPROP_BROKER_VISIBILITY_TIMEOUT",
        "BACKPROP_BROKER_RESTORE_INTERVAL",
    }
)
"""The only settings a test may add on top of the compose environment (timings)..."""
ACCESS_KEYS = frozenset({"BACKPROP_API_KEYS"})
"""... and API keys, for tests with several tenants (compose leaves the API open)."""

FAST_HEALING = {
    "BACKPROP_LEASE_SECONDS": 3,
    "BACKPROP_POLL_SECONDS": 0.2,
    "BACKPROP_FLUSH_SECONDS": 0.2,
    "BACKPROP_AUTO_CHECKPOINT_SECONDS": 0.5,
    "BACKPROP_BROKER_RESTORE_INTERVAL": 0.5,
}
"""Short leases and polls, so that the failure tests heal in seconds."""


def compose() -> dict[str, Any]:
    """The parsed ``docker-compose.yml``."""
    data: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return data


def service(name: str) -> dict[str, Any]:
    """One service of the compose file."""
    found: dict[str, Any] = compose()["services"][name]
    return found


def service_command(name: str) -> list[str]:
    """The service's ``command`` as an argument list."""
    command = service(name)["command"]
    assert isinstance(command, list), "compose commands are written in exec form"
    return [str(part) for part in command]


def service_environment(name: str) -> dict[str, str]:
    """The service's ``environment`` as a dict of strings."""
    environment = service(name).get("environment") or {}
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    return {str(key): str(value) for key, value in environment.items()}


def _replace_option(argv: list[str], option: str, value: str) -> list[str]:
    out = list(argv)
    index = out.index(option)
    out[index + 1] = value
    return out


def api_argv(port: int) -> list[str]:
    """The compose ``api`` command, listening on 127.0.0.1:``port`` instead of 0.0.0.0:8000."""
    argv = _replace_option(service_command("api"), "--host", "127.0.0.1")
    return _replace_option(argv, "--port", str(port))


def worker_argv() -> list[str]:
    """The compose ``worker`` command, unchanged."""
    return service_command("worker")


def local_environment(
    name: str, *, database_url: str, broker_url: str, tuning: Mapping[str, object] | None = None
) -> dict[str, str]:
    """The compose environment of ``name`` with local addresses and ``tuning`` overrides."""
    environment = service_environment(name)
    for key in ADDRESS_KEYS:
        assert key in environment, f"{key} missing from the compose {name} environment"
    environment["BACKPROP_DATABASE_URL"] = database_url
    environment["BACKPROP_BROKER_URL"] = broker_url
    extra = {key: str(value) for key, value in (tuning or {}).items()}
    unknown = set(extra) - TUNING_KEYS - ACCESS_KEYS
    assert not unknown, f"not a timing or API-key override: {sorted(unknown)}"
    environment.update(extra)
    return environment


def _executable(argv: list[str]) -> list[str]:
    """Run ``backprop`` from this virtualenv (the image has it on PATH)."""
    assert argv[0] == "backprop"
    return [str(BIN_DIR / "backprop"), *argv[1:]]


def _clean_env(environment: Mapping[str, str]) -> dict[str, str]:
    base = {key: value for key, value in os.environ.items() if not key.startswith("BACKPROP_")}
    return {**base, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", **environment}


class Process:
    """One ``backprop`` process with its log file; restartable."""

    def __init__(self, argv: list[str], env: Mapping[str, str], log_path: Path) -> None:
        self.argv = argv
        self.env = dict(env)
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> None:
        self.starts += 1
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                _executable(self.argv),
                env=_clean_env(self.env),
                cwd=self.log_path.parent,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill9(self) -> None:
        """SIGKILL the process itself (its pool processes die with it: PR_SET_PDEATHSIG)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM (what ``docker stop`` sends) and wait; return the exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def stop(self) -> None:
        """Stop the process and its whole session (children included)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(20)
        with contextlib.suppress(OSError):
            os.killpg(self.process.pid, signal.SIGKILL)
        if self.process.poll() is None:
            self.process.wait(10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def events(self) -> list[dict[str, Any]]:
        """The JSON log lines of this process (other lines are skipped)."""
        found = []
        for line in self.log().splitlines():
            if line.startswith("{"):
                try:
                    found.append(json.loads(line))
                except ValueError:
                    continue
        return found


class Stack:
    """PostgreSQL + Redis (given) + ``backprop serve`` + ``backprop worker`` processes."""

    def __init__(
        self,
        workdir: Path,
        *,
        database_url: str,
        broker_url: str,
        workers: int = 2,
        tuning: Mapping[str, object] | None = None,
    ) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        api_env = local_environment(
            "api", database_url=database_url, broker_url=broker_url, tuning=tuning
        )
        worker_env = local_environment(
            "worker", database_url=database_url, broker_url=broker_url, tuning=tuning
        )
        self.api = Process(api_argv(self.port), api_env, workdir / "api.log")
        self.workers = [
            Process(worker_argv(), worker_env, workdir / f"worker-{index}.log")
            for index in range(workers)
        ]

    def start(self, timeout: float = 120.0) -> None:
        """Start everything at once and wait until the API is healthy and workers are up."""
        for worker in self.workers:
            worker.start()
        self.api.start()
        self.wait_healthy(timeout)
        for worker in self.workers:
            self.wait_worker_ready(worker, timeout)

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.api.alive():
                raise RuntimeError(f"backprop serve exited:\n{self.api.log()[-5000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"backprop serve is not healthy:\n{self.api.log()[-5000:]}")

    @staticmethod
    def wait_worker_ready(worker: Process, timeout: float) -> None:
        """Wait for Celery's "ready" line in the worker's log."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not worker.alive():
                raise RuntimeError(f"backprop worker exited:\n{worker.log()[-5000:]}")
            if any(str(event.get("message", "")).endswith(" ready.") for event in worker.events()):
                return
            time.sleep(0.1)
        raise RuntimeError(f"backprop worker is not ready:\n{worker.log()[-5000:]}")

    def stop(self) -> None:
        """Stop every process, all at once (workers hand their runs back first)."""
        processes = list(self.processes())
        for process in processes:
            if process.alive():
                assert process.process is not None
                process.process.send_signal(signal.SIGTERM)
        for process in processes:
            process.stop()

    def processes(self) -> Iterator[Process]:
        yield self.api
        yield from self.workers


StartStack = Callable[..., Stack]
"""``start(postgres, redis, workers=2, **tuning)``: a started :class:`Stack` on a fresh
database of ``postgres`` and a fresh Redis database, with :data:`FAST_HEALING` timings."""


@contextlib.contextmanager
def stacks(workdir: Path) -> Iterator[StartStack]:
    """Start stacks on demand; stop them and drop their databases at the end.

    The database starts empty, as compose's does: the API migrates it and the
    workers wait for the schema.
    """
    started: list[tuple[Stack, PostgresServer, str]] = []

    def start(
        postgres: PostgresServer, redis: RedisServer, workers: int = 2, **tuning: object
    ) -> Stack:
        database_url = postgres.create_database()
        stack = Stack(
            workdir,
            database_url=database_url,
            broker_url=redis.database_url(),
            workers=workers,
            tuning={**FAST_HEALING, **tuning},
        )
        started.append((stack, postgres, database_url))
        stack.start()
        return stack

    try:
        yield start
    finally:
        for stack, _, _ in started:
            stack.stop()
        for _, postgres, database_url in started:
            postgres.drop_database(database_url)
