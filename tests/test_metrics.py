"""/metrics: refused without the token, parsed as Prometheus text with it; requests counted by route
template (never by path), the domain counters moved by real requests, the pool and Redis gauges read
when scraped, and several `serve` workers adding up in one scrape."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from core.redis import get_redis
from tests.test_errors_and_limits import assert_problem

TOKEN = secrets.token_urlsafe(32)
BEARER = {"Authorization": f"Bearer {TOKEN}"}
NS = "checkin_offers_"
ROOT = Path(__file__).resolve().parents[1]

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
def metrics_token(settings, monkeypatch) -> str:
    monkeypatch.setattr(settings, "metrics_token", TOKEN)
    return TOKEN


def scrape(http: httpx.Client, base_url: str = "") -> Samples:
    r = http.get(f"{base_url}/metrics", headers=BEARER)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4"), r.headers
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(r.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((NS + name, frozenset(labels.items())), 0.0)


def requests(samples: Samples, method: str, route: str, status: int) -> float:
    return value(samples, "http_request_duration_seconds_count", method=method, route=route, status=str(status))


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


# --- access ----------------------------------------------------------------------------------------


def test_without_a_metrics_token_the_page_does_not_exist(http):
    r = http.get("/metrics", headers=BEARER)
    body = assert_problem(r, 404, "not_found")
    assert body["detail"] == http.get("/no-such-page").json()["detail"]  # the same 404 as any unknown path


def test_a_missing_or_wrong_token_is_refused(http, metrics_token):
    for headers in (
        {},
        {"Authorization": "Bearer"},
        {"Authorization": f"Bearer {TOKEN[:-1]}"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": f"Basic {TOKEN}"},
    ):
        r = http.get("/metrics", headers=headers)
        assert_problem(r, 401, "invalid_metrics_token")
        assert NS not in r.text
    assert scrape(http)  # and the right one is served


def test_a_weak_metrics_token_is_refused_at_start(monkeypatch):
    from core.settings import Settings

    for name in [name for name in os.environ if name.startswith("CHECKIN_")]:  # the tests' own settings
        monkeypatch.delenv(name)
    secret = "a-jwt-secret-for-this-test-only-0123456789"
    with pytest.raises(ValueError, match="at least 32 bytes"):
        Settings(env="development", metrics_token="short")
    with pytest.raises(ValueError, match="repeated"):
        Settings(env="production", jwt_secret=secret, metrics_token="abcdefghijklmnopq" * 2)
    assert Settings(env="production", jwt_secret=secret, metrics_token=TOKEN).metrics_token == TOKEN


# --- requests --------------------------------------------------------------------------------------


def test_requests_are_counted_by_route_template_and_status_never_by_path(world, metrics_token):
    m = world.merchant()
    venue_id, code = str(uuid.uuid4()), "K7QX-M2PD-9RTW"
    before = scrape(world.http)

    assert world.http.get(f"/v1/venues/{venue_id}", headers=m.admin).status_code == 404
    assert world.http.get(f"/v1/codes/{code}", params={"venue_id": venue_id}, headers=m.staff).status_code == 404
    assert world.http.get(f"/nothing/here/{venue_id}").status_code == 404
    assert world.http.get("/healthz").status_code == 200
    assert world.http.request("PROPFIND", "/healthz").status_code == 405
    assert world.http.get("/static/vendor/htmx-2.0.4/htmx.min.js").status_code == 200

    after = scrape(world.http)
    text = world.http.get("/metrics", headers=BEARER).text
    for method, route, status in [
        ("GET", "/v1/venues/{venue_id}", 404),
        ("GET", "/v1/codes/{code}", 404),
        ("GET", "unmatched", 404),
        ("GET", "/healthz", 200),
        ("other", "/healthz", 405),
        ("GET", "/static/{path}", 200),  # a mounted app: its mount's template
    ]:
        assert requests(after, method, route, status) - requests(before, method, route, status) == 1, route
    assert venue_id not in text and code not in text and "PROPFIND" not in text
    every = value(
        after, "http_request_duration_seconds_bucket", method="GET", route="/healthz", status="200", le="+Inf"
    )
    assert every == requests(after, "GET", "/healthz", 200)


def test_checkins_unlocks_redemptions_failures_and_replays_move_their_counters(world, metrics_token):
    m = world.merchant()
    venue = world.venue(m)
    world.campaign(m, [venue["id"]])
    before = scrape(world.http)

    user, key = world.user(), str(uuid.uuid4())
    observed_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    body = {"lat": venue["center"][1], "lon": venue["center"][0], "accuracy_m": 10, "observed_at": observed_at}
    first = world.http.post("/v1/checkins", json=body, headers={**user, "Idempotency-Key": key})
    assert first.status_code == 201 and first.json()["status"] == "accepted", first.text
    (unlock,) = first.json()["unlocked"]
    replay = world.http.post("/v1/checkins", json=body, headers={**user, "Idempotency-Key": key})
    assert replay.json() == first.json()
    rejected = world.checkin(world.user(), *venue["center"], accuracy_m=500)
    assert rejected.json()["reason"] == "accuracy_too_low"

    redeem, till_key = {"code": unlock["code"], "venue_id": venue["id"]}, {**m.staff, "Idempotency-Key": key}
    receipt = world.http.post("/v1/redemptions", json=redeem, headers=till_key)
    assert receipt.status_code == 201, receipt.text
    assert world.http.post("/v1/redemptions", json=redeem, headers=till_key).json() == receipt.json()
    assert world.http.post("/v1/redemptions", json=redeem, headers=m.staff).status_code == 409
    unknown = {"code": "K7QX-M2PD-9RTW", "venue_id": venue["id"]}
    assert world.http.post("/v1/redemptions", json=unknown, headers=m.staff).status_code == 404

    after = scrape(world.http)
    assert moved(before, after, "checkins_total", outcome="accepted", reason="none") == 1
    assert moved(before, after, "checkins_total", outcome="rejected", reason="accuracy_too_low") == 1
    assert moved(before, after, "unlocks_total") == 1
    assert moved(before, after, "idempotency_replays_total", operation="checkin") == 1
    assert moved(before, after, "redemptions_total") == 1
    assert moved(before, after, "idempotency_replays_total", operation="redemption") == 1
    assert moved(before, after, "redemption_failures_total", reason="already_redeemed") == 1
    assert moved(before, after, "redemption_failures_total", reason="not_found") == 1


def test_pool_use_and_a_skipped_redis_are_read_when_scraped(http, metrics_token, settings):
    samples = scrape(http)
    assert value(samples, "db_pool_size") == settings.db_pool_size
    assert 0 <= value(samples, "db_pool_checked_out") <= settings.db_pool_size
    assert value(samples, "redis_skipped") == 0

    state = get_redis()
    state.failures_in_a_row, state.last_failure_at = state.FAILURES_BEFORE_SKIPPING, time.monotonic()
    try:
        assert value(scrape(http), "redis_skipped") == 1
    finally:
        state.answered()
    assert value(scrape(http), "redis_skipped") == 0


# --- several workers -------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_several_serve_workers_add_up_in_one_scrape_and_leave_no_files(database_url, settings, tmp_path):
    """`serve --workers 2`: whichever worker answers a scrape, it reports both workers' requests and
    pools; the metric files live in a directory of their own, removed when serve stops."""
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = os.environ | {"CHECKIN_METRICS_TOKEN": TOKEN, "CHECKIN_LOG_LEVEL": "info", "TMPDIR": str(tmp_path)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [str(ROOT / ".venv/bin/checkin-offers"), "serve", "--port", str(port), "--workers", "2"],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        # Ready once both workers have written their pool gauge: one scrape sums them.
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            try:
                if value(scrape(httpx.Client(), base), "db_pool_size") == 2 * settings.db_pool_size:
                    break
            except (httpx.HTTPError, AssertionError):
                pass
            time.sleep(0.3)
        (metrics_dir,) = tmp_path.glob("checkin-offers-metrics-*")
        assert any(metrics_dir.glob("*.db"))

        for _ in range(40):  # a new connection each: the workers share them
            assert httpx.get(f"{base}/healthz", headers={"X-Request-ID": "several-workers"}).status_code == 200
        totals = [requests(scrape(httpx.Client(), base), "GET", "/healthz", 200) for _ in range(6)]
        assert totals == [40] * 6, totals
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)

    assert not list(tmp_path.glob("checkin-offers-metrics-*"))
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    assert len(lines) == len(log_path.read_text().splitlines()), "every log line is JSON"
    healthz = [line for line in lines if line.get("request_id") == "several-workers"]
    assert len(healthz) == 40 and {line["logger"] for line in healthz} == {"api.access"}
    assert not [line for line in lines if line["logger"] == "uvicorn.access"]
