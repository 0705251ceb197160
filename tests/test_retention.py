"""Location retention: positions and device ids go after their retention, and nothing else changes."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from core.settings import Settings
from offers.privacy.retention import purge_positions
from tests.factories import near, offer_body

ROOT = Path(__file__).resolve().parent.parent


def purge_now(settings) -> int:
    """One purge, as the job in `serve` runs it: how many check-ins lost their position."""

    async def purge() -> int:
        engine = create_async_engine(settings.database_url, poolclass=NullPool)
        try:
            async with engine.connect() as conn:
                return await purge_positions(conn, settings, batch=2)  # small batches: several rounds
        finally:
            await engine.dispose()

    return asyncio.run(purge())


def campaign_stats(world, merchant, campaign_id: str) -> dict:
    r = world.http.get(f"/v1/campaigns/{campaign_id}/stats", headers=merchant.admin)
    assert r.status_code == 200, r.text
    return {k: v for k, v in r.json().items() if k != "generated_at"}


def positions_held_past_retention(db, settings) -> int:
    """Check-ins older than their retention that still hold a coordinate, accuracy or device id."""
    return db.execute(
        """SELECT count(*) AS n FROM checkins
           WHERE observed_at < now() - make_interval(
                     days => CASE WHEN status = 'accepted' THEN %s ELSE %s END)
             AND (lon IS NOT NULL OR lat IS NOT NULL OR accuracy_m IS NOT NULL OR device_id IS NOT NULL)""",
        (settings.raw_location_days, settings.fraud_review_days),
    ).fetchone()["n"]


def test_positions_go_after_their_retention_and_the_stats_stay_the_same(world, db, settings):
    m = world.merchant()
    venue = world.venue(m)
    campaign = world.campaign(m, [venue["id"]], [offer_body()])
    sub = f"user-{uuid.uuid4().hex[:12]}"
    user = world.user(sub)
    accepted = world.checkin(user, *near(venue["center"], 5), accuracy_m=12, device_id=f"phone-of-{sub}")
    assert accepted.json()["status"] == "accepted", accepted.text
    rejected = world.checkin(user, *near(venue["center"], 5), accuracy_m=30, device_id=f"phone-of-{sub}")
    assert rejected.json()["reason"] == "too_frequent", rejected.text
    fresh_sub = f"user-{uuid.uuid4().hex[:12]}"
    assert world.checkin(world.user(fresh_sub), *venue["center"]).json()["status"] == "accepted"
    before = campaign_stats(world, m, campaign["id"])

    # 31 days on: the accepted check-in is past its 30 days, the rejected one inside its 90.
    db.execute("UPDATE checkins SET observed_at = observed_at - interval '31 days' WHERE user_id = %s", (sub,))
    assert positions_held_past_retention(db, settings) > 0
    assert purge_now(settings) >= 1
    assert positions_held_past_retention(db, settings) == 0
    rows = {
        r["status"]: r
        for r in db.execute(
            "SELECT status, lon, lat, accuracy_m, device_id, accuracy_bucket, distance_to_fence_m, detail, venue_id,"
            " reason, observed_at FROM checkins WHERE user_id = %s",
            (sub,),
        )
    }
    kept = rows["accepted"]
    assert (kept["lon"], kept["lat"], kept["accuracy_m"], kept["device_id"]) == (None, None, None, None)
    assert (kept["accuracy_bucket"], kept["distance_to_fence_m"], str(kept["venue_id"])) == ("10-25", 0, venue["id"])
    assert rows["rejected"]["lon"] is not None and rows["rejected"]["device_id"] == f"phone-of-{sub}"
    assert rows["rejected"]["detail"], "a rejection keeps its figures for fraud review"
    fresh = db.execute("SELECT lon, device_id FROM checkins WHERE user_id = %s", (fresh_sub,)).fetchone()
    assert fresh["lon"] is not None

    # 91 days on: the rejection goes too, keeping its reason and no figure.
    db.execute("UPDATE checkins SET observed_at = observed_at - interval '60 days' WHERE user_id = %s", (sub,))
    assert purge_now(settings) >= 1
    assert positions_held_past_retention(db, settings) == 0
    gone = db.execute(
        "SELECT lon, device_id, detail, reason, accuracy_bucket FROM checkins"
        " WHERE user_id = %s AND status = 'rejected'",
        (sub,),
    ).fetchone()
    assert (gone["lon"], gone["device_id"], gone["detail"]) == (None, None, None)
    assert (gone["reason"], gone["accuracy_bucket"]) == ("too_frequent", "25-50")

    assert campaign_stats(world, m, campaign["id"]) == before
    assert purge_now(settings) == 0  # nothing left to do: the purge is idempotent


def test_the_purge_in_serve_rests_after_each_full_batch(world, db, settings):
    """A backlog is worked off in batches with a rest after each full one, proportional to the batch's
    time (the purge inside `serve` leaves the machine to the requests); none after the last."""
    m = world.merchant()
    venue = world.venue(m)
    subs = [f"user-{uuid.uuid4().hex[:12]}" for _ in range(5)]
    for sub in subs:
        assert world.checkin(world.user(sub), *venue["center"]).json()["status"] == "accepted"
    db.execute("UPDATE checkins SET observed_at = observed_at - interval '31 days' WHERE user_id = ANY(%s)", (subs,))
    totals: list[int] = []
    rests: list[float] = []

    async def rest(seconds: float) -> None:
        rests.append(seconds)

    async def purge() -> int:
        engine = create_async_engine(settings.database_url, poolclass=NullPool)
        try:
            async with engine.connect() as conn:
                return await purge_positions(conn, settings, totals.append, batch=2, rest_ratio=3.0, sleep=rest)
        finally:
            await engine.dispose()

    assert asyncio.run(purge()) >= len(subs)
    full_batches = sum(1 for before, after in pairwise([0, *totals]) if after - before == 2)
    assert full_batches >= 2 and len(rests) == full_batches
    assert all(seconds > 0 for seconds in rests)
    assert positions_held_past_retention(db, settings) == 0


def test_fraud_review_lists_a_purged_check_in_with_its_bucket_and_distance(world, db, settings):
    m = world.merchant()
    venue = world.venue(m, radius_m=50)
    sub = f"user-{uuid.uuid4().hex[:12]}"
    r = world.checkin(world.user(sub), *near(venue["center"], 120), accuracy_m=20)
    assert r.json()["reason"] == "outside_geofence", r.text
    listed = world.http.get("/v1/checkins", params={"venue_id": venue["id"]}, headers=m.admin).json()["items"][0]
    assert listed["accuracy_m"] == 20 and listed["accuracy_bucket"] == "10-25"
    assert 69 < listed["distance_to_fence_m"] < 71

    db.execute("UPDATE checkins SET observed_at = observed_at - interval '91 days' WHERE user_id = %s", (sub,))
    purge_now(settings)
    purged = world.http.get("/v1/checkins", params={"venue_id": venue["id"]}, headers=m.admin).json()["items"][0]
    assert (purged["accuracy_m"], purged["accuracy_bucket"], purged["distance_to_fence_m"]) == (None, "10-25", 70)
    assert (purged["reason"], purged["detail"]) == ("outside_geofence", None)


def test_a_purged_fix_never_makes_the_next_one_too_fast(world, db, settings):
    """The speed check reads the user's previous accepted fix; once purged it has no position, and
    a fix that old could never have been too fast anyway (settings refuse a shorter retention)."""
    m = world.merchant()
    here, far_away = world.venue(m), world.venue(m)
    sub = f"user-{uuid.uuid4().hex[:12]}"
    user = world.user(sub)
    assert world.checkin(user, *here["center"]).json()["status"] == "accepted"
    db.execute("UPDATE checkins SET observed_at = observed_at - interval '31 days' WHERE user_id = %s", (sub,))
    purge_now(settings)
    assert db.execute("SELECT lon FROM checkins WHERE user_id = %s", (sub,)).fetchone()["lon"] is None

    r = world.checkin(user, *far_away["center"])
    assert r.json()["status"] == "accepted", r.text


def test_settings_refuse_a_retention_a_purged_fix_could_still_be_too_fast_within():
    with pytest.raises(ValueError, match="CHECKIN_RAW_LOCATION_DAYS"):
        Settings(env="development", raw_location_days=1)
    assert Settings(env="development", raw_location_days=4).raw_location_days == 4
    assert Settings(env="development").fraud_review_days == 90


def test_the_purge_command_reports_its_progress(world, db, settings):
    m = world.merchant()
    venue = world.venue(m)
    sub = f"user-{uuid.uuid4().hex[:12]}"
    assert world.checkin(world.user(sub), *venue["center"], device_id="phone").json()["status"] == "accepted"
    db.execute("UPDATE checkins SET observed_at = %s WHERE user_id = %s", (datetime.now(UTC) - timedelta(days=40), sub))
    done = subprocess.run(
        [sys.executable, "-m", "checkin_offers.cli", "purge"],
        cwd=ROOT,
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "purged" in done.stdout and "check-ins so far" in done.stdout
    assert db.execute("SELECT device_id FROM checkins WHERE user_id = %s", (sub,)).fetchone()["device_id"] is None


def test_a_purge_in_progress_blocks_neither_check_ins_nor_another_purge(world, db, database_url, settings):
    m = world.merchant()
    venue = world.venue(m)
    sub = f"user-{uuid.uuid4().hex[:12]}"
    user = world.user(sub)
    assert world.checkin(user, *venue["center"]).json()["status"] == "accepted"
    db.execute("UPDATE checkins SET observed_at = observed_at - interval '31 days' WHERE user_id = %s", (sub,))

    url = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url) as purging:  # a batch that has claimed the row and not committed yet
        claimed = purging.execute(
            "SELECT id FROM checkins WHERE user_id = %s AND lon IS NOT NULL FOR UPDATE SKIP LOCKED", (sub,)
        ).fetchall()
        assert len(claimed) == 1
        started = time.monotonic()
        assert purge_now(settings) == 0  # another purge skips the claimed row instead of waiting
        r = world.checkin(user, *venue["center"])  # reads that row as the previous fix
        assert r.status_code == 201 and r.json()["status"] == "accepted", r.text
        assert time.monotonic() - started < 5
        purging.rollback()
    assert purge_now(settings) >= 1
