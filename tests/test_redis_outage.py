"""Check-ins without Redis. The live server runs in this process, so its Redis client is
swapped for one pointing at a dead port (or at a server that accepts and never answers)
and restored afterwards. PostgreSQL is the record: check-ins are accepted and unlock,
speed checks and idempotent replays keep working, readiness reports the degradation."""

from __future__ import annotations

import math
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from sqlalchemy.engine import make_url

from core.redis import RedisState, get_redis
from core.settings import Settings
from tests.factories import offer_body

OSLO = (10.7522, 59.9139)
COPENHAGEN = (12.5683, 55.6761)
GOTHENBURG = (11.9746, 57.7089)


def near(center: tuple[float, float], east_m: float = 0) -> tuple[float, float]:
    lon, lat = center
    return lon + east_m / (111_320 * math.cos(math.radians(lat))), lat


# The test service waits longer for Redis (tests/conftest.py); these tests are about the
# production timeout, so they start their clients with it.
PRODUCTION_REDIS_TIMEOUT_S = Settings.model_fields["redis_timeout_s"].default


@contextmanager
def redis_at(url: str, settings) -> Iterator[None]:
    state = get_redis()
    original = state.client
    # the server's own client options (core.redis) with production's timeout, another address
    state.client = aioredis.Redis.from_url(
        url,
        socket_timeout=PRODUCTION_REDIS_TIMEOUT_S,
        socket_connect_timeout=PRODUCTION_REDIS_TIMEOUT_S,
        retry=Retry(NoBackoff(), 0),
        decode_responses=True,
    )
    try:
        yield
    finally:
        state.client = original


@pytest.fixture
def redis_down(base_url, settings) -> Iterator[None]:
    with redis_at("redis://127.0.0.1:1/0", settings):  # nothing listens on port 1
        yield


