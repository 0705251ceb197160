"""Redemption at the till over HTTP: exactly once, idempotent, normalised codes, tenant
isolation, guessing limits, and the void that records instead of erasing."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import pytest
import redis as redis_lib
import redis.asyncio as aioredis

from core.db import make_engine
from core.errors import Conflict, Gone, NotFound, ProblemError, ValidationFailed
from core.redis import RedisState
from core.settings import Settings
from offers import redemption
from tests.factories import problem_apart_from_request
from tests.test_idempotency_purge import purge_now
from tests.test_redis_outage import redis_at

PARALLEL = 16


def unlocked_code(world, merchant, venue) -> dict:
    """A fresh user checks in at the venue and gets one code."""
    r = world.checkin(world.user(), *venue["center"])
    assert r.status_code == 201, r.text
    (unlock,) = r.json()["unlocked"]
    return unlock


@pytest.fixture
def till(world):
    """A merchant with one venue and a running every-check-in campaign."""
    m = world.merchant()
    v = world.venue(m)
    campaign = world.campaign(m, [v["id"]])
    return m, v, campaign


def redeem(world, headers, code, venue_id, key=None):
    extra = {"Idempotency-Key": key} if key else {}
    return world.http.post("/v1/redemptions", json={"code": code, "venue_id": venue_id}, headers={**headers, **extra})


def void(world, headers, redemption_id, reason="rang up twice"):
    return world.http.post(f"/v1/redemptions/{redemption_id}/void", json={"reason": reason}, headers=headers)


def in_parallel(calls):
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(lambda call: call(), calls))


def test_redeem_returns_the_redemption_and_marks_the_code(world, db, till):
    m, v, _ = till
    unlock = unlocked_code(world, m, v)

    r = redeem(world, m.staff, unlock["code"], v["id"])

    assert r.status_code == 201, r.text
    body = r.json()
    assert set(body) == {"id", "unlock_id", "offer_id", "venue_id", "redeemed_at", "title", "terms"}
    assert (body["title"], body["terms"]) == (unlock["title"], unlock["terms"])
    assert (body["unlock_id"], body["offer_id"], body["venue_id"]) == (unlock["unlock_id"], unlock["offer_id"], v["id"])
    row = db.execute("SELECT * FROM redemptions WHERE id = %s", [body["id"]]).fetchone()
    assert row["voided_at"] is None and str(row["unlock_id"]) == unlock["unlock_id"]
    assert db.execute("SELECT redeemed_at FROM unlocks WHERE id = %s", [unlock["unlock_id"]]).fetchone()["redeemed_at"]


def test_merchant_admin_may_redeem_too(world, till):
    m, v, _ = till
    assert redeem(world, m.admin, unlocked_code(world, m, v)["code"], v["id"]).status_code == 201


@pytest.mark.parametrize("role", ["marketer", "app_user"])
def test_other_roles_are_refused(world, till, role):
    m, v, _ = till
    unlock = unlocked_code(world, m, v)
    headers = m.marketer if role == "marketer" else world.user()

    r = redeem(world, headers, unlock["code"], v["id"])

    assert r.status_code == 403, r.text
    assert r.json()["code"] == "forbidden_role"
    assert redeem(world, m.staff, unlock["code"], v["id"]).status_code == 201  # the code was not spent


def test_second_redemption_is_409_with_the_first_time(world, till):
    m, v, _ = till
    code = unlocked_code(world, m, v)["code"]
    first = redeem(world, m.staff, code, v["id"]).json()

    r = redeem(world, m.staff, code, v["id"])

    assert r.status_code == 409, r.text
    problem = r.json()
    assert problem["code"] == "already_redeemed"
    assert r.headers["content-type"].startswith("application/problem+json")
    assert _same_instant(problem["redeemed_at"], first["redeemed_at"])


def test_expired_code_is_410(world, db, till):
    m, v, _ = till
    unlock = unlocked_code(world, m, v)
    db.execute("UPDATE unlocks SET expires_at = now() - interval '1 second' WHERE id = %s", [unlock["unlock_id"]])

    r = redeem(world, m.staff, unlock["code"], v["id"])

    assert r.status_code == 410, r.text
    assert r.json()["code"] == "expired"
    assert (
        db.execute("SELECT count(*) AS n FROM redemptions WHERE unlock_id = %s", [unlock["unlock_id"]]).fetchone()["n"]
        == 0
    )


def test_unknown_and_foreign_codes_look_the_same(world, till):
    m, v, _ = till
    other = world.merchant("Other cafe")
    other_venue = world.venue(other)
    world.campaign(other, [other_venue["id"]])
    foreign_code = unlocked_code(world, other, other_venue)["code"]
    real = unlocked_code(world, m, v)["code"]
    unknown = real[:-1] + ("X" if real[-1] != "X" else "Y")

    foreign = redeem(world, m.staff, foreign_code, v["id"])
    missing = redeem(world, m.staff, unknown, v["id"])

    assert foreign.status_code == missing.status_code == 404
    assert foreign.json()["code"] == "not_found"
    assert problem_apart_from_request(foreign.json()) == problem_apart_from_request(missing.json())
    assert foreign.headers["content-type"] == missing.headers["content-type"]
    assert redeem(world, other.staff, foreign_code, other_venue["id"]).status_code == 201  # still live for its owner


@pytest.mark.parametrize(
    "spell",
    [
        pytest.param(lambda c: c.lower(), id="lowercase"),
        pytest.param(lambda c: c.replace("-", " "), id="spaces"),
        pytest.param(lambda c: c.replace("-", ""), id="no-dashes"),
        pytest.param(
            lambda c: " " + c.replace("-", "").lower()[:6] + " " + c.replace("-", "").lower()[6:] + " ",
            id="spaced-lowercase",
        ),
        pytest.param(lambda c: c.replace("0", "O").replace("1", "I", 1).replace("1", "l"), id="confusables"),
    ],
)
def test_code_spellings_are_normalised(world, db, till, spell):
    m, v, _ = till
    unlock = unlocked_code(world, m, v)
    # A code with both confusable digits, so every spelling has something to normalise.
    code = f"01{uuid.uuid4().hex[:2].upper()}-1{uuid.uuid4().hex[:3].upper()}-0{uuid.uuid4().hex[:3].upper()}"
    db.execute("UPDATE unlocks SET code = %s WHERE id = %s", [code, unlock["unlock_id"]])

    r = redeem(world, m.staff, spell(code), v["id"])

    assert r.status_code == 201, (spell(code), r.text)
    assert r.json()["unlock_id"] == unlock["unlock_id"]


def test_venue_outside_the_campaign_is_refused(world, till):
    m, v, _ = till
    elsewhere = world.venue(m)
    unlock = unlocked_code(world, m, v)

    r = redeem(world, m.staff, unlock["code"], elsewhere["id"])

    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["code"] == "venue_not_in_campaign"
    assert redeem(world, m.staff, unlock["code"], v["id"]).status_code == 201


def test_parallel_redemptions_of_one_code_have_one_winner(world, db, till):
    m, v, _ = till
    unlock = unlocked_code(world, m, v)

    responses = in_parallel([lambda: redeem(world, m.staff, unlock["code"], v["id"])] * PARALLEL)

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * (PARALLEL - 1), [r.text for r in responses]
    assert {r.json()["code"] for r in responses if r.status_code == 409} == {"already_redeemed"}
    assert (
        db.execute("SELECT count(*) AS n FROM redemptions WHERE unlock_id = %s", [unlock["unlock_id"]]).fetchone()["n"]
        == 1
    )
    assert (
        db.execute(
            "SELECT count(*) AS n FROM events WHERE type = 'offer_redeemed' AND unlock_id = %s", [unlock["unlock_id"]]
        ).fetchone()["n"]
        == 1
    )


def test_replay_with_the_same_key_returns_the_same_redemption(world, db, till):
    m, v, _ = till
    unlock = unlocked_code(world, m, v)
    key = str(uuid.uuid4())

    first = redeem(world, m.staff, unlock["code"], v["id"], key)
    again = redeem(world, m.staff, unlock["code"].lower(), v["id"], key)  # same code, spelled differently

    assert first.status_code == again.status_code == 201, again.text
    assert again.json() == first.json()
    assert (
        db.execute("SELECT count(*) AS n FROM redemptions WHERE unlock_id = %s", [unlock["unlock_id"]]).fetchone()["n"]
        == 1
    )
    other = unlocked_code(world, m, v)
    reused = redeem(world, m.staff, other["code"], v["id"], key)
    assert reused.status_code == 422, reused.text
    assert reused.json()["code"] == "idempotency_key_reused"
    assert redeem(world, m.staff, other["code"], v["id"]).status_code == 201  # the refused request spent nothing


def test_parallel_replays_with_one_key_all_get_the_one_redemption(world, db, till):
    m, v, _ = till
    unlock = unlocked_code(world, m, v)
    key = str(uuid.uuid4())

    responses = in_parallel([lambda: redeem(world, m.staff, unlock["code"], v["id"], key)] * PARALLEL)

    assert [r.status_code for r in responses] == [201] * PARALLEL, [r.text for r in responses]
    assert len({r.text for r in responses}) == 1
    assert (
        db.execute("SELECT count(*) AS n FROM redemptions WHERE unlock_id = %s", [unlock["unlock_id"]]).fetchone()["n"]
        == 1
    )
    assert (
        db.execute(
            "SELECT count(*) AS n FROM events WHERE type = 'offer_redeemed' AND unlock_id = %s", [unlock["unlock_id"]]
        ).fetchone()["n"]
        == 1
    )


def test_keys_belong_to_their_staff_member(world, till):
    m, v, _ = till
    a, b = unlocked_code(world, m, v), unlocked_code(world, m, v)
    key = str(uuid.uuid4())

    first = redeem(world, world.headers("merchant_staff", merchant_id=m.id), a["code"], v["id"], key)
    second = redeem(world, world.headers("merchant_staff", merchant_id=m.id), b["code"], v["id"], key)

    assert first.status_code == second.status_code == 201
    assert first.json()["unlock_id"] != second.json()["unlock_id"]


def test_redeem_says_whether_its_receipt_is_a_replay(world, till, redis_url, settings):
    """For metrics: the outcome of redeem() tells a receipt made now from a key's stored one."""
    m, v, _ = till
    unlock = unlocked_code(world, m, v)
    key = str(uuid.uuid4())

    async def twice() -> list[redemption.RedemptionOutcome]:
        engine = make_engine(settings.database_url, 1)
        client = aioredis.Redis.from_url(redis_url, decode_responses=True)
        try:
            async with engine.connect() as conn:
                conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
                return [
                    await redemption.redeem(
                        conn,
                        RedisState(client),
                        settings,
                        merchant=uuid.UUID(m.id),
                        staff="till-1",
                        raw_code=unlock["code"],
                        venue=uuid.UUID(v["id"]),
                        idempotency_key=key,
                    )
                    for _ in range(2)
                ]
        finally:
            await client.aclose()
            await engine.dispose()

    first, again = asyncio.run(twice())
    assert (first.replayed, again.replayed) == (False, True)
    assert again.receipt == first.receipt and first.receipt["unlock_id"] == unlock["unlock_id"]


