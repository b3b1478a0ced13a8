"""A real ``backprop serve`` subprocess on a free port with a fresh SQLite file."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.processes import descendant_pids

BACKPROP = Path(sys.executable).parent / "backprop"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Server:
    """One ``backprop serve`` process; restartable on the same database."""

    def __init__(self, db_path: Path, log_dir: Path, env: dict[str, str]) -> None:
        self.db_path = db_path
        self.log_dir = log_dir
        self.env = env
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"server-{self.starts}.log"

    def start(self) -> None:
        self.starts += 1
        env = {
            **os.environ,
            "BACKPROP_DATABASE_URL": f"sqlite:///{self.db_path}",
            "BACKPROP_POLL_SECONDS": "0.2",
            **self.env,
        }
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [str(BACKPROP), "serve", "--host", "127.0.0.1", "--port", str(self.port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, for kill9_group
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log_path.read_text()
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"server did not start:\n{self.log_path.read_text()}")

    def kill9(self) -> list[int]:
        """SIGKILL the server; return the pids of the processes it started (its fork
        server and workers, its resource tracker), now orphaned or dead."""
        assert self.process is not None
        workers = descendant_pids(self.process.pid)
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        return workers

    def kill9_group(self) -> list[int]:
        """SIGKILL the server's whole process group at once (a crash of the service);
        return the pids of the processes it had started."""
        assert self.process is not None
        workers = descendant_pids(self.process.pid)
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)
        return workers

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    def logs(self) -> str:
        return "".join(
            (self.log_dir / f"server-{i}.log").read_text(errors="replace")
            for i in range(1, self.starts + 1)
        )


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """``serve(BACKPROP_WORKERS="2")`` starts a server on a fresh database."""
    servers: list[Server] = []

    def start(**env: Any) -> Server:
        server = Server(tmp_path / "backprop.db", tmp_path, {k: str(v) for k, v in env.items()})
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
