"""Large payloads against a real ``backprop serve`` (issue 10, defects 4 and 13).

A refused over-limit body must not grow the server's memory by the body's worth of
Python objects (it grew by 2.9 GB); a large upload and reading it back must not stall
``/healthz`` (2.8 s and 1.2-4.2 s before). Bounds are generous: the benchmark
(``benchmarks/memory.py``) measures the figures.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from benchmarks.load import rss_kib
from tests.support.server import ServerProcess, running_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(tmp_path_factory.mktemp("payloads"), {"BACKPROP_WORKERS": "0"}) as started:
        yield started


class PeakRss:
    """The peak RSS of a process, sampled every 10 ms while the block runs."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak_kib = max(self.peak_kib, rss_kib(self.pid))
            time.sleep(0.01)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def test_a_refused_over_limit_body_never_materializes(server: ServerProcess) -> None:
    """The issue's reproduction: 20M cells in 57 MiB of JSON, over the 10M-cell limit."""
    assert server.process is not None
    rows = 2_000_000
    body = (
        b'{"name":"big","X":['
        + b",".join([b"[0,0,0,0,0,0,0,0,0]"] * rows)
        + b'],"y":['
        + b",".join([b"0"] * rows)
        + b"]}"
    )
    baseline = rss_kib(server.process.pid)
    with PeakRss(server.process.pid) as rss:
        response = httpx.post(
            f"{server.url}/v1/datasets",
            content=body,
            headers={"content-type": "application/json"},
            timeout=300,
        )
    assert response.status_code == 422, response.text[:500]
    assert "BACKPROP_MAX_DATASET_CELLS" in response.json()["detail"][0]["msg"]
    grown = (rss.peak_kib - baseline) / 1024
    assert grown < 100, f"the server grew by {grown:.0f} MiB for a refused body"


REQUEST = """
import sys, httpx
method, url, body_path, out_path = sys.argv[1:5]
body = open(body_path, "rb").read() if body_path != "-" else None
response = httpx.request(method, url, content=body, timeout=600,
                         headers={"content-type": "application/json"})
open(out_path, "wb").write(response.content)
print(response.status_code)
"""


def _in_another_process(method: str, url: str, body: str, out: Path) -> subprocess.Popen[str]:
    """The request, sent by another process (in this one it would compete with the
    /healthz poller for the GIL, and the poller would measure the client)."""
    return subprocess.Popen(
        [sys.executable, "-c", REQUEST, method, url, body, str(out)],
        stdout=subprocess.PIPE,
        text=True,
    )


def _healthz_max_while(server: ServerProcess, done: Callable[[], bool]) -> tuple[float, int]:
    worst, count = 0.0, 0
    with httpx.Client(base_url=server.url, timeout=60) as client:
        while not done():
            started = time.perf_counter()
            assert client.get("/healthz").status_code == 200
            worst = max(worst, time.perf_counter() - started)
            count += 1
            time.sleep(0.01)
    return worst, count


def test_healthz_answers_while_a_large_body_is_parsed_and_read_back(
    server: ServerProcess, tmp_path: Path
) -> None:
    """12,000 x 784 as JSON (about 50 MiB), uploaded by another process while this one
    polls /healthz; then ``GET /data`` of it. Before, /healthz stalled 2.8 s and 1.2-4.2 s."""
    rng = np.random.default_rng(0)
    images = rng.random((12_000, 784)).round(3)
    labels = rng.integers(0, 10, 12_000)
    path = tmp_path / "body.json"
    with path.open("wb") as file:
        file.write(b'{"name":"mnist-like","X":[')
        for index, row in enumerate(images):
            file.write((b"," if index else b"") + b"[" + ",".join(map(str, row)).encode() + b"]")
        file.write(b'],"y":[' + ",".join(map(str, labels)).encode() + b"]}")
    answer = tmp_path / "answer.json"
    upload = _in_another_process("POST", f"{server.url}/v1/datasets", str(path), answer)
    try:
        worst, count = _healthz_max_while(server, lambda: upload.poll() is not None)
    finally:
        status = upload.communicate(timeout=600)[0].strip()
    assert status == "201", answer.read_text()[:500]
    assert count > 10 and worst < 1.0, f"/healthz took up to {worst:.2f} s during the upload"
    dataset_id = json.loads(answer.read_text())["id"]

    data = tmp_path / "data.json"
    reader = _in_another_process(
        "GET", f"{server.url}/v1/datasets/{dataset_id}/data?limit=12000", "-", data
    )
    try:
        worst, count = _healthz_max_while(server, lambda: reader.poll() is not None)
    finally:
        status = reader.communicate(timeout=600)[0].strip()
    assert status == "200"
    assert np.array_equal(np.asarray(json.loads(data.read_bytes())["X"]), images)
    assert count > 5 and worst < 1.0, f"/healthz took up to {worst:.2f} s during GET /data"


def _network(client: httpx.Client, units: int) -> str:
    layers = [{"units": units, "activation": "tanh"}, {"units": 1, "activation": "sigmoid"}]
    response = client.post("/v1/networks", json={"name": "wide", "input_size": 2, "layers": layers})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def test_memory_of_large_requests_returns_to_the_system(server: ServerProcess) -> None:
    """Two 1,000,000-unit networks created and one's weights read: the server's RSS
    ends within 10% of where it began (issue 10's RSS-after goal). With glibc's
    adaptive mmap threshold their freed 8-32 MiB arrays stayed in the heap: +75%
    (211 → 370 MiB) where ``backprop serve`` now ends at +6% (app/memory.py)."""
    assert server.process is not None
    with httpx.Client(base_url=server.url, timeout=120) as client:
        for _ in range(3):
            _network(client, 10)
        time.sleep(1)
        baseline = rss_kib(server.process.pid)
        _network(client, 1_000_000)
        wide = _network(client, 1_000_000)
        assert client.get(f"/v1/networks/{wide}/weights").status_code == 200
        time.sleep(2)
        after = rss_kib(server.process.pid)
    grown = (after - baseline) / baseline
    assert grown < 0.10, f"RSS {baseline // 1024} → {after // 1024} MiB ({grown:+.0%})"