def test_redemption_keys_are_purged_after_their_time_to_live(world, db, till, settings):
    m, v, _ = till
    staff_sub = f"till-{uuid.uuid4().hex[:8]}"
    staff = world.headers("merchant_staff", sub=staff_sub, merchant_id=m.id)
    old_key, fresh_key = str(uuid.uuid4()), str(uuid.uuid4())
    for key in (old_key, fresh_key):
        assert redeem(world, staff, unlocked_code(world, m, v)["code"], v["id"], key).status_code == 201
    db.execute(
        "UPDATE redemption_keys SET created_at = now() - interval '49 hours' WHERE staff_sub = %s AND key = %s",
        (staff_sub, old_key),
    )

    assert purge_now(settings) >= 1
    kept = db.execute("SELECT key FROM redemption_keys WHERE merchant_id = %s AND staff_sub = %s", (m.id, staff_sub))
    assert [row["key"] for row in kept] == [fresh_key]


# Guessing limits (offers/redemption.py, "Guessing codes at the till")


@pytest.fixture
def guess_limits(monkeypatch, settings):
    """2 free misses per staff member, then 60 s doubling to 240 s; the merchant's ceiling at 8."""
    for name, value in {
        "redemption_free_failures_per_staff": 2,
        "redemption_first_delay_s": 60.0,
        "redemption_max_delay_s": 240.0,
        "redemption_merchant_failures_per_10min": 8,
    }.items():
        monkeypatch.setattr(settings, name, value)
    return settings


