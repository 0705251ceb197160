"""The demo seed (`checkin-offers seed-demo [--with-activity]`) and the traffic simulator, against real services.

The seed writes its Oslo and Copenhagen merchants into the test database; other tests make their
merchants at random far-away spots, so neither sees the other's data. `--with-activity` runs in a
database of its own, because it decides by whether the demo has check-ins yet.
"""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg.rows import dict_row
from rich.console import Console
from sqlalchemy.engine import make_url

from checkin_offers.demo import ACTIVITY_DAYS, COFFEE, MERCHANTS
from checkin_offers.simulate import Options, required_fix_age_s, simulate
from tests.conftest import own_database

DEMO_IDS = [m.id for m in MERCHANTS]
SNAPSHOT_QUERIES = {
    "merchants": "SELECT * FROM merchants WHERE id = ANY(%(ids)s) ORDER BY id",
    "venues": "SELECT id, name, timezone, geofence, area_m2, updated_at FROM venues "
    "WHERE merchant_id = ANY(%(ids)s) ORDER BY id",
    "campaigns": "SELECT * FROM campaigns WHERE merchant_id = ANY(%(ids)s) ORDER BY id",
    "offers": "SELECT o.* FROM offers o JOIN campaigns c ON c.id = o.campaign_id "
    "WHERE c.merchant_id = ANY(%(ids)s) ORDER BY o.id",
    "campaign_venues": "SELECT cv.* FROM campaign_venues cv JOIN campaigns c ON c.id = cv.campaign_id "
    "WHERE c.merchant_id = ANY(%(ids)s) ORDER BY 1, 2",
}
DEMO_ACTIVITY_QUERY = """
    SELECT count(*) AS checkins, count(DISTINCT (c.observed_at AT TIME ZONE 'UTC')::date) AS days,
           min(c.observed_at) AS first_observed, max(c.observed_at) AS last_observed,
           (SELECT count(*) FROM redemptions WHERE merchant_id = ANY(%(ids)s)) AS redemptions
    FROM checkins c JOIN venues v ON v.id = c.venue_id WHERE v.merchant_id = ANY(%(ids)s)
"""


