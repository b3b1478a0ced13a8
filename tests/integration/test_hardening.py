"""A real ``backprop serve``: a 50 MB body against a 1 MB limit, and keys kept out of logs."""

from __future__ import annotations

import select
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import XOR_NETWORK
from tests.support.server import ServerProcess, running_server

pytestmark = pytest.mark.integration

KEY = "secret-key-that-must-never-be-logged"
WRONG = "wrong-key-that-must-never-be-logged"
LIMIT = 1024 * 1024
BODY = 50 * 1024 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {"BACKPROP_MAX_BODY_BYTES": str(LIMIT), "BACKPROP_API_KEYS": KEY, "BACKPROP_WORKERS": "1"}
    with running_server(tmp_path_factory.mktemp("hardening"), env) as started:
        yield started


def _memory_kib(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0])
    return fields


def _send_chunked(port: int, total: int, declare_length: bool) -> tuple[bytes, int]:
    """POST ``total`` bytes in 64 KiB pieces until the server answers; return
    (its status line, bytes sent)."""
    head = (
        "POST /v1/datasets HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {KEY}\r\nContent-Type: application/json\r\n"
    )
    head += (
        f"Content-Length: {total}\r\n\r\n"
        if declare_length
        else "Transfer-Encoding: chunked\r\n\r\n"
    )
    piece = b" " * 65536
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head.encode())
        try:
            while sent < total:
                if select.select([sock], [], [], 0)[0]:
                    break  # the server answered before the body ended
                sock.sendall(
                    f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
                    if not declare_length
                    else piece
                )
                sent += len(piece)
            if not declare_length and sent >= total:
                sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        response = sock.recv(4096)
    return response.split(b"\r\n", 1)[0], sent


@pytest.mark.parametrize("declare_length", [False, True], ids=["chunked", "content-length"])
def test_a_50mb_body_is_refused_without_buffering_it(
    server: ServerProcess, declare_length: bool
) -> None:
    assert server.process is not None
    pid = server.process.pid
    before = _memory_kib(pid)
    status, sent = _send_chunked(server.port, BODY, declare_length)
    after = _memory_kib(pid)
    assert status.startswith(b"HTTP/1.1 413"), status
    assert sent < BODY  # refused while the body was still arriving
    growth_mib = (after["VmHWM"] - before["VmHWM"]) / 1024
    assert growth_mib < 10, (before, after)
    assert httpx.get(f"{server.url}/healthz").status_code == 200


def test_keys_never_reach_the_logs(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        ok = client.post(
            "/v1/networks", json=XOR_NETWORK, headers={"Authorization": f"Bearer {KEY}"}
        )
        assert ok.status_code == 201
        for headers in ({"Authorization": f"Bearer {WRONG}"}, {"Authorization": WRONG}, {}):
            assert client.get("/v1/networks", headers=headers).status_code == 401
        unknown = client.get(f"/v1/runs/{WRONG}", headers={"Authorization": f"Bearer {KEY}"})
        assert unknown.status_code == 404
    log = server.log()
    assert "/v1/networks" in log  # the access log is on, so this checks something
    assert KEY not in log and "Authorization" not in log and "Bearer" not in log
    assert WRONG not in log.replace(f"/v1/runs/{WRONG}", "")