@pytest.fixture
def redis_db(redis_url):
    """The test Redis, to read and age the limiter's keys the way time would."""
    client = redis_lib.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


def _guess(world, headers, venue_id):
    return redeem(world, headers, f"ZZZZ-{uuid.uuid4().hex[:4].upper()}-ZZZZ", venue_id)


def _miss(world, headers, venue_id, times):
    for _ in range(times):
        r = _guess(world, headers, venue_id)
        assert r.status_code == 404, r.text


def _staff(world, m, sub=None):
    return world.headers("merchant_staff", sub=sub, merchant_id=m.id)


def _retry_after(r) -> int:
    assert r.status_code == 429, r.text
    assert r.json()["code"] == "rate_limited"
    assert r.json()["retry_after"] == int(r.headers["Retry-After"])
    return int(r.headers["Retry-After"])


def test_one_staff_members_misses_never_hold_back_a_colleague_at_the_same_venue(world, till, guess_limits):
    m, v, _ = till
    clumsy, colleague = _staff(world, m), _staff(world, m)
    _miss(world, clumsy, v["id"], 3)  # 2 free, the third starts a wait
    code = unlocked_code(world, m, v)["code"]

    assert _retry_after(redeem(world, clumsy, code, v["id"])) == 60

    assert redeem(world, colleague, code, v["id"]).status_code == 201
    # The clumsy one waits at every venue of the merchant, not only this one.
    elsewhere = world.venue(m)
    world.campaign(m, [elsewhere["id"]])
    assert _retry_after(redeem(world, clumsy, unlocked_code(world, m, elsewhere)["code"], elsewhere["id"])) == 60


