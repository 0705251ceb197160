"""Unlocks under concurrency: a budget is never overspent, a per-user limit never exceeded,
no code is handed out twice, and parallel check-ins of one user are judged one at a time."""

from __future__ import annotations

import math
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import httpx
import psycopg
import pytest
from sqlalchemy.engine import make_url

from tests.factories import offer_body

OSLO = (10.7522, 59.9139)
COPENHAGEN = (12.5683, 55.6761)


def near(center: tuple[float, float], east_m: float = 0, north_m: float = 0) -> tuple[float, float]:
    lon, lat = center
    return lon + east_m / (111_320 * math.cos(math.radians(lat))), lat + north_m / 111_320


@pytest.fixture
def no_cool_down(monkeypatch, settings):
    monkeypatch.setattr(settings, "checkin_cooldown_s", 0)
    monkeypatch.setattr(settings, "checkin_rate_per_minute", 1000)


def parallel(base_url: str, requests: list[tuple[dict, dict]]) -> list[httpx.Response]:
    """POST every (headers, body) to /v1/checkins at once, each on its own connection."""

    def send(request: tuple[dict, dict]) -> httpx.Response:
        headers, body = request
        with httpx.Client(base_url=base_url, timeout=60) as client:
            return client.post("/v1/checkins", json=body, headers={**headers, "Idempotency-Key": str(uuid.uuid4())})

    with ThreadPoolExecutor(len(requests)) as pool:
        return list(pool.map(send, requests))


def at(point: tuple[float, float], **extra) -> dict:
    return {"lon": point[0], "lat": point[1], "accuracy_m": 10, "observed_at": datetime.now(UTC).isoformat(), **extra}


def budget_left(db, offer_id: str) -> int:
    return db.execute(
        "SELECT sum(remaining) AS n FROM offer_budget_shards WHERE offer_id = %s", (offer_id,)
    ).fetchone()["n"]


def test_forty_users_at_once_against_a_budget_of_seven(world, db, base_url):
    m = world.merchant()
    venue = world.venue(m)
    campaign = world.campaign(m, [venue["id"]], [offer_body(total_limit=7, per_user_limit=1)])
    offer_id = campaign["offers"][0]["id"]

    responses = parallel(base_url, [(world.user(), at(venue["center"])) for _ in range(40)])

    assert [r.status_code for r in responses] == [201] * 40, [r.text for r in responses if r.status_code != 201]
    bodies = [r.json() for r in responses]
    assert all(b["status"] == "accepted" for b in bodies)
    won = [u for b in bodies for u in b["unlocked"]]
    assert len(won) == 7
    assert db.execute("SELECT count(*) AS n FROM unlocks WHERE offer_id = %s", (offer_id,)).fetchone()["n"] == 7
    assert budget_left(db, offer_id) == 0
    assert len({u["code"] for u in won}) == 7
    assert world.http.get(f"/v1/campaigns/{campaign['id']}", headers=m.admin).json()["offers"][0]["remaining"] == 0


def test_flash_first_five_of_thirty_at_once(world, db, base_url):
    m = world.merchant()
    venue = world.venue(m)
    campaign = world.campaign(m, [venue["id"]], [offer_body(rule={"type": "flash", "first_n": 5}, total_limit=1000)])
    offer_id = campaign["offers"][0]["id"]
    responses = parallel(base_url, [(world.user(), at(venue["center"])) for _ in range(30)])
    assert sum(len(r.json()["unlocked"]) for r in responses) == 5
    winners = db.execute(
        "SELECT count(DISTINCT user_id) AS users, count(*) AS n FROM unlocks WHERE offer_id = %s", (offer_id,)
    ).fetchone()
    assert (winners["users"], winners["n"]) == (5, 5)
    assert budget_left(db, offer_id) == 0


def test_one_user_at_once_never_exceeds_the_per_user_limit(world, db, base_url, no_cool_down):
    m = world.merchant()
    venue = world.venue(m)
    campaign = world.campaign(m, [venue["id"]], [offer_body(per_user_limit=3, total_limit=1000)])
    sub = f"user-{uuid.uuid4().hex[:12]}"
    user = world.user(sub)

    responses = parallel(base_url, [(user, at(venue["center"])) for _ in range(20)])

    assert [r.status_code for r in responses] == [201] * 20
    assert all(r.json()["status"] == "accepted" for r in responses)
    assert sum(len(r.json()["unlocked"]) for r in responses) == 3
    row = db.execute(
        "SELECT count(*) AS n, count(DISTINCT code) AS codes FROM unlocks WHERE user_id = %s", (sub,)
    ).fetchone()
    assert (row["n"], row["codes"]) == (3, 3)
    assert (
        db.execute(
            "SELECT unlocks FROM user_offer_unlocks WHERE user_id = %s AND offer_id = %s",
            (sub, campaign["offers"][0]["id"]),
        ).fetchone()["unlocks"]
        == 3
    )


