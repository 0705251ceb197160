"""Venue matching and every rejection reason of a check-in, over HTTP.

A rejected check-in is still a 201 with its reason and the figures behind it; it is
stored with that reason, recorded as an event, and unlocks nothing. Malformed input is 422.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from tests.factories import near, new_user, offer_body

OSLO = (10.7522, 59.9139)
COPENHAGEN = (12.5683, 55.6761)
GOTHENBURG = (11.9746, 57.7089)


def open_venue(world, merchant=None, **venue) -> dict:
    """A venue with a running every-check-in offer, so a wrongly accepted check-in would unlock."""
    m = merchant or world.merchant()
    v = world.venue(m, **venue)
    world.campaign(m, [v["id"]], [offer_body()])
    return v


def checkin(world, user, point, **extra) -> dict:
    r = world.checkin(user, *point, **extra)
    assert r.status_code == 201, r.text
    return r.json()


def assert_rejected_and_recorded(db, sub: str, body: dict, reason: str) -> None:
    assert (body["status"], body["reason"], body["unlocked"]) == ("rejected", reason, []), body
    row = db.execute("SELECT status, reason, detail FROM checkins WHERE id = %s", (body["id"],)).fetchone()
    assert (row["status"], row["reason"], row["detail"]) == ("rejected", reason, body["detail"])
    events = db.execute("SELECT type, reason FROM events WHERE checkin_id = %s", (body["id"],)).fetchall()
    assert events and all((e["type"], e["reason"]) == ("checkin_rejected", reason) for e in events)
    assert db.execute("SELECT count(*) AS n FROM unlocks WHERE user_id = %s", (sub,)).fetchone()["n"] == 0
    assert db.execute("SELECT count(*) AS n FROM exposures WHERE user_id = %s", (sub,)).fetchone()["n"] == 0


# Matching


def test_the_accuracy_circle_must_meet_the_geofence(world, db):
    venue = open_venue(world, radius_m=50)
    point = near(venue["center"], east_m=62)  # 12 m outside the fence

    sub, user = new_user(world)
    missed = checkin(world, user, point, accuracy_m=5)
    assert_rejected_and_recorded(db, sub, missed, "outside_geofence")
    assert missed["detail"]["nearest_venue_id"] == venue["id"]
    assert missed["detail"]["distance_m"] == pytest.approx(12, abs=1)
    assert missed["detail"]["accuracy_m"] == 5

    met = checkin(world, world.user(), point, accuracy_m=20)
    assert (met["status"], met["venue"]["id"], len(met["unlocked"])) == ("accepted", venue["id"], 1)


def test_a_fence_containing_the_point_wins_smallest_first_then_the_nearest(world):
    m = world.merchant()
    mall = open_venue(world, m, radius_m=300, name="Mall")
    kiosk = open_venue(world, m, center=near(mall["center"], east_m=100), radius_m=20, name="Kiosk")
    open_venue(world, m, center=near(mall["center"], east_m=-100), radius_m=40, name="Cafe")

    def matched(point, **extra) -> str:
        body = checkin(world, world.user(), point, **extra)
        assert body["status"] == "accepted", body
        return body["venue"]["name"]

    assert matched(near(kiosk["center"], east_m=5), accuracy_m=10) == "Kiosk"  # inside kiosk and mall
    assert matched(near(kiosk["center"], east_m=5), accuracy_m=10, venue_id=mall["id"]) == "Mall"  # named
    # 30 m from the kiosk's fence, within the accuracy of both kiosk and cafe, inside the mall: the mall
    assert matched(near(kiosk["center"], east_m=50), accuracy_m=40) == "Mall"
    # outside every fence: the nearest fence the accuracy circle meets
    far_lon, far_lat = near(mall["center"], east_m=-400)
    open_venue(world, m, center=near((far_lon, far_lat), north_m=60), radius_m=40, name="A")
    open_venue(world, m, center=near((far_lon, far_lat), north_m=-75), radius_m=40, name="B")
    assert matched((far_lon, far_lat), accuracy_m=50) == "A"  # 20 m to A, 35 m to B


def test_a_deleted_venue_is_never_matched(world, db):
    m = world.merchant()
    venue = open_venue(world, m)
    (campaign,) = world.http.get("/v1/campaigns", headers=m.admin).json()["items"]
    # A venue leaves its running campaigns first (deleting it is refused until then); ended, the
    # campaign unlocks nothing, but a wrong match would still show as accepted.
    assert world.http.post(f"/v1/campaigns/{campaign['id']}/end", headers=m.admin).status_code == 200
    assert world.http.delete(f"/v1/venues/{venue['id']}", headers=m.admin).status_code == 204
    sub, user = new_user(world)
    body = checkin(world, user, venue["center"])
    assert (body["status"], body["reason"]) == ("rejected", "outside_geofence")


# Every rejection reason


def test_outside_geofence_reports_the_distance_to_the_nearest_fence(world, db):
    venue = open_venue(world, radius_m=50)
    sub, user = new_user(world)
    body = checkin(world, user, near(venue["center"], north_m=150), accuracy_m=10)
    assert_rejected_and_recorded(db, sub, body, "outside_geofence")
    assert body["detail"]["distance_m"] == pytest.approx(100, abs=1.5)


def test_accuracy_above_the_limit(world, db, settings):
    venue = open_venue(world)
    sub, user = new_user(world)
    body = checkin(world, user, venue["center"], accuracy_m=settings.max_accuracy_m + 50)
    assert_rejected_and_recorded(db, sub, body, "accuracy_too_low")
    assert body["detail"] == {"accuracy_m": settings.max_accuracy_m + 50, "max_accuracy_m": settings.max_accuracy_m}
    assert body["venue"]["id"] == venue["id"]  # still matched, so the merchant sees the attempt


def test_the_minimum_accuracy_follows_the_setting(world, db, monkeypatch, settings):
    venue = open_venue(world)
    assert checkin(world, world.user(), venue["center"], accuracy_m=1)["status"] == "accepted"  # the minimum itself
    monkeypatch.setattr(settings, "min_accuracy_m", 3.0)

    sub, user = new_user(world)
    body = checkin(world, user, venue["center"], accuracy_m=2)

    assert_rejected_and_recorded(db, sub, body, "mocked_location")
    assert body["detail"] == {"signal": "implausible_accuracy", "accuracy_m": 2, "min_accuracy_m": 3.0}


def test_accuracy_at_the_limit_is_accepted(world, settings):
    venue = open_venue(world)
    body = checkin(world, world.user(), venue["center"], accuracy_m=settings.max_accuracy_m)
    assert body["status"] == "accepted"


def test_too_fast_oslo_to_copenhagen_in_five_minutes(world, db, settings):
    m = world.merchant()
    oslo = open_venue(world, m, center=near(OSLO, east_m=world.rng.uniform(-3000, 3000)))
    copenhagen = open_venue(world, m, center=near(COPENHAGEN, east_m=world.rng.uniform(-3000, 3000)))
    sub, user = new_user(world)
    now = datetime.now(UTC)
    first = checkin(world, user, oslo["center"], observed_at=now - timedelta(minutes=5), venue_id=oslo["id"])
    assert first["status"] == "accepted"
    body = checkin(world, user, copenhagen["center"], observed_at=now, venue_id=copenhagen["id"])

    assert body["status"] == "rejected" and body["reason"] == "too_fast"
    assert body["detail"]["speed_kmh"] > 5000 and body["detail"]["max_speed_kmh"] == settings.max_speed_kmh
    assert body["detail"]["seconds"] == pytest.approx(300, abs=1)
    assert body["detail"]["distance_m"] == pytest.approx(480_000, rel=0.05)
    assert db.execute("SELECT count(*) AS n FROM unlocks WHERE user_id = %s", (sub,)).fetchone()["n"] == 1
    assert db.execute("SELECT reason FROM checkins WHERE id = %s", (body["id"],)).fetchone()["reason"] == "too_fast"


def test_too_fast_against_a_later_fix_sent_late_from_an_offline_queue(world, db):
    m = world.merchant()
    oslo = open_venue(world, m, center=near(OSLO, north_m=world.rng.uniform(-3000, 3000)))
    copenhagen = open_venue(world, m, center=near(COPENHAGEN, north_m=world.rng.uniform(-3000, 3000)))
    sub, user = new_user(world)
    now = datetime.now(UTC)
    assert checkin(world, user, copenhagen["center"], observed_at=now)["status"] == "accepted"
    late = checkin(world, user, oslo["center"], observed_at=now - timedelta(minutes=4))
    assert (late["status"], late["reason"], late["unlocked"]) == ("rejected", "too_fast", [])
    assert late["detail"]["seconds"] == pytest.approx(240, abs=1)
    assert db.execute("SELECT reason FROM checkins WHERE id = %s", (late["id"],)).fetchone()["reason"] == "too_fast"


def test_walking_speed_between_two_venues_is_fine(world):
    m = world.merchant()
    a = open_venue(world, m)
    b = open_venue(world, m, center=near(a["center"], east_m=800))
    _, user = new_user(world)
    now = datetime.now(UTC)
    assert checkin(world, user, a["center"], observed_at=now - timedelta(minutes=9))["status"] == "accepted"
    assert checkin(world, user, b["center"], observed_at=now)["status"] == "accepted"


def test_gps_noise_inside_the_accuracy_circles_is_never_too_fast(world):
    m = world.merchant()
    a = open_venue(world, m, radius_m=80)
    b = open_venue(world, m, center=near(a["center"], east_m=170), radius_m=80)
    _, user = new_user(world)
    now = datetime.now(UTC)
    # 170 m apart in one second, but both fixes have 90 m accuracy: the circles overlap
    assert checkin(world, user, a["center"], observed_at=now - timedelta(seconds=1), accuracy_m=90)["status"] == (
        "accepted"
    )
    assert checkin(world, user, b["center"], observed_at=now, accuracy_m=90)["status"] == "accepted"


def test_too_frequent_inside_the_cool_down_at_one_venue(world, db, settings):
    venue = open_venue(world)
    sub, user = new_user(world)
    now = datetime.now(UTC)
    first = checkin(world, user, venue["center"], observed_at=now - timedelta(minutes=5))
    body = checkin(world, user, venue["center"], observed_at=now)
    assert first["status"] == "accepted" and len(first["unlocked"]) == 1
    assert (body["status"], body["reason"], body["unlocked"]) == ("rejected", "too_frequent", [])
    assert body["detail"]["cooldown_s"] == settings.checkin_cooldown_s
    assert body["detail"]["seconds_since_last"] == pytest.approx(300, abs=1)
    events = db.execute("SELECT type, reason FROM events WHERE checkin_id = %s", (body["id"],)).fetchall()
    assert [(e["type"], e["reason"]) for e in events] == [("checkin_rejected", "too_frequent")]
    assert db.execute("SELECT count(*) AS n FROM unlocks WHERE user_id = %s", (sub,)).fetchone()["n"] == 1


def test_stale_fix(world, db, settings):
    venue = open_venue(world)
    sub, user = new_user(world)
    body = checkin(
        world, user, venue["center"], observed_at=datetime.now(UTC) - timedelta(seconds=settings.max_fix_age_s + 60)
    )
    assert_rejected_and_recorded(db, sub, body, "stale")
    assert body["detail"]["age_s"] > settings.max_fix_age_s
    assert body["detail"]["max_age_s"] == settings.max_fix_age_s


def test_future_timestamp(world, db, settings):
    venue = open_venue(world)
    sub, user = new_user(world)
    body = checkin(world, user, venue["center"], observed_at=datetime.now(UTC) + timedelta(minutes=5))
    assert_rejected_and_recorded(db, sub, body, "future_timestamp")
    assert body["detail"]["ahead_s"] == pytest.approx(300, abs=5)
    assert body["detail"]["max_future_skew_s"] == settings.max_future_skew_s


def test_venue_mismatch_when_the_named_venue_does_not_match(world, db):
    m = world.merchant()
    named = open_venue(world, m, radius_m=50)
    actual = open_venue(world, m, center=near(named["center"], east_m=1050), radius_m=50)
    sub, user = new_user(world)
    body = checkin(world, user, actual["center"], venue_id=named["id"])
    assert_rejected_and_recorded(db, sub, body, "venue_mismatch")
    assert body["detail"]["venue_id"] == named["id"]
    assert body["detail"]["distance_m"] == pytest.approx(1000, abs=5)
    assert body["venue"]["id"] == named["id"]


def test_venue_mismatch_for_an_unknown_named_venue(world, db):
    venue = open_venue(world)
    sub, user = new_user(world)
    unknown = str(uuid.uuid4())
    body = checkin(world, user, venue["center"], venue_id=unknown)
    assert (body["status"], body["reason"], body["venue"]) == ("rejected", "venue_mismatch", None)
    assert body["detail"]["venue_id"] == unknown and body["detail"]["distance_m"] is None
    assert db.execute("SELECT count(*) AS n FROM unlocks WHERE user_id = %s", (sub,)).fetchone()["n"] == 0


@pytest.mark.parametrize(
    ("extra", "detail"),
    [
        ({"mocked": True}, {"signal": "os_reported"}),
        ({"accuracy_m": 0}, {"signal": "zero_accuracy"}),
        ({"accuracy_m": 0.4}, {"signal": "implausible_accuracy", "accuracy_m": 0.4, "min_accuracy_m": 1.0}),
    ],
)
def test_mocked_location(world, db, extra, detail):
    venue = open_venue(world)
    sub, user = new_user(world)
    body = checkin(world, user, venue["center"], **extra)
    assert_rejected_and_recorded(db, sub, body, "mocked_location")
    assert body["detail"] == detail
    assert db.execute("SELECT mocked FROM checkins WHERE id = %s", (body["id"],)).fetchone()["mocked"] is (
        extra.get("mocked")
    )


def test_a_rejection_outside_any_campaign_is_still_recorded(world, db):
    m = world.merchant()
    venue = world.venue(m)  # no campaign here
    sub, user = new_user(world)
    body = checkin(world, user, venue["center"], mocked=True)
    events = db.execute(
        "SELECT type, reason, campaign_id, venue_id FROM events WHERE checkin_id = %s", (body["id"],)
    ).fetchall()
    assert [(e["type"], e["reason"], e["campaign_id"], str(e["venue_id"])) for e in events] == [
        ("checkin_rejected", "mocked_location", None, venue["id"])
    ]


# Malformed input


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"lat": 91}, "lat"),
        ({"lat": -90.5}, "lat"),
        ({"lon": 180.01}, "lon"),
        ({"accuracy_m": -1}, "accuracy_m"),
        ({"observed_at": None}, "observed_at"),
        ({"observed_at": "2026-05-04T12:00:00"}, "observed_at"),  # naive: no time zone
        ({"observed_at": "yesterday"}, "observed_at"),
        ({"venue_id": "not-a-uuid"}, "venue_id"),
        ({"merchant_id": str(uuid.uuid4())}, "merchant_id"),  # unknown fields are refused
        ({"lat": "north"}, "lat"),
        ({"device_id": "pixel\u0000"}, "device_id"),
        # a JSON boolean only: 0 or "false" is a client bug, not an answer
        ({"mocked": 0}, "mocked"),
        ({"mocked": "false"}, "mocked"),
    ],
)
def test_malformed_check_ins_are_422_and_store_nothing(world, db, change, field):
    venue = open_venue(world)
    sub, user = new_user(world)
    body = {
        "lon": venue["center"][0],
        "lat": venue["center"][1],
        "accuracy_m": 10,
        "observed_at": datetime.now(UTC).isoformat(),
        **change,
    }
    body = {k: v for k, v in body.items() if v is not None}
    r = world.http.post("/v1/checkins", json=body, headers={**user, "Idempotency-Key": str(uuid.uuid4())})
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    assert problem["code"] == "validation_error"
    assert field in [e["field"] for e in problem["errors"]]
    assert db.execute("SELECT count(*) AS n FROM checkins WHERE user_id = %s", (sub,)).fetchone()["n"] == 0


def test_only_app_users_check_in(world):
    m = world.merchant()
    venue = open_venue(world, m)
    r = world.checkin(m.staff, *venue["center"])
    assert r.status_code == 403 and r.json()["code"] == "forbidden_role"
    assert world.http.post("/v1/checkins", json={}).status_code == 401


def test_a_point_between_two_cities_is_not_an_alibi(world, db, monkeypatch, settings):
    """Gothenburg two hours ago makes both Oslo and Copenhagen plausible, but not both."""
    monkeypatch.setattr(settings, "max_fix_age_s", 3 * 3600)
    m = world.merchant()
    gothenburg = open_venue(world, m, center=near(GOTHENBURG, east_m=world.rng.uniform(-3000, 3000)))
    oslo = open_venue(world, m, center=near(OSLO, east_m=world.rng.uniform(-3000, 3000)))
    copenhagen = open_venue(world, m, center=near(COPENHAGEN, east_m=world.rng.uniform(-3000, 3000)))
    _, user = new_user(world)
    now = datetime.now(UTC)
    assert checkin(world, user, gothenburg["center"], observed_at=now - timedelta(hours=2))["status"] == "accepted"
    assert checkin(world, user, oslo["center"], observed_at=now - timedelta(minutes=2))["status"] == "accepted"
    assert checkin(world, user, copenhagen["center"], observed_at=now)["reason"] == "too_fast"
