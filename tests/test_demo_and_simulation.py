"""The demo seed (`checkin-offers seed-demo`) and the traffic simulator, against the live test server.

The seed writes its Oslo and Copenhagen merchants into the test database; other tests make their
merchants at random far-away spots, so neither sees the other's data.
"""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys

import pytest
from rich.console import Console

from checkin_offers.demo import MERCHANTS
from checkin_offers.simulate import Options, server_settings, simulate

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


def _seed_demo() -> str:
    done = subprocess.run([sys.executable, "-m", "checkin_offers.cli", "seed-demo"], env=os.environ,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
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
    rules = {o["rule"]["type"] for o in snapshot["offers"]}
    assert {"every_checkin", "first_checkin", "nth_checkin", "loyalty", "flash", "group"} <= rules
    assert any(o["schedule"] for o in snapshot["offers"])
    assert len(snapshot["campaign_venues"]) == len(snapshot["venues"])


def test_seed_demo_twice_changes_nothing(first_seed, db):
    before = _snapshot(db)
    again = _seed_demo()
    assert "nothing changed" in again
    assert _snapshot(db) == before


@pytest.mark.parametrize("city,lat,lon", [("Europe/Oslo", 59.9139, 10.7522), ("Europe/Copenhagen", 55.6761, 12.5683)])
def test_demo_venues_are_nearby_with_offers(first_seed, world, http, city, lat, lon):
    response = http.get("/v1/venues/nearby", params={"lat": lat, "lon": lon, "radius_m": 5000, "limit": 100},
                        headers=world.user())
    assert response.status_code == 200, response.text
    found = {item["name"]: item for item in response.json()["items"]}
    expected = {v.name for m in MERCHANTS for v in m.venues if v.timezone == city}
    assert expected <= found.keys()
    assert all(found[name]["has_checkin_offer"] for name in expected)
    others = {v.name for m in MERCHANTS for v in m.venues if v.timezone != city}
    assert not others & found.keys()


def test_a_short_simulation_agrees_with_the_campaign_stats(first_seed, base_url, settings, monkeypatch):
    options = Options(base_url=base_url, users=30, days=2, day_seconds=5, seed=11, spoofers=3,
                      offline_share=0.3, redeem_share=0.8, concurrency=8)
    # What `CHECKIN_...=` in the server's environment would do; this server runs in the test process.
    for variable, value in server_settings(options).items():
        name = variable.removeprefix("CHECKIN_").lower()
        monkeypatch.setattr(settings, name, type(getattr(settings, name))(value))
    output = io.StringIO()

    report = asyncio.run(simulate(options, Console(file=output, width=140)))

    assert len(report.campaigns) == len(MERCHANTS)
    for campaign in report.campaigns:
        assert campaign.simulated == campaign.stats, f"{campaign.name}:\n{output.getvalue()}"
    totals = {name: sum(c.simulated.get(name, 0) for c in report.campaigns)
              for name in ("check-ins accepted", "exposed: treatment", "unlocks", "redemptions")}
    assert all(totals.values()), totals
    traffic = report.traffic
    assert traffic.queued > 0 and traffic.replayed == traffic.queued
    assert traffic.spoofers_caught, "no spoofer was rejected as too_fast"
    assert sum(c.simulated.get("rejected: too_fast", 0) for c in report.campaigns) >= len(traffic.spoofers_caught)
    assert "agrees with the simulator" in output.getvalue()
