"""Structured logs of the running service: one JSON line per request with its request id, route
template, status, duration and merchant; the X-Request-ID echoed, generated or replaced; the request id
in problem bodies and in other lines of the same request; never a token, a code or a position."""

from __future__ import annotations

import io
import json
import logging
import re
import time
import uuid

import pytest

from core.logs import ACCESS_LOGGER, json_handler
from tests.test_errors_and_limits import assert_problem

GENERATED = re.compile(r"[0-9a-f]{32}")


class Captured:
    """Everything the service logs while a test runs, as the JSON lines `serve` would write."""

    def __init__(self, stream: io.StringIO) -> None:
        self.stream = stream

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def lines(self) -> list[dict]:
        return [json.loads(line) for line in self.text.splitlines()]

    def requests(self, request_id: str) -> list[dict]:
        """The request lines with this id. A line is written once the response has gone out, so the
        client can be a moment ahead of it: wait for the first."""
        deadline = time.monotonic() + 5
        while True:
            found = [
                line for line in self.lines() if line["logger"] == ACCESS_LOGGER and line["request_id"] == request_id
            ]
            if found or time.monotonic() > deadline:
                return found
            time.sleep(0.01)


@pytest.fixture
def logs():
    """The server runs in this process (in a thread): a JSON handler on the root logger sees its lines."""
    stream = io.StringIO()
    handler = json_handler(stream)
    # The tests' own HTTP client logs the URLs it calls: that is this process, not the service.
    handler.addFilter(lambda record: not record.name.startswith(("httpx", "httpcore")))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield Captured(stream)
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def test_one_json_line_per_request_with_route_status_duration_and_merchant(world, logs):
    m = world.merchant()
    venue = world.venue(m)
    request_id = f"till-{uuid.uuid4()}"
    body = {"code": "K7QX-M2PD-9RTW", "venue_id": venue["id"]}

    r = world.http.post("/v1/redemptions", json=body, headers={**m.staff, "X-Request-ID": request_id})

    assert r.status_code == 404 and r.headers["x-request-id"] == request_id
    (line,) = logs.requests(request_id)
    assert line["level"] == "INFO" and line["time"].endswith("+00:00")
    assert line["message"] == "POST /v1/redemptions 404"
    assert (line["method"], line["route"], line["status"], line["merchant"]) == ("POST", "/v1/redemptions", 404, m.id)
    assert 0 < line["duration_ms"] < 30_000

    r = world.http.get(f"/v1/venues/{venue['id']}", headers={"X-Request-ID": request_id + "-anonymous"})
    (line,) = logs.requests(request_id + "-anonymous")
    assert (line["route"], line["status"], line["merchant"]) == ("/v1/venues/{venue_id}", 401, None)


def test_the_request_id_is_echoed_generated_when_absent_and_replaced_when_unsafe(http, logs):
    kept = ["a1b2c3", str(uuid.uuid4()), "trace:00-4bf92f3577b34da6-01", "x" * 128]
    for request_id in kept:
        assert http.get("/healthz", headers={"X-Request-ID": request_id}).headers["x-request-id"] == request_id
        assert len(logs.requests(request_id)) == 1

    generated = http.get("/healthz").headers["x-request-id"]
    assert GENERATED.fullmatch(generated) and len(logs.requests(generated)) == 1

    unsafe = ["x" * 129, "two words", '"},"status":200,"x":"', "line\\nbreak", "", "caf\xe9".encode("latin-1")]
    for request_id in unsafe:
        answered = http.get("/healthz", headers={"X-Request-ID": request_id}).headers["x-request-id"]
        assert GENERATED.fullmatch(answered), request_id
        assert len(logs.requests(answered)) == 1
    logged = {line.get("request_id") for line in logs.lines()}
    assert not logged & set(unsafe[:5])
    assert "two words" not in logs.text and "x" * 129 not in logs.text
    assert http.get("/healthz").headers["x-request-id"] != generated  # a new one each time


