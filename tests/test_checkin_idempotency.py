"""The Idempotency-Key of a check-in: a replay is the same answer and changes nothing; a
reused key with another body is refused; a key still running is 409; keys belong to
their caller, and an app user's never meet a staff member's; a request refused as invalid
leaves its key unused; replays do not count toward the rate limit; a failed or cancelled
check-in frees its key for the retry."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from functools import partial

import anyio
import psycopg
import pytest
import redis.asyncio as aioredis
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection

from api.schemas import CheckinIn
from core.db import make_engine
from core.redis import RedisState
from offers import checkin
from offers.checkin import CheckinOutcome, CheckinRequest
from tests.factories import offer_body

TABLES = ("checkins", "events", "unlocks", "exposures", "idempotency_keys", "user_offer_unlocks")


def new_user(world) -> tuple[str, dict[str, str]]:
    sub = f"user-{uuid.uuid4().hex[:12]}"
    return sub, world.user(sub)


def footprint(db, sub: str) -> dict[str, int]:
    """How many rows of each kind a user has: a replay must not add any."""
    counts = {}
    for table in TABLES:
        column = "scope" if table == "idempotency_keys" else "user_id"
        counts[table] = db.execute(f"SELECT count(*) AS n FROM {table} WHERE {column} = %s", (sub,)).fetchone()["n"]
    counts["budget"] = db.execute("SELECT sum(remaining) AS n FROM offer_budget_shards").fetchone()["n"]
    return counts


@pytest.fixture
def venue(world) -> dict:
    m = world.merchant()
    v = world.venue(m)
    world.campaign(m, [v["id"]], [offer_body(total_limit=1)])  # one code: a second unlock would show
    return v


def post(world, user, body: dict, key: str | None):
    headers = dict(user) if key is None else {**user, "Idempotency-Key": key}
    return world.http.post("/v1/checkins", json=body, headers=headers)


def body_at(venue: dict, **extra) -> dict:
    return {
        "lon": venue["center"][0],
        "lat": venue["center"][1],
        "accuracy_m": 10,
        "observed_at": datetime.now(UTC).isoformat(),
        **extra,
    }


def test_a_replay_returns_the_same_bytes_and_changes_nothing(world, db, venue):
    sub, user = new_user(world)
    key = str(uuid.uuid4())
    body = body_at(venue)
    first = post(world, user, body, key)
    assert first.status_code == 201 and len(first.json()["unlocked"]) == 1, first.text
    before = footprint(db, sub)

    replays = [post(world, user, body, key) for _ in range(3)]
    assert [r.status_code for r in replays] == [201] * 3
    assert all(r.content == first.content for r in replays)
    assert footprint(db, sub) == before
    assert before["checkins"] == 1 and before["unlocks"] == 1 and before["idempotency_keys"] == 1


def test_the_same_values_written_differently_are_the_same_request(world, db, venue):
    sub, user = new_user(world)
    key = str(uuid.uuid4())
    at = datetime.now(UTC).replace(microsecond=0)
    first = post(world, user, body_at(venue, observed_at=at.isoformat()), key)
    written_differently = [
        at.isoformat().replace("+00:00", "Z"),
        at.astimezone(timezone(timedelta(hours=2))).isoformat(),
    ]
    for observed_at in written_differently:
        again = post(world, user, body_at(venue, observed_at=observed_at), key)
        assert (again.status_code, again.content) == (201, first.content)
    assert footprint(db, sub)["checkins"] == 1


def test_a_replay_of_a_rejection_is_the_same_rejection(world, db, venue):
    sub, user = new_user(world)
    key = str(uuid.uuid4())
    body = body_at(venue, mocked=True)
    first = post(world, user, body, key)
    assert first.json()["reason"] == "mocked_location"
    before = footprint(db, sub)
    again = post(world, user, body, key)
    assert (again.status_code, again.content) == (201, first.content)
    assert footprint(db, sub) == before


def test_the_same_key_with_another_body_is_refused(world, db, venue):
    sub, user = new_user(world)
    key = str(uuid.uuid4())
    first = post(world, user, body_at(venue), key)
    assert first.status_code == 201
    before = footprint(db, sub)

    moved = post(world, user, body_at(venue, accuracy_m=11), key)
    assert moved.status_code == 422, moved.text
    assert moved.headers["content-type"].startswith("application/problem+json")
    assert moved.json()["code"] == "idempotency_key_reused"
    assert moved.json()["errors"][0]["field"] == "Idempotency-Key"
    assert footprint(db, sub) == before
    assert post(world, user, body_at(venue), str(uuid.uuid4())).status_code == 201  # a new key is a new check-in


def test_a_missing_key_is_400_and_stores_nothing(world, db, venue):
    sub, user = new_user(world)
    r = post(world, user, body_at(venue), None)
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "idempotency_key_required"
    assert footprint(db, sub)["checkins"] == 0


@pytest.mark.parametrize("key", ["", "with space", "x" * 201, "ключ"])
def test_a_malformed_key_is_422(world, db, venue, key):
    sub, user = new_user(world)
    r = world.http.post("/v1/checkins", json=body_at(venue), headers={**user, "Idempotency-Key": key.encode()})
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "validation_error"
    assert r.json()["errors"][0]["field"] == "Idempotency-Key"
    assert footprint(db, sub)["checkins"] == 0


def test_keys_belong_to_their_caller(world, db, venue):
    key = str(uuid.uuid4())
    (a_sub, a), (b_sub, b) = new_user(world), new_user(world)
    body = body_at(venue)
    first, second = post(world, a, body, key), post(world, b, body, key)
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] != second.json()["id"]
    assert len(first.json()["unlocked"]) == 1 and second.json()["unlocked"] == []  # the one code went to a
    assert footprint(db, a_sub)["checkins"] == footprint(db, b_sub)["checkins"] == 1


def test_an_invalid_request_leaves_its_key_unused(world, db, venue):
    sub, user = new_user(world)
    key = str(uuid.uuid4())
    bad = post(world, user, body_at(venue, lat=91), key)
    assert bad.status_code == 422
    assert footprint(db, sub)["idempotency_keys"] == 0
    fixed = post(world, user, body_at(venue), key)
    assert fixed.status_code == 201 and fixed.json()["status"] == "accepted"


def test_the_same_key_while_the_first_is_running_is_409(world, db, venue, database_url):
    """The first request is held inside checkin() by the user's advisory lock, taken here."""
    sub, user = new_user(world)
    key = str(uuid.uuid4())
    body = body_at(venue)
    url = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url) as blocker, ThreadPoolExecutor(1) as pool:
        blocker.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (sub,))
        first = pool.submit(post, world, user, body, key)
        _wait_until_blocked(db, sub)

        duplicate = post(world, user, body, key)
        assert duplicate.status_code == 409, duplicate.text
        assert duplicate.json()["code"] == "idempotency_in_progress"
        changed = post(world, user, body_at(venue, accuracy_m=12), key)
        assert changed.status_code == 409  # still running: the body is not even compared yet
        assert not first.done()
        blocker.rollback()  # releases the lock
        result = first.result(timeout=30)

    assert result.status_code == 201 and result.json()["status"] == "accepted", result.text
    assert footprint(db, sub)["checkins"] == 1
    replay = post(world, user, body, key)
    assert (replay.status_code, replay.content) == (201, result.content)