def test_a_staff_member_waits_a_growing_delay_and_retry_after_is_the_time_left(world, till, guess_limits, redis_db):
    m, v, _ = till
    sub = f"staff-{uuid.uuid4().hex[:8]}"
    staff = _staff(world, m, sub)
    wait_key = redemption.guess_keys(uuid.UUID(m.id), sub).wait
    code = unlocked_code(world, m, v)["code"]
    _miss(world, staff, v["id"], 2)
    assert redis_db.exists(wait_key) == 0  # the free misses cost no wait

    waits = []
    for _ in range(4):
        _miss(world, staff, v["id"], 1)
        waits.append(_retry_after(redeem(world, staff, code, v["id"])))
        redis_db.pexpire(wait_key, 1)  # the wait is over, as if that time had passed
        time.sleep(0.01)

    assert waits == [60, 120, 240, 240]  # doubling, capped at the longest delay
    _miss(world, staff, v["id"], 1)
    redis_db.pexpire(wait_key, 7_500)  # part of the wait has passed
    assert _retry_after(redeem(world, staff, code, v["id"])) == 8
    # Refused attempts are not misses: they neither lengthen nor restart the wait.
    assert _retry_after(_guess(world, staff, v["id"])) == 8
    assert 0 < redis_db.pttl(wait_key) <= 7_500
    redis_db.pexpire(wait_key, 1)
    time.sleep(0.01)
    assert redeem(world, staff, code, v["id"]).status_code == 201  # after the wait, a valid code goes through


def test_the_merchant_ceiling_stops_many_staff_guessing_together(world, till, guess_limits, redis_db):
    m, v, _ = till
    elsewhere = world.venue(m)
    world.campaign(m, [elsewhere["id"]])
    for venue in (v, elsewhere, v, elsewhere):  # 4 people, 2 misses each (within their free ones)
        _miss(world, _staff(world, m), venue["id"], 2)
    fresh = _staff(world, m)  # never missed

    wait = _retry_after(redeem(world, fresh, unlocked_code(world, m, v)["code"], v["id"]))

    assert redemption.MERCHANT_WINDOW_S - 30 <= wait <= redemption.MERCHANT_WINDOW_S
    assert _retry_after(redeem(world, fresh, unlocked_code(world, m, elsewhere)["code"], elsewhere["id"])) >= 570
    redis_db.pexpire(redemption.guess_keys(uuid.UUID(m.id), "any").merchant, 42_000)
    assert _retry_after(redeem(world, fresh, unlocked_code(world, m, v)["code"], v["id"])) == 42
    # Another merchant's tills are untouched.
    other = world.merchant("Next door")
    other_venue = world.venue(other)
    world.campaign(other, [other_venue["id"]])
    assert (
        redeem(world, other.staff, unlocked_code(world, other, other_venue)["code"], other_venue["id"]).status_code
        == 201
    )