def test_problem_bodies_carry_the_request_id(world, settings):
    m = world.merchant()
    cases = [
        ("GET", f"/v1/venues/{uuid.uuid4()}", {**m.admin}, None, 404),
        ("GET", "/v1/venues", {}, None, 401),
        ("POST", "/v1/venues", {**m.admin}, {"name": ""}, 422),
        ("GET", "/no-such-page", {}, None, 404),
        # Answered by the size limit, outside the app's exception handlers.
        ("GET", "/healthz", {"X-Padding": "x" * (settings.max_header_bytes + 1)}, None, 431),
    ]
    for method, path, headers, body, status in cases:
        request_id = f"problem-{uuid.uuid4()}"
        r = world.http.request(method, path, headers={**headers, "X-Request-ID": request_id}, json=body)
        problem = assert_problem(r, status)
        assert problem["request_id"] == r.headers["x-request-id"] == request_id, path
    generated = world.http.get("/no-such-page")
    assert generated.json()["request_id"] == generated.headers["x-request-id"]


def test_an_unexpected_failure_logs_its_traceback_with_the_request_id(http, logs):
    from api.main import app

    async def broken() -> None:
        raise RuntimeError("a bug")

    app.add_api_route("/test-only/broken-for-logs", broken)
    try:
        r = http.get("/test-only/broken-for-logs", headers={"X-Request-ID": "broken-1"})
    finally:
        app.router.routes[:] = [
            route for route in app.router.routes if getattr(route, "path", None) != "/test-only/broken-for-logs"
        ]
    problem = assert_problem(r, 500, "internal_error")
    assert problem["request_id"] == r.headers["x-request-id"] == "broken-1"
    (failure,) = [line for line in logs.lines() if line["logger"] == "api.problems"]
    assert failure["request_id"] == "broken-1" and failure["level"] == "ERROR"
    assert "RuntimeError: a bug" in failure["exc_info"]
    (line,) = logs.requests("broken-1")
    assert (line["route"], line["status"]) == ("/test-only/broken-for-logs", 500)


def test_no_token_code_or_position_reaches_the_logs(world, logs):
    m = world.merchant()
    venue = world.venue(m)
    world.campaign(m, [venue["id"]])
    lon, lat = venue["center"]
    user = world.user()

    checkin = world.checkin(user, lon, lat)
    assert checkin.status_code == 201, checkin.text
    code = checkin.json()["unlocked"][0]["code"]
    nearby = world.http.get("/v1/venues/nearby", params={"lat": lat, "lon": lon, "radius_m": 500}, headers=user)
    assert nearby.status_code == 200, nearby.text
    look_up = world.http.get(f"/v1/codes/{code}", params={"venue_id": venue["id"]}, headers=m.staff)
    assert look_up.status_code == 200, look_up.text
    redeem = {"code": code, "venue_id": venue["id"]}
    assert world.http.post("/v1/redemptions", json=redeem, headers=m.staff).status_code == 201
    assert world.http.post("/v1/redemptions", json=redeem, headers=m.staff).status_code == 409
    miss = {"code": code[:-1] + ("0" if code[-1] != "0" else "1"), "venue_id": venue["id"]}
    last = f"last-{uuid.uuid4()}"
    assert world.http.post("/v1/redemptions", json=miss, headers={**m.staff, "X-Request-ID": last}).status_code == 404
    assert logs.requests(last)  # every line of the test is written

    routes = {line["route"] for line in logs.lines() if line["logger"] == ACCESS_LOGGER}
    assert {"/v1/checkins", "/v1/venues/nearby", "/v1/codes/{code}", "/v1/redemptions"} <= routes
    secrets = [
        *(headers["Authorization"].removeprefix("Bearer ") for headers in (user, m.staff, m.admin)),
        code,
        code.replace("-", ""),
        miss["code"],
        miss["code"].replace("-", ""),
        str(lat),
        str(lon),
    ]
    for secret in secrets:
        assert secret not in logs.text, secret
