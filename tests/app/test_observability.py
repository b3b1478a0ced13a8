"""Structured logs (one JSON line per request and per run transition) and /metrics."""

from __future__ import annotations

import io
import json
import logging
import sys
import threading
import time
from typing import Any

import pytest

from app.logs import JsonFormatter, configure_logging, log_transition, stop_background_logging
from tests.conftest import create_xor, run_body, wait_terminal


def _records(caplog: pytest.LogCaptureFixture, event: str) -> list[logging.LogRecord]:
    return [record for record in caplog.records if getattr(record, "event", None) == event]


def test_json_formatter_writes_one_object_per_line_with_extra_fields() -> None:
    record = logging.LogRecord("backprop.runs", logging.INFO, __file__, 1, "run %s", ("r",), None)
    record.run_id = "run_1"
    record.epoch = 3
    record.loss = float("nan")
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "run r" and entry["level"] == "INFO"
    assert entry["logger"] == "backprop.runs" and entry["time"].endswith("+00:00")
    assert (entry["run_id"], entry["epoch"], entry["loss"]) == ("run_1", 3, None)
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        failed = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    assert "ValueError: boom" in json.loads(JsonFormatter().format(failed))["exc_info"]


def test_configure_logging_json_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        configure_logging("json")
        log_transition("run_abc", "running", previous="queued", worker="h:1:x", epoch=0)
        logging.getLogger("uvicorn.error").info("uvicorn says %s", "hi")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    transition = next(line for line in lines if line.get("event") == "run.transition")
    assert transition["run_id"] == "run_abc" and transition["status"] == "running"
    assert transition["previous"] == "queued" and transition["worker"] == "h:1:x"
    assert any(line["message"] == "uvicorn says hi" for line in lines)


class _StalledStream(io.StringIO):
    """A stderr whose writes wait until released (a full pipe, a slow disk)."""

    def __init__(self) -> None:
        super().__init__()
        self.released = threading.Event()
        self.writers: set[str] = set()

    def write(self, text: str) -> int:
        self.writers.add(threading.current_thread().name)
        self.released.wait(10)
        return super().write(text)


def test_background_logging_never_waits_for_the_stream_and_loses_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stream = _StalledStream()
    monkeypatch.setattr(sys, "stderr", stream)
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        configure_logging("json", background=True)
        started = time.monotonic()
        for number in range(50):
            logging.getLogger("backprop.test").info("line %d", number, extra={"n": number})
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("backprop.test").exception("failed")
        logged_in = time.monotonic() - started
        stream.released.set()
        stop_background_logging()  # as at exit: what is queued is written
    finally:
        stream.released.set()
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    assert logged_in < 5  # the stream stalls each write for up to 10 s
    assert threading.current_thread().name not in stream.writers
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["n"] for line in lines if "n" in line] == list(range(50))
    assert "ValueError: boom" in lines[-1]["exc_info"]


def test_requests_and_transitions_are_logged_with_run_ids(
    make_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with make_client() as client:
        network_id, dataset_id = create_xor(client)
        run_id = client.post("/v1/runs", json=run_body(network_id, dataset_id)).json()["id"]
        client.get(f"/v1/runs/{run_id}")
        client.post(f"/v1/runs/{run_id}/cancel")
        client.get("/v1/runs/run_nope")
    requests = _records(caplog, "http.request")
    created = [r for r in requests if r.method == "POST" and r.path == "/v1/runs"]
    assert len(created) == 1 and created[0].status == 202 and created[0].run_id == run_id
    read = [r for r in requests if r.method == "GET" and r.path == f"/v1/runs/{run_id}"]
    assert read[0].route == "/v1/runs/{run_id}" and read[0].duration_ms >= 0
    assert any(r.status == 404 and r.run_id == "run_nope" for r in requests)
    transitions = [(r.run_id, r.status) for r in _records(caplog, "run.transition")]
    assert transitions == [(run_id, "queued"), (run_id, "cancelled")]


def _sample(metrics: str, name: str) -> float:
    """The value of the sample ``name`` (with its labels, as exposed)."""
    for line in metrics.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")


def test_metrics_report_runs_queue_epochs_and_latency(make_client: Any) -> None:
    with make_client(workers=1) as client:
        network_id, dataset_id = create_xor(client)
        done = client.post("/v1/runs", json=run_body(network_id, dataset_id, epochs=300)).json()
        assert wait_terminal(client, done["id"])["status"] == "succeeded"
        metrics = client.get("/metrics")
        assert metrics.status_code == 200
        assert metrics.headers["content-type"].startswith("text/plain")
        text = metrics.text
        assert _sample(text, 'backprop_runs{status="succeeded"}') == 1
        assert _sample(text, 'backprop_runs{status="queued"}') == 0
        assert _sample(text, "backprop_queue_depth") == 0
        assert _sample(text, "backprop_epochs_total") == 300
        assert "backprop_epochs_per_second" in text
        assert "backprop_expired_leases 0.0" in text
        assert (
            'backprop_http_request_duration_seconds_count{method="POST",route="/v1/runs",'
            'status="202"} 1.0'
        ) in text
        assert 'route="/v1/runs/{run_id}"' in text  # templates, not one series per id


def test_metrics_count_queued_runs(make_client: Any) -> None:
    with make_client() as client:  # no workers: runs stay queued
        network_id, dataset_id = create_xor(client)
        for seed in range(3):
            client.post("/v1/runs", json=run_body(network_id, dataset_id, seed=seed))
        text = client.get("/metrics").text
        assert _sample(text, "backprop_queue_depth") == 3
        assert _sample(text, 'backprop_runs{status="queued"}') == 3


FORGED = "2026-01-01 00:00:00,000 INFO [1] backprop.http: FORGED"


def test_text_lines_escape_control_characters_and_mark_traceback_lines() -> None:
    from app.logs import CONTINUATION, TextFormatter

    formatter = TextFormatter()
    for separator in ("\n", "\r", "\x1b[2K\r", "\x85", "\u2028", "\x0b"):
        record = logging.LogRecord(
            "backprop.http",
            logging.INFO,
            __file__,
            1,
            "GET %s 404",
            (f"/x{separator}{FORGED}",),
            None,
        )
        text = formatter.format(record)
        assert len(text.splitlines()) == 1, repr(text)
        assert FORGED in text
    try:
        raise ValueError(f"bad id x\n{FORGED}\r\n{FORGED}")
    except ValueError:
        import sys

        failed = logging.LogRecord(
            "x", logging.ERROR, __file__, 1, "id %s", ("y\nz",), sys.exc_info()
        )
    lines = formatter.format(failed).splitlines()
    assert lines[0].endswith("x: id y\\nz")
    assert len(lines) > 3 and all(line.startswith(CONTINUATION) for line in lines[1:])
    assert lines[-2:] == [f"{CONTINUATION}{FORGED}\\r", f"{CONTINUATION}{FORGED}"]
    entry = JsonFormatter().format(
        logging.LogRecord("x", logging.INFO, __file__, 1, "a\u2028b\x85c\nd", (), None)
    )
    assert len(entry.splitlines()) == 1 and json.loads(entry)["message"] == "a\u2028b\x85c\nd"


def test_made_up_methods_share_one_metric_label(make_client: Any) -> None:
    with make_client() as client:
        for i in range(50):
            assert client.request(f"X{i:03d}", "/v1/networks").status_code == 405
        text = client.get("/metrics").text
    assert 'method="other",route="/v1/networks",status="405"} 50.0' in text
    assert 'method="X' not in text