def test_a_burst_of_misses_from_one_person_does_not_fill_the_merchant_ceiling(world, till, guess_limits):
    m, v, _ = till
    burst = _staff(world, m)

    answers = in_parallel([lambda: _guess(world, burst, v["id"])] * PARALLEL)

    assert {r.status_code for r in answers} <= {404, 429}
    assert redeem(world, burst, unlocked_code(world, m, v)["code"], v["id"]).status_code == 429
    # Only the misses counted before the burst's first wait reach the merchant: 3 of the 8.
    assert redeem(world, _staff(world, m), unlocked_code(world, m, v)["code"], v["id"]).status_code == 201


def test_another_merchants_guesses_do_not_lock_a_venue(world, till, guess_limits):
    m, v, _ = till
    intruder = world.merchant("Intruder")
    for _ in range(guess_limits.redemption_merchant_failures_per_10min + 2):
        staff = world.headers("merchant_staff", merchant_id=intruder.id)
        assert _guess(world, staff, v["id"]).status_code in (404, 429)

    r = redeem(world, m.staff, unlocked_code(world, m, v)["code"], v["id"])

    assert r.status_code == 201, r.text


def test_successes_and_conflicts_do_not_count_as_guesses(world, till, guess_limits):
    m, v, _ = till
    staff = world.headers("merchant_staff", merchant_id=m.id)
    code = unlocked_code(world, m, v)["code"]
    assert redeem(world, staff, code, v["id"]).status_code == 201
    for _ in range(guess_limits.redemption_merchant_failures_per_10min + 1):
        assert redeem(world, staff, code, v["id"]).status_code == 409

    assert redeem(world, staff, unlocked_code(world, m, v)["code"], v["id"]).status_code == 201


def test_without_redis_the_same_limits_hold_in_the_process(world, till, guess_limits, settings):
    m, v, _ = till
    crowd_venue = world.venue(m)
    world.campaign(m, [crowd_venue["id"]])
    clumsy, colleague = _staff(world, m), _staff(world, m)
    codes = [unlocked_code(world, m, v)["code"] for _ in range(3)]
    other = world.merchant("Next door")
    other_venue = world.venue(other)
    world.campaign(other, [other_venue["id"]])
    other_code = unlocked_code(world, other, other_venue)["code"]

    with redis_at("redis://127.0.0.1:1/0", settings):  # nothing listens on port 1
        _miss(world, clumsy, v["id"], 3)
        assert 59 <= _retry_after(redeem(world, clumsy, codes[0], v["id"])) <= 60
        assert redeem(world, colleague, codes[0], v["id"]).status_code == 201
        for _ in range(5):  # 5 more misses from 5 others reach the ceiling of 8
            _miss(world, _staff(world, m), crowd_venue["id"], 1)
        assert _retry_after(redeem(world, colleague, codes[1], v["id"])) >= 570
        assert redeem(world, other.staff, other_code, other_venue["id"]).status_code == 201
    assert redeem(world, colleague, codes[2], v["id"]).status_code == 201  # Redis is back: its own counts


def test_the_delay_curve_and_one_persons_reach_with_the_defaults():
    defaults = Settings(env="development")

    assert [redemption.delay_after(n, defaults) for n in range(1, 17)] == [0] * 5 + [
        1,
        2,
        4,
        8,
        16,
        32,
        64,
        128,
        256,
        300,
        300,
    ]
    # Flat out, one person's misses in one merchant window: each as soon as the last wait ends.
    misses, clock = 0, 0.0
    while clock <= redemption.MERCHANT_WINDOW_S:
        misses += 1
        clock += redemption.delay_after(misses, defaults)
    assert misses == 15
    assert defaults.redemption_merchant_failures_per_10min >= 10 * 15  # only a crowd reaches it
    assert defaults.redemption_max_delay_s < defaults.redemption_failure_memory_s  # waiting it out forgets nothing


# Void


