"""Every error is RFC 9457 problem+json with a stable code; request bodies and pages are bounded."""

from __future__ import annotations

import re
import uuid

import httpx

PROBLEM_FIELDS = {"type", "title", "status", "detail", "code"}


def assert_problem(r: httpx.Response, status: int, code: str | None = None) -> dict:
    """The response is a problem+json of this status (and code); returns its body."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json", r.headers
    body = r.json()
    assert body.keys() >= PROBLEM_FIELDS, body
    assert body["status"] == status
    assert re.fullmatch(r"[a-z][a-z0-9_]*", body["code"]), body
    assert body["type"].endswith(f"/{body['code']}")
    if code is not None:
        assert body["code"] == code, body
    return body


def fields(problem: dict) -> list[str]:
    return [e["field"] for e in problem["errors"]]


# --- each status, as problem+json ------------------------------------------------------------


def test_401_403_404_405_are_problems(world):
    assert_problem(world.http.get("/v1/venues"), 401, "missing_token")
    assert_problem(world.http.get("/v1/venues", headers=world.user()), 403, "forbidden_role")
    m = world.merchant()
    assert_problem(world.http.get(f"/v1/venues/{uuid.uuid4()}", headers=m.admin), 404, "not_found")
    r = world.http.delete("/v1/merchants", headers=world.headers("platform_admin"))
    assert_problem(r, 405, "method_not_allowed")
    assert r.headers["allow"] == "POST"


def test_an_unknown_route_is_a_404_problem(http):
    for path in ("/v1/nope", "/nope", "/v1/venues/x/y/z", "/v2/venues"):
        body = assert_problem(http.get(path), 404, "not_found")
        assert body["instance"] == path


def test_409_is_a_problem(world):
    m = world.merchant()
    campaign = world.campaign(m, [world.venue(m)["id"]])
    r = world.http.post(f"/v1/campaigns/{campaign['id']}/activate", headers=m.admin)
    assert_problem(r, 409, "invalid_transition")


def test_422_lists_every_field_at_fault(world):
    m = world.merchant()
    body = {"name": "", "timezone": "Mars/Olympus_Mons", "address": "x" * 501, "merchant_id": m.id}
    problem = assert_problem(world.http.post("/v1/venues", json=body, headers=m.admin), 422, "validation_error")
    assert sorted(fields(problem)) == ["address", "geofence", "merchant_id", "name", "timezone"]
    for error in problem["errors"]:
        assert error["code"] and error["message"], error
    for name in ("name", "timezone", "merchant_id"):
        assert name in problem["detail"]


def test_429_is_a_problem_with_retry_after(world, settings):
    user = world.user()
    lon, lat = world.spot()
    for _ in range(settings.checkin_rate_per_minute):
        assert world.checkin(user, lon, lat).status_code == 201
    r = world.checkin(user, lon, lat)
    body = assert_problem(r, 429, "rate_limited")
    assert 1 <= int(r.headers["retry-after"]) <= 60
    assert body["retry_after"] == int(r.headers["retry-after"])


def test_an_unexpected_failure_is_a_500_problem_that_reveals_nothing(http):
    """A route that fails the way a bug would, added to the live app for this test only."""
    from api.main import app

    async def broken() -> None:
        raise RuntimeError("secret internals: password=hunter2")

    app.add_api_route("/test-only/broken", broken)
    try:
        r = http.get("/test-only/broken")
    finally:
        app.router.routes[:] = [
            route for route in app.router.routes if getattr(route, "path", None) != "/test-only/broken"
        ]
    body = assert_problem(r, 500, "internal_error")
    assert "safe to retry" in body["detail"]
    assert "secret" not in r.text and "RuntimeError" not in r.text
    # The server drops the connection after an unhandled error; the response says so, so a
    # keep-alive client opens a new one instead of failing its next request.
    assert r.headers["connection"] == "close"
    assert http.get("/healthz").status_code == 200
    assert_problem(http.get("/test-only/broken"), 404, "not_found")


# --- unknown fields --------------------------------------------------------------------------


def test_unknown_fields_are_refused_and_named(world):
    m = world.merchant()
    venue = world.venue(m)
    circle = {"type": "Circle", "center": list(world.spot()), "radius_m": 50}
    cases = [
        (
            "POST",
            "/v1/venues",
            {"name": "x", "timezone": "UTC", "geofence": circle, "merchant_id": m.id},
            m.admin,
            "merchant_id",
        ),
        ("POST", "/v1/venues", {"name": "x", "timezone": "UTC", "geofence": circle, "owner": "me"}, m.admin, "owner"),
        (
            "POST",
            "/v1/venues",
            {"name": "x", "timezone": "UTC", "geofence": circle | {"srid": 4326}},
            m.admin,
            "geofence.srid",
        ),
        ("PATCH", f"/v1/venues/{venue['id']}", {"name": "y", "deleted_at": None}, m.admin, "deleted_at"),
        ("PATCH", f"/v1/venues/{venue['id']}", {"merchant_id": str(uuid.uuid4())}, m.admin, "merchant_id"),
        ("POST", "/v1/merchants", {"name": "x", "id": str(uuid.uuid4())}, world.headers("platform_admin"), "id"),
        (
            "POST",
            "/v1/checkins",
            {"lat": 1, "lon": 1, "accuracy_m": 5, "observed_at": "2030-01-01T00:00:00Z", "status": "accepted"},
            world.user(),
            "status",
        ),
    ]
    for method, path, body, headers, field in cases:
        r = world.http.request(method, path, json=body, headers={**headers, "Idempotency-Key": str(uuid.uuid4())})
        problem = assert_problem(r, 422, "validation_error")
        assert field in fields(problem), (path, problem)
        assert any(e["code"] in ("extra_forbidden", "unknown_field") for e in problem["errors"]), problem
    # nothing changed
    assert world.http.get(f"/v1/venues/{venue['id']}", headers=m.admin).json()["name"] == venue["name"]


# --- body size -------------------------------------------------------------------------------


def _oversized(settings) -> bytes:
    return b'{"name": "' + b"x" * settings.max_body_bytes + b'"}'


def test_a_body_over_the_limit_is_413_before_it_is_parsed(world, settings):
    m = world.merchant()
    for headers in (m.admin, {}):  # before authentication, too
        r = world.http.post(
            "/v1/venues", content=_oversized(settings), headers={**headers, "Content-Type": "application/json"}
        )
        body = assert_problem(r, 413, "payload_too_large")
        assert str(settings.max_body_bytes) in body["detail"]
        assert r.headers["connection"] == "close"  # the unread rest of the body is not a next request
    # not JSON at all: still 413, not 422, because nothing parsed it
    r = world.http.post(
        "/v1/venues",
        content=b"\xff" * (settings.max_body_bytes + 1),
        headers={**m.admin, "Content-Type": "application/json"},
    )
    assert_problem(r, 413, "payload_too_large")


def test_a_chunked_body_over_the_limit_is_413(world, settings):
    m = world.merchant()
    payload = _oversized(settings)

    def chunks():
        for start in range(0, len(payload), 4096):
            yield payload[start : start + 4096]

    for path, headers in (
        ("/v1/venues", m.admin),
        ("/v1/checkins", {**world.user(), "Idempotency-Key": "k-1"}),
        ("/v1/merchants", world.headers("platform_admin")),
    ):
        r = world.http.post(path, content=chunks(), headers={**headers, "Content-Type": "application/json"})
        assert "content-length" not in r.request.headers
        assert r.request.headers["transfer-encoding"] == "chunked"
        assert_problem(r, 413, "payload_too_large")
        assert r.headers["connection"] == "close"
    # Anonymous, a streamed body is never read: 401 comes first (Content-Length over the limit is 413 at once).
    r = world.http.post("/v1/merchants", content=chunks(), headers={"Content-Type": "application/json"})
    assert_problem(r, 401, "missing_token")


def test_a_body_at_the_limit_is_parsed(world, settings):
    m = world.merchant()
    name_bytes = settings.max_body_bytes - len(b'{"name": ""}')
    body = b'{"name": "' + b"x" * name_bytes + b'"}'
    assert len(body) == settings.max_body_bytes
    r = world.http.post("/v1/venues", content=body, headers={**m.admin, "Content-Type": "application/json"})
    problem = assert_problem(r, 422, "validation_error")  # too long a name, missing fields: it was read
    assert {"name", "geofence"} <= set(fields(problem))  # timezone may be omitted: taken from the position


# --- page size -------------------------------------------------------------------------------


def test_page_sizes_are_bounded(world):
    m = world.merchant()
    for path, headers in (
        ("/v1/venues", m.admin),
        ("/v1/campaigns", m.admin),
        ("/v1/venues/nearby?lat=1&lon=1", world.user()),
    ):
        joiner = "&" if "?" in path else "?"
        for limit in (0, -1, 101, 10**30, "ten"):
            r = world.http.get(f"{path}{joiner}limit={limit}", headers=headers)
            assert fields(assert_problem(r, 422, "validation_error")) == ["limit"], (path, limit)
        assert world.http.get(f"{path}{joiner}limit=100", headers=headers).status_code == 200
    r = world.http.get("/v1/venues?cursor=not-a-uuid", headers=m.admin)
    assert fields(assert_problem(r, 422, "validation_error")) == ["cursor"]


# --- the contract lists the limits ------------------------------------------------------------------


def test_the_contract_lists_the_limits_and_retry_after():
    from api.main import app

    document = app.openapi()
    problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    seen_429 = 0
    for path, item in document["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            expected = {"431"} | ({"400", "413"} if "requestBody" in operation else set())
            for status in expected:
                assert status in responses, f"{method.upper()} {path}: {status} not documented"
                assert responses[status]["content"] == problem, (path, method, status)
            if "429" in responses:
                seen_429 += 1
                header = responses["429"]["headers"]["Retry-After"]
                assert header["schema"] == {"type": "integer", "minimum": 1}, (path, method)
    assert seen_429 >= 5  # the rate-limited operations: check-ins, redemptions, code look-ups, ...


def test_a_body_that_is_not_utf8_json_is_400_as_documented(world):
    m = world.merchant()
    r = world.http.post(
        "/v1/venues", content=b'{"name": "\xff\xfe"}', headers={**m.admin, "Content-Type": "application/json"}
    )
    assert_problem(r, 400, "bad_request")