def test_one_user_at_once_inside_the_cool_down_is_accepted_once(world, db, base_url, monkeypatch, settings):
    monkeypatch.setattr(settings, "checkin_rate_per_minute", 1000)
    m = world.merchant()
    venue = world.venue(m)
    world.campaign(m, [venue["id"]], [offer_body()])
    user = world.user()
    bodies = [r.json() for r in parallel(base_url, [(user, at(venue["center"])) for _ in range(10)])]
    assert sorted(b["status"] for b in bodies) == ["accepted"] + ["rejected"] * 9
    assert {b["reason"] for b in bodies if b["status"] == "rejected"} == {"too_frequent"}
    assert sum(len(b["unlocked"]) for b in bodies) == 1


def test_two_cities_at_once_cannot_both_be_accepted(world, db, base_url, no_cool_down):
    m = world.merchant()
    oslo = world.venue(m, center=near(OSLO, east_m=world.rng.uniform(-3000, 3000)))
    copenhagen = world.venue(m, center=near(COPENHAGEN, east_m=world.rng.uniform(-3000, 3000)))
    user = world.user()
    for _ in range(5):  # each round: a fresh pair of simultaneous fixes 480 km apart
        bodies = [r.json() for r in parallel(base_url, [(user, at(oslo["center"])), (user, at(copenhagen["center"]))])]
        assert "too_fast" in {b["reason"] for b in bodies}, bodies


@contextmanager
def all_at_once(database_url: str, db, count: int) -> Iterator[ThreadPoolExecutor]:
    """Check-ins submitted inside this block all stop after recording their check-in (the
    exposures table is locked) and go on together when it ends: truly simultaneous rule checks."""
    url = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url) as blocker, ThreadPoolExecutor(count) as pool:
        blocker.execute("LOCK TABLE exposures IN ACCESS EXCLUSIVE MODE")
        yield pool
        deadline = datetime.now(UTC) + timedelta(seconds=20)
        while _waiting_on_exposures(db) < count:
            assert datetime.now(UTC) < deadline, "the check-ins never reached the lock"
            threading.Event().wait(0.02)
        blocker.rollback()


def _waiting_on_exposures(db) -> int:
    return db.execute(
        "SELECT count(*) AS n FROM pg_locks WHERE NOT granted AND relation = 'exposures'::regclass "
        "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    ).fetchone()["n"]


def send(base_url: str, headers: dict, body: dict) -> httpx.Response:
    with httpx.Client(base_url=base_url, timeout=60) as client:
        return client.post("/v1/checkins", json=body, headers={**headers, "Idempotency-Key": str(uuid.uuid4())})


def test_a_group_arriving_at_once_completes(world, db, base_url, database_url):
    m = world.merchant()
    venue = world.venue(m)
    campaign = world.campaign(
        m,
        [venue["id"]],
        [offer_body(rule={"type": "group", "min_people": 3, "within_minutes": 60}, per_user_limit=1, total_limit=1000)],
    )
    subs = [f"user-{uuid.uuid4().hex[:12]}" for _ in range(3)]
    with all_at_once(database_url, db, 3) as pool:
        futures = [pool.submit(send, base_url, world.user(sub), at(venue["center"])) for sub in subs]
    responses = [f.result() for f in futures]

    assert [r.status_code for r in responses] == [201] * 3, [r.text for r in responses]
    assert sorted(len(r.json()["unlocked"]) for r in responses) == [0, 0, 1]  # the last to be counted completes it
    unlocked = db.execute("SELECT user_id FROM unlocks WHERE campaign_id = %s", (campaign["id"],)).fetchall()
    assert sorted(u["user_id"] for u in unlocked) == sorted(subs)


def test_top_visitors_tied_and_arriving_at_once_crown_one(world, db, base_url, database_url, monkeypatch, settings):
    monkeypatch.setattr(settings, "max_fix_age_s", 5 * 86400)
    tz = "Europe/Oslo"
    m = world.merchant()
    venue = world.venue(m, timezone=tz)
    campaign = world.campaign(m, [venue["id"]], [offer_body(rule={"type": "top_visitor", "within_days": 30})])
    subs = [f"user-{uuid.uuid4().hex[:12]}" for _ in range(2)]
    for days_ago, sub in ((3, subs[0]), (2, subs[1])):  # one day each
        day = (datetime.now(ZoneInfo(tz)) - timedelta(days=days_ago)).date()
        observed = datetime.combine(day, time(12), ZoneInfo(tz))
        assert send(base_url, world.user(sub), at(venue["center"], observed_at=observed.isoformat())).status_code == 201
    db.execute("DELETE FROM unlocks WHERE campaign_id = %s", (campaign["id"],))  # the first was crowned alone

    with all_at_once(database_url, db, 2) as pool:
        futures = [pool.submit(send, base_url, world.user(sub), at(venue["center"])) for sub in subs]
    responses = [f.result() for f in futures]

    assert sorted(len(r.json()["unlocked"]) for r in responses) == [0, 1]  # two days each: strictly top is one
