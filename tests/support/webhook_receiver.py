"""A real HTTP server in a thread that receives webhooks and answers from a script."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    """One request the receiver got."""

    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """The receiver's script (statuses to answer, then 200) and what it received."""

    statuses: list[int] = field(default_factory=list)
    delay: float = 0.0
    """Seconds to wait before answering each request."""
    answer_bytes: int = 2
    """Length of each answer's body."""
    sent_bytes: int = 0
    """Body bytes the last answer got out before the sender hung up."""
    received: list[Received] = field(default_factory=list)
    url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, request: Received) -> int:
        with self.lock:
            self.received.append(request)
            return self.statuses.pop(0) if self.statuses else 200


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            headers = {name.lower(): value for name, value in self.headers.items()}
            status = receiver.answer(Received(self.path, headers, body))
            time.sleep(receiver.delay)
            self.send_response(status)
            if 300 <= status < 400:
                self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
            self.send_header("Content-Length", str(receiver.answer_bytes))
            self.end_headers()
            receiver.sent_bytes = 0
            chunk = b"o" * min(receiver.answer_bytes, 65536)
            try:
                while receiver.sent_bytes < receiver.answer_bytes:
                    part = chunk[: receiver.answer_bytes - receiver.sent_bytes]
                    self.wfile.write(part)
                    receiver.sent_bytes += len(part)
            except OSError:  # the sender stopped reading and closed the connection
                return

        def log_message(self, format: str, *args: object) -> None:
            del format, args

    return Handler


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        del request, client_address  # a sender that gave up (timed out) closed the socket


@contextmanager
def webhook_receiver(statuses: list[int] | None = None, delay: float = 0.0) -> Iterator[Receiver]:
    """Serve on 127.0.0.1 (a free port) until the block ends."""
    receiver = Receiver(statuses=list(statuses or []), delay=delay)
    server = _Server(("127.0.0.1", 0), _handler(receiver))
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/backprop?source=test"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