def _wait_until_blocked(db, sub: str) -> int:
    """Until a server connection waits on the user's advisory lock; its backend's pid."""
    deadline = datetime.now(UTC) + timedelta(seconds=10)
    while datetime.now(UTC) < deadline:
        waiting = db.execute(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
            "AND (classid::bigint << 32 | objid::bigint) = hashtextextended(%s, 0)",
            (sub,),
        ).fetchone()
        if waiting:
            return waiting["pid"]
        threading.Event().wait(0.02)
    raise AssertionError("the first check-in never reached the advisory lock")


def _libpq(database_url: str) -> str:
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


# Scopes: an app user's keys and a staff member's never meet


def test_an_app_user_whose_sub_spells_a_tills_scope_and_that_till_keep_their_own_keys(world, db):
    """Check-in keys were once scoped by the bare sub and redemption keys by 'redeem:<merchant>:<staff>'
    in one table: this app user and this staff member shared keys, and the second to use one got 422."""
    m = world.merchant()
    v = world.venue(m)
    world.campaign(m, [v["id"]])
    (code,) = (u["code"] for u in world.checkin(world.user(), *v["center"]).json()["unlocked"])
    till = f"till-{uuid.uuid4().hex[:8]}"
    staff = world.headers("merchant_staff", sub=till, merchant_id=m.id)
    lookalike_sub = f"redeem:{m.id}:{till}"
    lookalike = world.user(lookalike_sub)
    key = str(uuid.uuid4())
    body = body_at(v)

    def redeem():
        return world.http.post(
            "/v1/redemptions", json={"code": code, "venue_id": v["id"]}, headers={**staff, "Idempotency-Key": key}
        )

    checked_in = post(world, lookalike, body, key)
    redeemed = redeem()

    assert checked_in.status_code == 201 and checked_in.json()["status"] == "accepted", checked_in.text
    assert len(checked_in.json()["unlocked"]) == 1
    assert redeemed.status_code == 201 and "unlock_id" in redeemed.json(), redeemed.text
    # Each key answers its own caller's replays with its own result.
    assert post(world, lookalike, body, key).content == checked_in.content
    again = redeem()
    assert (again.status_code, again.json()) == (201, redeemed.json())
    assert footprint(db, lookalike_sub)["checkins"] == 1