@pytest.fixture
def redis_silent(base_url, settings) -> Iterator[list[socket.socket]]:
    """A Redis that accepts connections and never answers; yields the connections it accepted."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept_and_ignore() -> None:
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept_and_ignore, daemon=True)
    thread.start()
    try:
        with redis_at(f"redis://127.0.0.1:{listener.getsockname()[1]}/0", settings):
            yield held
    finally:
        stop.set()
        thread.join(5)
        for connection in held:
            connection.close()
        listener.close()


def open_venue(world, **venue) -> tuple[dict, object]:
    m = world.merchant()
    v = world.venue(m, **venue)
    world.campaign(m, [v["id"]], [offer_body(total_limit=1)])
    return v, m


def test_check_ins_are_accepted_and_unlock_without_redis(world, db, redis_down):
    venue, _ = open_venue(world)
    first, second = (world.checkin(world.user(), *venue["center"]) for _ in range(2))
    assert first.status_code == second.status_code == 201
    assert first.json()["status"] == "accepted" and len(first.json()["unlocked"]) == 1
    assert second.json()["status"] == "accepted" and second.json()["unlocked"] == []  # the budget of one still holds


def test_readiness_reports_redis_down_and_degraded(world, http, redis_down):
    r = http.get("/readyz")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "degraded"
    assert body["checks"]["database"] == "ok" and body["checks"]["redis"].startswith("down")


def test_readiness_recovers_with_redis(http, base_url, settings):
    with redis_at("redis://127.0.0.1:1/0", settings):
        assert http.get("/readyz").json()["status"] == "degraded"
    body = http.get("/readyz").json()
    assert (body["status"], body["checks"]["redis"]) == ("ready", "ok")


def test_too_fast_is_detected_from_postgresql_alone(world, redis_down):
    m = world.merchant()
    oslo = world.venue(m, center=near(OSLO, world.rng.uniform(-3000, 3000)))
    copenhagen = world.venue(m, center=near(COPENHAGEN, world.rng.uniform(-3000, 3000)))
    user = world.user()
    now = datetime.now(UTC)
    assert world.checkin(user, *oslo["center"], observed_at=now - timedelta(minutes=5)).json()["status"] == "accepted"
    body = world.checkin(user, *copenhagen["center"], observed_at=now).json()
    assert (body["status"], body["reason"]) == ("rejected", "too_fast")


def test_fixes_accepted_while_redis_was_down_count_once_it_is_back(world, monkeypatch, settings):
    """Gothenburg two hours ago makes Copenhagen plausible; Oslo, accepted during the outage, does not."""
    monkeypatch.setattr(settings, "max_fix_age_s", 3 * 3600)
    m = world.merchant()
    gothenburg, oslo, copenhagen = (
        world.venue(m, center=near(city, world.rng.uniform(-3000, 3000))) for city in (GOTHENBURG, OSLO, COPENHAGEN)
    )
    user = world.user()
    now = datetime.now(UTC)
    assert world.checkin(user, *gothenburg["center"], observed_at=now - timedelta(hours=2)).json()["status"] == (
        "accepted"
    )
    with redis_at("redis://127.0.0.1:1/0", settings):
        assert world.checkin(user, *oslo["center"], observed_at=now - timedelta(minutes=4)).json()["status"] == (
            "accepted"
        )
    body = world.checkin(user, *copenhagen["center"], observed_at=now).json()
    assert body["reason"] == "too_fast" and body["detail"]["seconds"] == pytest.approx(240, abs=1)


def test_replay_without_redis_is_the_same_answer(world, db, redis_down):
    venue, _ = open_venue(world)
    sub = f"user-{uuid.uuid4().hex[:12]}"
    key = str(uuid.uuid4())
    body = {
        "lon": venue["center"][0],
        "lat": venue["center"][1],
        "accuracy_m": 10,
        "observed_at": datetime.now(UTC).isoformat(),
    }
    headers = {**world.user(sub), "Idempotency-Key": key}
    first = world.http.post("/v1/checkins", json=body, headers=headers)
    again = world.http.post("/v1/checkins", json=body, headers=headers)
    assert first.status_code == again.status_code == 201 and len(first.json()["unlocked"]) == 1
    assert again.content == first.content
    assert db.execute("SELECT count(*) AS n FROM checkins WHERE user_id = %s", (sub,)).fetchone()["n"] == 1
    reused = world.http.post("/v1/checkins", json=body | {"accuracy_m": 11}, headers=headers)
    assert (reused.status_code, reused.json()["code"]) == (422, "idempotency_key_reused")


def test_without_redis_a_concurrent_duplicate_waits_and_gets_the_stored_answer(world, db, database_url, redis_down):
    venue, _ = open_venue(world)
    sub = f"user-{uuid.uuid4().hex[:12]}"
    headers = {**world.user(sub), "Idempotency-Key": str(uuid.uuid4())}
    body = {
        "lon": venue["center"][0],
        "lat": venue["center"][1],
        "accuracy_m": 10,
        "observed_at": datetime.now(UTC).isoformat(),
    }
    url = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url) as blocker, ThreadPoolExecutor(2) as pool:
        blocker.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (sub,))
        futures = [pool.submit(world.http.post, "/v1/checkins", json=body, headers=headers) for _ in range(2)]
        deadline = time.monotonic() + 10
        while _advisory_waiters(db, sub) < 2:  # both wait in the database: no Redis to say 409
            assert time.monotonic() < deadline, "the requests never reached the advisory lock"
            time.sleep(0.02)
        blocker.rollback()
        responses = [f.result(timeout=30) for f in futures]
    assert [r.status_code for r in responses] == [201, 201]
    assert responses[0].content == responses[1].content
    assert db.execute("SELECT count(*) AS n FROM checkins WHERE user_id = %s", (sub,)).fetchone()["n"] == 1


def _advisory_waiters(db, sub: str) -> int:
    return db.execute(
        "SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
        "AND (classid::bigint << 32 | objid::bigint) = hashtextextended(%s, 0)",
        (sub,),
    ).fetchone()["n"]


def test_the_rate_limit_is_redis_and_lapses_without_it(world, monkeypatch, settings):
    monkeypatch.setattr(settings, "checkin_rate_per_minute", 2)
    monkeypatch.setattr(settings, "checkin_cooldown_s", 0)
    venue, _ = open_venue(world)
    limited_user, free_user = world.user(), world.user()
    statuses = [world.checkin(limited_user, *venue["center"]).status_code for _ in range(3)]
    assert statuses == [201, 201, 429]
    with redis_at("redis://127.0.0.1:1/0", settings):
        assert [world.checkin(free_user, *venue["center"]).status_code for _ in range(3)] == [201, 201, 201]


def test_a_silent_redis_does_not_hang_a_check_in(world, http, redis_silent):
    venue, _ = open_venue(world)
    started = time.monotonic()
    r = world.checkin(world.user(), *venue["center"])
    elapsed = time.monotonic() - started
    assert r.status_code == 201 and r.json()["status"] == "accepted", r.text
    assert elapsed < 2, elapsed  # a sanity bound on "does not hang", far above the 50 ms timeouts
    assert http.get("/readyz").json()["status"] == "degraded"


def test_after_timeouts_in_a_row_redis_is_skipped_instead_of_timing_out_again(world, redis_silent):
    venue, _ = open_venue(world)
    user = world.user()
    results = [world.checkin(user, *venue["center"], venue_id=venue["id"]) for _ in range(5)]
    assert [r.status_code for r in results] == [201] * 5
    assert results[0].json()["status"] == "accepted"
    # the first three check-ins each tried Redis and timed out; the next ones (well inside the
    # 2 s pause) skipped it
    assert len(redis_silent) == RedisState.FAILURES_BEFORE_SKIPPING


def test_the_silent_server_is_really_silent(redis_silent):
    """The fixture's server accepts and answers nothing, so the test above proves a timeout."""
    state = get_redis()
    assert state.client.connection_pool.connection_kwargs["socket_timeout"] == PRODUCTION_REDIS_TIMEOUT_S
    port = state.client.connection_pool.connection_kwargs["port"]
    with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
        sock.sendall(b"*1\r\n$4\r\nPING\r\n")
        sock.settimeout(0.3)
        with pytest.raises(TimeoutError):
            sock.recv(1)


def test_the_service_under_test_waits_longer_for_redis_than_production(base_url, settings):
    """So a busy machine running the suite in parallel does not make a healthy Redis look down."""
    assert PRODUCTION_REDIS_TIMEOUT_S == 0.05
    assert settings.redis_timeout_s > 1
    assert get_redis().client.connection_pool.connection_kwargs["socket_timeout"] == settings.redis_timeout_s
