"""A webhook receiver for tests: an HTTP server on 127.0.0.1 (the only address tests send to, with
CHECKIN_WEBHOOK_ALLOW_LOOPBACK=true) that keeps every request and answers what the test says."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from standardwebhooks import Webhook


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes
    status: int  # what the receiver answered
    at: float

    @property
    def event_id(self) -> str:
        return self.headers["webhook-id"]

    @property
    def payload(self) -> dict:
        return json.loads(self.body)


class Receiver:
    """Answers `answer(request number)` (default 204) after `delay_s`; `received` keeps every request."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.answer: Callable[[int], int] = lambda _: 204
        self.delay_s = 0.0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (the standard library's name)
                length = int(self.headers.get("content-length", 0))
                body = self.rfile.read(length)
                if len(body) < length:  # the sender went away mid-request (a killed process): nothing arrived
                    self.close_connection = True
                    return
                if receiver.delay_s:
                    time.sleep(receiver.delay_s)
                with receiver._lock:
                    status = receiver.answer(len(receiver.received))
                    receiver.received.append(
                        Received({k.lower(): v for k, v in self.headers.items()}, body, status, time.monotonic())
                    )
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def accepted(self) -> dict[str, list[Received]]:
        """{webhook-id: its requests answered 2xx}."""
        with self._lock:
            found: dict[str, list[Received]] = {}
            for request in self.received:
                if 200 <= request.status < 300:
                    found.setdefault(request.event_id, []).append(request)
            return found

    def by_id(self) -> dict[str, list[Received]]:
        """{webhook-id: every request carrying it}."""
        with self._lock:
            found: dict[str, list[Received]] = {}
            for request in self.received:
                found.setdefault(request.event_id, []).append(request)
            return found

    def wait_for(self, condition: Callable[[Receiver], bool], timeout_s: float = 30, what: str = "") -> None:
        deadline = time.monotonic() + timeout_s
        while not condition(self):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what or condition}; received {len(self.received)}")
            time.sleep(0.05)


def verified(secret: str, request: Received) -> dict:
    """The payload, verified as a receiver does with the standardwebhooks library (raises if not)."""
    return Webhook(secret).verify(request.body, request.headers)


@pytest.fixture
def receiver():
    """A receiver on 127.0.0.1 for the test, closed after it."""
    server = Receiver()
    yield server
    server.close()
