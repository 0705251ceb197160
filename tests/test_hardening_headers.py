"""The request head is bounded: 431 past CHECKIN_MAX_HEADER_BYTES, and a huge head never grows the server.

Tested twice over real sockets: against the suite's server (the portable rule, api.limits.HeaderSizeLimit)
and against `checkin-offers serve` itself in a process of its own (the production protocol, which also
stops reading a head still arriving, so its memory can be measured)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from api.limits import head_size
from tests.conftest import _free_port
from tests.test_errors_and_limits import assert_problem

ROOT = Path(__file__).resolve().parents[1]
MB = 1024 * 1024


def _padded(base_url: str, total: int) -> httpx.Request:
    """A GET whose target and header lines come to exactly `total` bytes, as the limit counts them."""
    client = httpx.Client(base_url=base_url)
    request = client.build_request("GET", "/healthz", headers={"X-Pad": ""})
    target = request.url.raw_path
    size = head_size(target, [(k.lower(), v) for k, v in request.headers.raw])
    request = client.build_request("GET", "/healthz", headers={"X-Pad": "p" * (total - size)})
    assert head_size(target, [(k.lower(), v) for k, v in request.headers.raw]) == total
    return request


def _send(base_url: str, request: httpx.Request) -> httpx.Response:
    with httpx.Client(base_url=base_url, timeout=10) as client:
        return client.send(request)


def _assert_boundary(base_url: str, limit: int) -> None:
    assert _send(base_url, _padded(base_url, limit)).status_code == 200
    r = _send(base_url, _padded(base_url, limit + 1))
    body = assert_problem(r, 431, "request_header_fields_too_large")
    assert str(limit) in body["detail"]
    assert r.headers["connection"] == "close"


def _raw_request_with_header(port: int, header_bytes: int) -> tuple[bytes, float]:
    """Sends a GET with one header of this size over a raw socket; returns what came back and how long it took.
    The server may stop reading and close before all is sent: that is the point, not an error."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Huge: ")
        chunk = b"h" * 65536
        try:
            for _ in range(header_bytes // len(chunk)):
                sock.sendall(chunk)
            sock.sendall(b"\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = b""
        try:
            while data := sock.recv(65536):
                answer += data
        except ConnectionResetError:
            pass
    return answer, time.monotonic() - started


# --- the suite's server: the rule ------------------------------------------------------------------


def test_a_head_at_the_limit_passes_and_one_byte_more_is_431(base_url, settings):
    _assert_boundary(base_url, settings.max_header_bytes)


def test_a_long_url_counts_toward_the_limit(http, settings):
    r = http.get("/healthz?" + "q" * settings.max_header_bytes)
    assert_problem(r, 431, "request_header_fields_too_large")


def test_431_comes_before_authentication_and_the_body(http, settings):
    r = http.post(
        "/v1/venues",
        content=b"{not json",
        headers={"Content-Type": "application/json", "X-Pad": "p" * settings.max_header_bytes},
    )
    assert_problem(r, 431, "request_header_fields_too_large")


def test_the_limit_must_be_positive(monkeypatch):
    from pydantic import ValidationError

    from core.settings import Settings

    for value in ("0", "-1"):
        monkeypatch.setenv("CHECKIN_MAX_HEADER_BYTES", value)
        with pytest.raises(ValidationError, match="max_header_bytes"):
            Settings()
    monkeypatch.setenv("CHECKIN_MAX_HEADER_BYTES", "1")
    assert Settings().max_header_bytes == 1


# --- `checkin-offers serve`: the rule and the memory -------------------------------------------------


def _rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))


@pytest.fixture(scope="module")
def served(database_url: str) -> Iterator[tuple[str, int, subprocess.Popen[bytes]]]:
    """`checkin-offers serve` (uvloop, the production protocol) on a free port, in a process of its own."""
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "checkin_offers.cli", "serve", "--port", str(port), "--workers", "1"],
        cwd=ROOT,
        env=os.environ.copy(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            raise RuntimeError("checkin-offers serve did not start")
        time.sleep(0.1)
    yield base_url, port, process
    process.terminate()
    process.wait(timeout=10)


def test_the_served_process_applies_the_same_limit(served, settings):
    base_url, _, _ = served
    _assert_boundary(base_url, settings.max_header_bytes)


def test_a_multi_megabyte_header_is_refused_quickly_and_the_process_does_not_grow(served):
    base_url, port, process = served
    answer, seconds = _raw_request_with_header(port, 10 * MB)  # warm up: first-use allocations
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    before = _rss_kib(process.pid)

    results: list[tuple[bytes, float]] = []

    def one() -> None:
        results.append(_raw_request_with_header(port, 10 * MB))

    threads = [threading.Thread(target=one) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    grown_mib = (_rss_kib(process.pid) - before) / 1024

    assert len(results) == 16
    for answer, seconds in results:
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 431 "), answer[:200]
        assert b"content-type: application/problem+json" in head.lower()
        assert b'"code":"request_header_fields_too_large"' in body
        assert seconds < 5, seconds
    # Unbounded, the parser held each 10 MB header (16 of them: 160 MB) while it grew.
    assert grown_mib < 16, f"the server grew by {grown_mib:.1f} MiB"
    assert httpx.get(f"{base_url}/healthz").status_code == 200  # and it still serves