def test_void_records_and_makes_the_code_redeemable_again(world, db, till):
    m, v, _ = till
    unlock = unlocked_code(world, m, v)
    first = redeem(world, m.staff, unlock["code"], v["id"]).json()

    r = void(world, m.admin, first["id"], "customer changed their mind")

    assert r.status_code == 200, r.text
    body = r.json()
    assert body["id"] == first["id"] and body["void_reason"] == "customer changed their mind"
    assert body["voided_at"]
    row = db.execute("SELECT * FROM redemptions WHERE id = %s", [first["id"]]).fetchone()
    assert row["voided_at"] is not None and row["void_reason"] == "customer changed their mind"
    assert row["voided_by"]
    assert (
        db.execute(
            "SELECT count(*) AS n FROM events WHERE type = 'redemption_voided' AND redemption_id = %s", [first["id"]]
        ).fetchone()["n"]
        == 1
    )
    wallet = world.http.get("/v1/me/offers", headers=world.headers("app_user", _user_of(db, unlock))).json()
    assert wallet["items"][0]["status"] == "active"

    again = redeem(world, m.staff, unlock["code"], v["id"])

    assert again.status_code == 201, again.text
    assert again.json()["id"] != first["id"]
    rows = db.execute(
        "SELECT voided_at FROM redemptions WHERE unlock_id = %s ORDER BY redeemed_at", [unlock["unlock_id"]]
    ).fetchall()
    assert len(rows) == 2 and rows[0]["voided_at"] is not None and rows[1]["voided_at"] is None


def _user_of(db, unlock) -> str:
    return db.execute("SELECT user_id FROM unlocks WHERE id = %s", [unlock["unlock_id"]]).fetchone()["user_id"]


def test_void_needs_a_merchant_admin(world, till):
    m, v, _ = till
    redemption = redeem(world, m.staff, unlocked_code(world, m, v)["code"], v["id"]).json()

    for headers in (m.staff, m.marketer, world.user()):
        r = void(world, headers, redemption["id"])
        assert r.status_code == 403, r.text
    assert void(world, m.admin, redemption["id"]).status_code == 200


def test_void_twice_is_409(world, till):
    m, v, _ = till
    redemption = redeem(world, m.staff, unlocked_code(world, m, v)["code"], v["id"]).json()
    assert void(world, m.admin, redemption["id"]).status_code == 200

    r = void(world, m.admin, redemption["id"])

    assert r.status_code == 409, r.text
    assert r.json()["code"] == "already_voided"
    assert r.json()["voided_at"]


def test_void_after_the_window_is_409(world, db, till, settings):
    m, v, _ = till
    redemption = redeem(world, m.staff, unlocked_code(world, m, v)["code"], v["id"]).json()
    db.execute(
        "UPDATE redemptions SET redeemed_at = redeemed_at - make_interval(mins => %s + 1) WHERE id = %s",
        [settings.void_window_minutes, redemption["id"]],
    )

    r = void(world, m.admin, redemption["id"])

    assert r.status_code == 409, r.text
    assert r.json()["code"] == "void_window_passed"
    assert (
        db.execute("SELECT voided_at FROM redemptions WHERE id = %s", [redemption["id"]]).fetchone()["voided_at"]
        is None
    )


def test_void_window_follows_the_setting(world, till, monkeypatch, settings):
    m, v, _ = till
    redemption = redeem(world, m.staff, unlocked_code(world, m, v)["code"], v["id"]).json()
    monkeypatch.setattr(settings, "void_window_minutes", 0)

    r = void(world, m.admin, redemption["id"])

    assert r.status_code == 409, r.text
    assert r.json()["code"] == "void_window_passed"


def test_void_of_another_merchants_redemption_is_404(world, till):
    m, v, _ = till
    redemption = redeem(world, m.staff, unlocked_code(world, m, v)["code"], v["id"]).json()
    other = world.merchant("Other")

    foreign = void(world, other.admin, redemption["id"])
    missing = void(world, other.admin, str(uuid.uuid4()))

    assert foreign.status_code == missing.status_code == 404
    assert problem_apart_from_request(foreign.json()) == problem_apart_from_request(missing.json())
    assert void(world, m.admin, redemption["id"]).status_code == 200


def test_parallel_voids_have_one_winner(world, db, till):
    m, v, _ = till
    redemption = redeem(world, m.staff, unlocked_code(world, m, v)["code"], v["id"]).json()

    responses = in_parallel([lambda: void(world, m.admin, redemption["id"])] * PARALLEL)

    assert sorted(r.status_code for r in responses) == [200] + [409] * (PARALLEL - 1)
    assert {r.json()["code"] for r in responses if r.status_code == 409} == {"already_voided"}
    assert (
        db.execute(
            "SELECT count(*) AS n FROM events WHERE type = 'redemption_voided' AND redemption_id = %s",
            [redemption["id"]],
        ).fetchone()["n"]
        == 1
    )