def _seed_demo(*flags: str, database_url: str | None = None) -> str:
    env = {**os.environ, **({"CHECKIN_DATABASE_URL": database_url} if database_url else {})}
    done = subprocess.run(
        [sys.executable, "-m", "checkin_offers.cli", "seed-demo", *flags],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def first_seed(base_url: str) -> str:
    """The seed's output on this test database, where it runs first (base_url: migrated and serving)."""
    return _seed_demo()


def _snapshot(db) -> dict[str, list[dict]]:
    return {table: db.execute(query, {"ids": DEMO_IDS}).fetchall() for table, query in SNAPSHOT_QUERIES.items()}


def test_seed_demo_creates_merchants_venues_and_active_campaigns(first_seed, db):
    assert "demo data created" in first_seed
    assert "export APP_TOKEN=" in first_seed and "curl" in first_seed
    snapshot = _snapshot(db)
    assert {m["name"] for m in snapshot["merchants"]} == {m.name for m in MERCHANTS}
    assert sorted(v["name"] for v in snapshot["venues"]) == sorted(v.name for m in MERCHANTS for v in m.venues)
    assert {v["timezone"] for v in snapshot["venues"]} == {"Europe/Oslo", "Europe/Copenhagen"}
    assert {v["geofence"]["type"] for v in snapshot["venues"]} == {"Circle", "Polygon"}
    assert len(snapshot["campaigns"]) == len(MERCHANTS)
    assert all(c["status"] == "active" and 10 <= c["holdout_percent"] <= 20 for c in snapshot["campaigns"])
    # A back-dated history counts for the campaigns, and closes some of its attribution windows.
    history_start = datetime.now(UTC) - timedelta(days=ACTIVITY_DAYS)
    assert all(c["starts_at"] < history_start for c in snapshot["campaigns"])
    assert all(c["attribution_days"] < ACTIVITY_DAYS for c in snapshot["campaigns"])
    rules = {o["rule"]["type"] for o in snapshot["offers"]}
    assert {"every_checkin", "first_checkin", "nth_checkin", "loyalty", "flash", "group"} <= rules
    assert any(o["schedule"] for o in snapshot["offers"])
    assert len(snapshot["campaign_venues"]) == len(snapshot["venues"])
    coffee_campaign = next(c for c in snapshot["campaigns"] if c["merchant_id"] == COFFEE.id)
    assert f"/v1/campaigns/{coffee_campaign['id']}/stats" in first_seed


def test_seed_demo_twice_changes_nothing(first_seed, db):
    before = _snapshot(db)
    again = _seed_demo()
    assert "nothing changed" in again
    assert _snapshot(db) == before


@pytest.mark.parametrize("city,lat,lon", [("Europe/Oslo", 59.9139, 10.7522), ("Europe/Copenhagen", 55.6761, 12.5683)])
def test_demo_venues_are_nearby_with_offers(first_seed, world, http, city, lat, lon):
    response = http.get(
        "/v1/venues/nearby", params={"lat": lat, "lon": lon, "radius_m": 5000, "limit": 100}, headers=world.user()
    )
    assert response.status_code == 200, response.text
    found = {item["name"]: item for item in response.json()["items"]}
    expected = {v.name for m in MERCHANTS for v in m.venues if v.timezone == city}
    assert expected <= found.keys()
    assert all(found[name]["has_checkin_offer"] for name in expected)
    others = {v.name for m in MERCHANTS for v in m.venues if v.timezone != city}
    assert not others & found.keys()


def test_a_short_history_agrees_with_the_campaign_stats(first_seed, base_url, settings, monkeypatch, world, http):
    options = Options(
        base_url=base_url,
        users=40,
        history_days=3,
        seed=11,
        spoofers=3,
        offline_share=0.3,
        redeem_share=0.8,
        concurrency=8,
    )
    # What CHECKIN_MAX_FIX_AGE_S in the server's environment would do; this server runs in the test process.
    monkeypatch.setattr(settings, "max_fix_age_s", required_fix_age_s(options.history_days))
    output = io.StringIO()

    report = asyncio.run(simulate(options, Console(file=output, width=140)))

    assert len(report.campaigns) == len(MERCHANTS)
    for campaign in report.campaigns:
        assert campaign.simulated == campaign.stats, f"{campaign.name}:\n{output.getvalue()}"
    totals = {
        name: sum(c.simulated.get(name, 0) for c in report.campaigns)
        for name in ("check-ins accepted", "exposed: treatment", "unlocks", "redemptions")
    }
    assert all(totals.values()), totals
    traffic = report.traffic
    assert traffic.answered["stale"] == 0
    assert traffic.queued > 0 and traffic.replayed == traffic.queued
    assert traffic.spoofers_caught, "no spoofer was rejected as too_fast"
    assert sum(c.simulated.get("rejected: too_fast", 0) for c in report.campaigns) >= len(traffic.spoofers_caught)
    assert "agrees with the simulator" in output.getvalue()

    # The check-ins count on the days they were observed, inside the history.
    start, end = report.history
    assert end - start == timedelta(days=options.history_days)
    coffee = next(c for c in report.campaigns if c.name == COFFEE.campaign)
    stats = http.get(
        f"/v1/campaigns/{coffee.id}/stats", headers=world.headers("merchant_admin", merchant_id=str(COFFEE.id))
    ).json()
    days = {row["day"] for row in stats["by_day"] if row["checkins_accepted"]}
    assert len(days) >= 2
    assert all(start.date().isoformat() <= day <= end.date().isoformat() for day in days)
    assert {name.removeprefix("accepted on ") for name in coffee.simulated if name.startswith("accepted on ")} == days
    # Exposures on the history's first days have closed their one-day windows: the effect has numbers.
    assert stats["status"] != "collecting"
    assert stats["effect"]["arms"]["treatment"]["users_window_closed"] > 0


@pytest.fixture
def empty_database() -> Iterator[str]:
    yield from own_database("activity")


def _demo_activity(database_url: str) -> dict:
    plain = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(plain, row_factory=dict_row) as conn:
        return conn.execute(DEMO_ACTIVITY_QUERY, {"ids": DEMO_IDS}).fetchone()


def test_seed_demo_with_activity_adds_a_few_days_of_history_once(empty_database):
    started = datetime.now(UTC)
    first = _seed_demo("--with-activity", database_url=empty_database)

    assert "demo data created" in first and f"{ACTIVITY_DAYS} days of activity" in first
    assert "agrees with the simulator" in first and "disagree" not in first
    activity = _demo_activity(empty_database)
    assert activity["checkins"] > 0 and activity["redemptions"] > 0
    assert activity["days"] >= ACTIVITY_DAYS
    assert started - timedelta(days=ACTIVITY_DAYS) <= activity["first_observed"] < started - timedelta(days=1)
    assert activity["last_observed"] <= datetime.now(UTC)

    again = _seed_demo("--with-activity", database_url=empty_database)

    assert "nothing changed" in again and "no activity added" in again
    assert _demo_activity(empty_database) == activity
