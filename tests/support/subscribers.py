"""Event-stream clients that attack a server the way the issue's reproductions did.

:class:`Subscriber` reads ``GET /v1/runs/{id}/events`` over a raw HTTP/1.1 socket
(one asyncio connection each, chunked decoding by hand: ``httpx`` costs more CPU
per chunk than the server, and 200 of them on 2 shared cores would measure
themselves). :class:`StalledSubscriber` sends the request and never reads. Used by
``tests/integration/test_event_streams.py`` and ``benchmarks/load.py``, with the
``/proc`` readings (RSS, CPU time) of the server process.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

_ID = re.compile(rb"^id: ([0-9]+)$", re.MULTILINE)


def rss_kib(pid: int) -> int:
    """The resident set size of ``pid`` in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) used so far by the process ``pid`` itself (not its children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _request(path: str, headers: Mapping[str, str] | None) -> bytes:
    extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}\r\n".encode()


@dataclass
class Subscriber:
    """One reader of an event stream; what it saw so far.

    ``keep_ids`` keeps every progress id (for exactness checks); without it only the
    last one is kept (cheap enough for hundreds of subscribers).
    """

    port: int
    path: str
    headers: Mapping[str, str] | None = None
    keep_ids: bool = False
    status: int = 0
    last_id: int = 0
    last_at: float = 0.0
    progress: int = 0
    skipped: int = 0
    ended: bool = False
    clean_close: bool = False
    error: str | None = None
    ids: list[int] = field(default_factory=list)
    _buffer: bytes = b""
    _writer: asyncio.StreamWriter | None = None

    async def read(self, until: float | None = None) -> None:
        """Connect, then read until the stream closes or ``time.monotonic() >= until``."""
        try:
            reader, self._writer = await asyncio.open_connection("127.0.0.1", self.port)
            self._writer.write(_request(self.path, self.headers))
            await self._writer.drain()
            timeout = None if until is None else max(0.0, until - time.monotonic())
            async with asyncio.timeout(timeout):
                await self._read_response(reader)
        except TimeoutError:
            pass
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            if self._writer is not None:  # not the end of a connection it closed itself
                self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.close()

    async def _read_response(self, reader: asyncio.StreamReader) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        self.status = int(head.split(b" ", 2)[1])
        if self.status != 200:
            self.error = head.decode(errors="replace")
            return
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            if size == 0:
                await reader.readexactly(2)
                self.clean_close = True
                return
            self._take((await reader.readexactly(size + 2))[:-2])

    def _take(self, data: bytes) -> None:
        self._buffer += data
        cut = self._buffer.rfind(b"\n\n")
        if cut < 0:
            return
        complete, self._buffer = self._buffer[: cut + 2], self._buffer[cut + 2 :]
        self.progress += complete.count(b"event: progress\n")
        self.skipped += complete.count(b"event: skipped\n")
        self.ended = self.ended or b"event: end\n" in complete
        if self.keep_ids:
            self.ids.extend(int(value) for value in _ID.findall(complete))
        start = complete.rfind(b"id: ")
        if start >= 0:
            self.last_id = int(complete[start + 4 : complete.index(b"\n", start)])
            self.last_at = time.monotonic()

    def close(self) -> None:
        """Drop the connection (a client that goes away)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class StalledSubscriber:
    """Opens a stream and never reads it (a small receive buffer, so the kernel holds little)."""

    def __init__(self, port: int, path: str, headers: Mapping[str, str] | None = None) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.connect(("127.0.0.1", port))
        self.sock.sendall(_request(path, headers))

    def close(self) -> None:
        """Go away."""
        with contextlib.suppress(OSError):
            self.sock.close()