def test_parallel_redemptions_after_a_void_have_one_winner(world, db, till):
    m, v, _ = till
    unlock = unlocked_code(world, m, v)
    first = redeem(world, m.staff, unlock["code"], v["id"]).json()
    assert void(world, m.admin, first["id"]).status_code == 200

    responses = in_parallel([lambda: redeem(world, m.staff, unlock["code"], v["id"])] * PARALLEL)

    assert sorted(r.status_code for r in responses) == [201] + [409] * (PARALLEL - 1)
    assert (
        db.execute(
            "SELECT count(*) AS n FROM redemptions WHERE unlock_id = %s AND voided_at IS NULL", [unlock["unlock_id"]]
        ).fetchone()["n"]
        == 1
    )


def _same_instant(a: str, b: str) -> bool:
    return datetime.fromisoformat(a) == datetime.fromisoformat(b)


# What the database functions answer, mapped without HTTP


CODE = "K7QX-M2PD-9RTW"
RECEIPT = {"id": str(uuid.uuid4()), "unlock_id": str(uuid.uuid4())}


@pytest.mark.parametrize(
    ("result", "error", "status", "code"),
    [
        ({"outcome": "key_reused"}, ValidationFailed, 422, "idempotency_key_reused"),
        ({"outcome": "not_found"}, NotFound, 404, "not_found"),
        (
            {"outcome": "already_redeemed", "redeemed_at": "2026-01-01T10:00:00+00:00"},
            Conflict,
            409,
            "already_redeemed",
        ),
        ({"outcome": "wrong_venue"}, ValidationFailed, 422, "validation_error"),
        ({"outcome": "expired", "expires_at": "2026-01-01T10:00:00+00:00"}, Gone, 410, "expired"),
    ],
)
def test_each_redeem_outcome_is_its_problem(result, error, status, code):
    with pytest.raises(error) as raised:
        redemption.redeem_answer(result)

    assert (raised.value.status, raised.value.code) == (status, code)


def test_done_and_replay_are_the_receipt():
    assert redemption.redeem_answer({"outcome": "done", "response": RECEIPT}) == RECEIPT
    assert redemption.redeem_answer({"outcome": "replay", "response": RECEIPT}) == RECEIPT
    assert redemption.void_answer({"outcome": "done", "response": RECEIPT}, 30) == RECEIPT


@pytest.mark.parametrize(
    ("result", "status", "code"),
    [
        ({"outcome": "not_found"}, 404, "not_found"),
        ({"outcome": "already_voided", "voided_at": "2026-01-01T10:00:00+00:00"}, 409, "already_voided"),
        ({"outcome": "window_passed", "void_deadline": "2026-01-01T10:30:00+00:00"}, 409, "void_window_passed"),
    ],
)
def test_each_void_outcome_is_its_problem(result, status, code):
    with pytest.raises(ProblemError) as raised:
        redemption.void_answer(result, 30)

    assert (raised.value.status, raised.value.code) == (status, code)


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(lambda result: redemption.redeem_answer(result), id="redeem"),
        pytest.param(lambda result: redemption.void_answer(result, 30), id="void_redemption"),
    ],
)
@pytest.mark.parametrize("outcome", ["refunded", None])
def test_an_unknown_outcome_is_a_500_logged_by_name_never_a_404(answer, outcome, caplog):
    result = {"outcome": outcome, "code": CODE, "response": RECEIPT} if outcome else {"code": CODE}

    with caplog.at_level(logging.ERROR, logger="offers.redemption"), pytest.raises(Exception) as raised:
        answer(result)

    # Not a ProblemError: the generic handler answers 500 internal_error, not "no such code".
    assert isinstance(raised.value, redemption.UnknownOutcome)
    assert not isinstance(raised.value, ProblemError)
    (record,) = caplog.records
    assert repr(outcome) in record.getMessage() and repr(outcome) in str(raised.value)
    for secret in (CODE, RECEIPT["id"]):
        assert secret not in record.getMessage() and secret not in str(raised.value)
