"""Start a real ``backprop serve`` process for integration and browser tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx

BACKPROP = Path(sys.executable).with_name("backprop")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """One ``backprop serve`` subprocess; logs go to ``<workdir>/serve-<n>.log``."""

    def __init__(self, workdir: Path, env: Mapping[str, str] | None = None) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "BACKPROP_DATABASE_URL": f"sqlite:///{workdir / 'backprop.db'}",
            "BACKPROP_WORKERS": "2",
            **(env or {}),
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, timeout: float = 60.0) -> None:
        """Start the server and wait until ``/healthz`` answers 200."""
        self.starts += 1
        log = (self.workdir / f"serve-{self.starts}.log").open("wb")
        self.process = subprocess.Popen(
            [str(BACKPROP), "serve", "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=self.workdir,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"backprop serve exited early:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"backprop serve did not become healthy:\n{self.log()}")

    def kill(self) -> None:
        """``kill -9`` the server process only (its workers must notice and exit)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        """Stop the server and anything left in its process group."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def log(self) -> str:
        """Everything the server printed so far, across restarts."""
        return "\n".join(
            path.read_text(errors="replace") for path in sorted(self.workdir.glob("serve-*.log"))
        )


@contextmanager
def running_server(workdir: Path, env: Mapping[str, str] | None = None) -> Iterator[ServerProcess]:
    """A started server, stopped on exit."""
    server = ServerProcess(workdir, env)
    server.start()
    try:
        yield server
    finally:
        server.stop()