def test_in_flight_locks_name_one_user_and_key():
    pairs = [("a:b", "c"), ("a", "b:c"), ("a", "b"), ("redeem:m:s", "k")]
    locks = {checkin._keys(user, key)[0] for user, key in pairs}
    assert len(locks) == len(pairs)
    assert all(lock.startswith("ck:") for lock in locks)  # the redemption path's keys start with rd:


# The rate limit counts check-ins, not replays


def test_replays_do_not_count_toward_the_rate_limit_and_are_answered_over_it(world, db, venue, monkeypatch, settings):
    monkeypatch.setattr(settings, "checkin_rate_per_minute", 3)
    sub, user = new_user(world)
    sent = [(str(uuid.uuid4()), body_at(venue)) for _ in range(3)]
    first = post(world, user, sent[0][1], sent[0][0])
    assert first.status_code == 201 and len(first.json()["unlocked"]) == 1, first.text

    for _ in range(5):  # under the limit: each replay gives back the count it took
        again = post(world, user, sent[0][1], sent[0][0])
        assert (again.status_code, again.content) == (201, first.content)
    answers = [first] + [post(world, user, body, key) for key, body in sent[1:]]
    assert [r.status_code for r in answers] == [201] * 3  # the limit of 3, no replay counted
    assert post(world, user, body_at(venue), str(uuid.uuid4())).status_code == 429

    # At the limit: every stored key still gets its stored answer, as often as it is sent.
    for _ in range(3):
        for (key, body), answer in zip(sent, answers, strict=True):
            replay = post(world, user, body, key)
            assert (replay.status_code, replay.content) == (201, answer.content)
    reused = post(world, user, body_at(venue, accuracy_m=11), sent[0][0])
    assert (reused.status_code, reused.json()["code"]) == (422, "idempotency_key_reused")
    limited = post(world, user, body_at(venue), str(uuid.uuid4()))
    assert limited.status_code == 429 and limited.json()["code"] == "rate_limited"
    assert footprint(db, sub)["checkins"] == 3


# A failed or cancelled check-in frees its key


@pytest.mark.parametrize(
    "stop",
    [
        pytest.param("pg_cancel_backend", id="statement cancelled"),  # 500
        pytest.param("pg_terminate_backend", id="connection lost"),  # 503, "send it again with the same key"
    ],
)
def test_a_check_in_that_fails_in_the_database_leaves_its_key_free_for_the_retry(world, db, venue, database_url, stop):
    """The first request is held on the user's advisory lock and its statement is stopped there by
    PostgreSQL itself: the retry with the same key runs (201), where a held in-flight lock would
    answer 409 for 30 s."""
    sub, user = new_user(world)
    key, body = str(uuid.uuid4()), body_at(venue)
    with psycopg.connect(_libpq(database_url)) as blocker, ThreadPoolExecutor(1) as pool:
        blocker.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (sub,))
        first = pool.submit(post, world, user, body, key)
        pid = _wait_until_blocked(db, sub)
        assert db.execute(f"SELECT {stop}(%s) AS done", (pid,)).fetchone()["done"]
        failed = first.result(timeout=30)
        blocker.rollback()

    assert failed.status_code >= 500, failed.text
    retry = post(world, user, body, key)
    assert retry.status_code == 201 and retry.json()["status"] == "accepted", retry.text
    assert footprint(db, sub)["checkins"] == 1


@asynccontextmanager
async def _service_parts(settings, redis_url: str) -> AsyncIterator[tuple[AsyncConnection, RedisState]]:
    """What the check-in route hands check_in(): a hot-path connection and the Redis state."""
    engine = make_engine(settings.database_url, 1)
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        async with engine.connect() as conn:
            yield await conn.execution_options(isolation_level="AUTOCOMMIT"), RedisState(client)
    finally:
        await client.aclose()
        await engine.dispose()


def test_a_cancelled_check_in_frees_its_key(world, db, venue, database_url, redis_url, settings):
    """A request cancelled while its statement runs (a client gone, a server shutting down) frees the
    lock from a task of its own. The cancellation is anyio's, as the server's stack delivers it: it
    cancels every await the request makes from then on, a release in a `finally` included."""
    sub, key = f"user-{uuid.uuid4().hex[:12]}", str(uuid.uuid4())
    body = body_at(venue)
    req = CheckinRequest(**CheckinIn(**body).model_dump())  # as the route makes it
    lock = checkin._keys(sub, key)[0]

    async def scenario() -> None:
        async with _service_parts(settings, redis_url) as (conn, redis):
            with anyio.CancelScope() as request:
                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(
                        partial(
                            checkin.check_in, conn, redis, settings, user=sub, key=key, req=req, now=datetime.now(UTC)
                        )
                    )
                    await anyio.to_thread.run_sync(_wait_until_blocked, db, sub)
                    assert await redis.client.exists(lock) == 1
                    request.cancel()
            assert request.cancelled_caught
            with anyio.fail_after(5):
                while await redis.client.exists(lock):
                    await anyio.sleep(0.01)

    with psycopg.connect(_libpq(database_url)) as blocker:
        blocker.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (sub,))
        anyio.run(scenario)
        blocker.rollback()
    retry = post(world, world.user(sub), body, key)
    assert retry.status_code == 201 and retry.json()["status"] == "accepted", retry.text


def test_a_check_in_that_fails_in_python_frees_its_key(venue, redis_url, settings):
    """A fix dated in year 1 at UTC+01:00 passes the plausibility checks (it is stale) but cannot be
    put in UTC for the fingerprint: the error comes after the lock was taken."""
    sub, key = f"user-{uuid.uuid4().hex[:12]}", str(uuid.uuid4())
    req = CheckinRequest(
        lat=venue["center"][1],
        lon=venue["center"][0],
        accuracy_m=10,
        observed_at=datetime(1, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=1))),
    )
    lock = checkin._keys(sub, key)[0]

    async def fail() -> int:
        async with _service_parts(settings, redis_url) as (conn, redis):
            with pytest.raises(OverflowError):
                await checkin.check_in(conn, redis, settings, user=sub, key=key, req=req, now=datetime.now(UTC))
            return int(await redis.client.exists(lock))

    assert asyncio.run(fail()) == 0


def test_the_outcome_says_what_the_body_holds_and_whether_it_was_a_replay(venue, redis_url, settings):
    sub, key = f"user-{uuid.uuid4().hex[:12]}", str(uuid.uuid4())
    body = body_at(venue)
    req = CheckinRequest(**CheckinIn(**body).model_dump())  # as the route makes it

    async def three() -> list[CheckinOutcome]:
        async with _service_parts(settings, redis_url) as (conn, redis):
            sent = [(key, req), (key, req), (str(uuid.uuid4()), replace(req, mocked=True))]
            return [
                await checkin.check_in(conn, redis, settings, user=sub, key=k, req=r, now=datetime.now(UTC))
                for k, r in sent
            ]

    first, again, mocked = asyncio.run(three())
    assert (first.status, first.reason, first.unlocks, first.replayed) == ("accepted", None, 1, False)
    assert json.loads(first.body)["status"] == "accepted" and len(json.loads(first.body)["unlocked"]) == 1
    assert again == CheckinOutcome(first.body, "accepted", None, 1, replayed=True)
    assert (mocked.status, mocked.reason, mocked.unlocks, mocked.replayed) == ("rejected", "mocked_location", 0, False)
