"""The check-in's SQL steps and helpers called on their own, table-driven, on crafted rows in the
migrated test database: schedule_allows, assignment_bucket, new_offer_code, the shard count,
implied_speed and the speed and cool-down checks, match_venue and its limits, and rule_met for
every rule type. (The HTTP tests prove the same behaviour end to end; these pin each piece.)"""

from __future__ import annotations

import hashlib
import random
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg.types.json import Jsonb
from pydantic import ValidationError
from pyproj import Geod

from core.settings import Settings
from offers.rules import SHARDS, budget_shards
from tests.factories import near

GEOD = Geod(ellps="WGS84")
CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

# --------------------------------------------------------------------------- schedule_allows

EVENING = {"windows": [{"start": "17:00", "end": "19:00"}]}
FRIDAY_NIGHT = {"weekdays": [5], "windows": [{"start": "22:00", "end": "02:00"}]}
UNTIL_MIDNIGHT = {"windows": [{"start": "22:00", "end": "00:00"}]}
TWO_TO_THREE = {"windows": [{"start": "02:00", "end": "03:00"}]}
OSLO = "Europe/Oslo"
# 2026-06-01 is a Monday, 06-05 a Friday; Oslo is UTC+2 in summer.
SCHEDULES = [
    (None, "2026-06-01T12:00+02:00", OSLO, True, "no schedule: any time"),
    ({"weekdays": [1]}, "2026-06-01T12:00+02:00", OSLO, True, "all day on a listed weekday"),
    ({"weekdays": [2, 3]}, "2026-06-01T12:00+02:00", OSLO, False, "not on another weekday"),
    ({"weekdays": [1], "windows": []}, "2026-06-01T03:00+02:00", OSLO, True, "no windows: all day"),
    (EVENING, "2026-06-01T17:00+02:00", OSLO, True, "a window includes its start"),
    (EVENING, "2026-06-01T18:59+02:00", OSLO, True, "and the minute before its end"),
    (EVENING, "2026-06-01T19:00+02:00", OSLO, False, "but not its end"),
    (EVENING, "2026-06-01T16:59+02:00", OSLO, False, "nor the minute before its start"),
    ({"weekdays": [2], **EVENING}, "2026-06-01T18:00+02:00", OSLO, False, "a window on another weekday"),
    (
        {"windows": [{"start": "08:00", "end": "09:00"}, {"start": "17:00", "end": "19:00"}]},
        "2026-06-01T18:00+02:00",
        OSLO,
        True,
        "any of several windows",
    ),
    (FRIDAY_NIGHT, "2026-06-05T23:00+02:00", OSLO, True, "past midnight: the evening of the day it starts"),
    (FRIDAY_NIGHT, "2026-06-06T01:59+02:00", OSLO, True, "and the small hours after it"),
    (FRIDAY_NIGHT, "2026-06-06T02:00+02:00", OSLO, False, "until its end"),
    (FRIDAY_NIGHT, "2026-06-05T01:00+02:00", OSLO, False, "Friday's small hours belong to Thursday's night"),
    (FRIDAY_NIGHT, "2026-06-06T23:00+02:00", OSLO, False, "Saturday evening is not Friday's"),
    (UNTIL_MIDNIGHT, "2026-06-01T23:59+02:00", OSLO, True, "a window ending at midnight"),
    (UNTIL_MIDNIGHT, "2026-06-02T00:00+02:00", OSLO, False, "ends at midnight"),
    # The venue's local time, whatever the instant's offset.
    (EVENING, "2026-06-01T15:30Z", OSLO, True, "17:30 in Oslo"),
    (EVENING, "2026-06-01T15:30Z", "UTC", False, "15:30 in UTC"),
    (EVENING, "2026-06-01T22:30Z", "America/New_York", True, "18:30 in New York (UTC-4)"),
    ({"weekdays": [2]}, "2026-06-01T23:30Z", "Asia/Tokyo", True, "already Tuesday in Tokyo"),
    ({"weekdays": [2]}, "2026-06-01T23:30Z", "America/New_York", False, "still Monday in New York"),
    # Daylight saving: on 2026-03-29 Oslo's clocks jump from 02:00 to 03:00 (at 01:00 UTC)...
    (TWO_TO_THREE, "2026-03-29T00:59Z", OSLO, False, "01:59 CET, a minute before the jump"),
    (TWO_TO_THREE, "2026-03-29T01:00Z", OSLO, False, "03:00 CEST: 02:00-03:00 never happens that night"),
    # ... and on 2026-10-25 they go back from 03:00 to 02:00, so 02:00-03:00 happens twice.
    (TWO_TO_THREE, "2026-10-25T00:30Z", OSLO, True, "02:30 CEST"),
    (TWO_TO_THREE, "2026-10-25T01:30Z", OSLO, True, "02:30 CET, an hour later"),
    (TWO_TO_THREE, "2026-10-25T02:00Z", OSLO, False, "03:00 CET"),
]


@pytest.mark.parametrize(("schedule", "at", "tz", "allowed"), [c[:4] for c in SCHEDULES], ids=[c[4] for c in SCHEDULES])
def test_schedule_allows(db, schedule, at, tz, allowed):
    row = db.execute(
        "SELECT schedule_allows(%s, %s::timestamptz, %s) AS allowed",
        (Jsonb(schedule) if schedule is not None else None, at, tz),
    ).fetchone()
    assert row["allowed"] is allowed


# --------------------------------------------------------------------------- assignment_bucket


def python_bucket(salt: str, user: str) -> int:
    """The first 32 bits of md5(salt:user), unsigned, modulo 10,000."""
    return int(hashlib.md5(f"{salt}:{user}".encode()).hexdigest()[:8], 16) % 10_000


@pytest.mark.parametrize(
    ("salt", "user", "bucket"),
    [
        ("salt", "user-1", 4560),  # md5 starts b1449fb0: the high bit is set, and read unsigned
        ("spring-2026", "ada", 900),
        ("spring-2026", "bo", 6614),
        ("a3f9", "user-42", 1881),
        ("", "", 479),
    ],
)
def test_assignment_bucket_known_values(db, salt, user, bucket):
    assert db.execute("SELECT assignment_bucket(%s, %s) AS b", (salt, user)).fetchone()["b"] == bucket
    assert python_bucket(salt, user) == bucket


def test_assignment_bucket_is_deterministic_in_range_and_spread(db):
    salt = uuid.uuid4().hex
    query = "SELECT 'user-' || i AS u, assignment_bucket(%s, 'user-' || i) AS b FROM generate_series(1, 4000) i"
    first = {r["u"]: r["b"] for r in db.execute(query, (salt,))}
    assert {r["u"]: r["b"] for r in db.execute(query, (salt,))} == first
    assert all(0 <= b <= 9999 and b == python_bucket(salt, u) for u, b in first.items())
    tenths = [sum(1 for b in first.values() if b // 1000 == i) for i in range(10)]
    assert all(300 <= n <= 500 for n in tenths), tenths  # 400 each expected, sd 19
    other_salt = {r["u"]: r["b"] for r in db.execute(query, (uuid.uuid4().hex,))}
    assert sum(first[u] == other_salt[u] for u in first) < 20  # a new salt reshuffles


# --------------------------------------------------------------------------- new_offer_code


def test_new_offer_codes_are_three_groups_of_four_crockford_symbols_and_distinct(db):
    codes = [r["code"] for r in db.execute("SELECT new_offer_code() AS code FROM generate_series(1, 2000)")]
    assert all(re.fullmatch(r"[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}", c) for c in codes)
    assert set("".join(codes).replace("-", "")) <= set(CROCKFORD)  # never I, L, O or U
    assert len(set(codes)) == len(codes)


# --------------------------------------------------------------------------- shards


def test_one_shard_count_on_both_sides(db):
    assert db.execute("SELECT shard_count() AS n").fetchone()["n"] == SHARDS
    assert SHARDS & (SHARDS - 1) == 0  # a power of two: user_shard masks a hash with it
    rows = db.execute(
        "SELECT user_shard(u) AS shard, hashtext(u) AS h"
        " FROM (SELECT 'user-' || i AS u FROM generate_series(1, 2000) i) x"
    ).fetchall()
    assert {r["shard"] for r in rows} == set(range(SHARDS))
    assert all(r["shard"] == r["h"] % SHARDS for r in rows)  # Python's % of a negative hash is the mask
    assert max(len(budget_shards(budget)) for budget in (1, 7, 8, 9, 1_000_000)) == SHARDS


# --------------------------------------------------------------------------- speed


def fix(lon: float, lat: float, accuracy_m: float, seconds: float) -> tuple[float, float, float, datetime]:
    return lon, lat, accuracy_m, datetime(2026, 6, 1, 12, tzinfo=UTC) + timedelta(seconds=seconds)


def metres_away(lon: float, lat: float, metres: float) -> tuple[float, float]:
    lon2, lat2, _ = GEOD.fwd(lon, lat, 30, metres)
    return lon2, lat2


KM = metres_away(10.75, 59.91, 1000)
SPEEDS = [
    (fix(10.75, 59.91, 0, 0), fix(*KM, 0, 60), (1000, 60, 60), "a geodesic kilometre in a minute"),
    (fix(10.75, 59.91, 100, 0), fix(*KM, 150, 60), (750, 60, 45), "less both accuracy radii"),
    (fix(10.75, 59.91, 100, 60), fix(*KM, 150, 0), (750, 60, 45), "the fixes in either order"),
    (fix(10.75, 59.91, 600, 0), fix(*KM, 500, 1), (0, 1, 0), "circles that overlap: no move"),
    (fix(10.75, 59.91, 0, 0), fix(*KM, 0, 0), (1000, 0, float("inf")), "a move in no time"),
    (fix(10.75, 59.91, 5, 0), fix(10.75, 59.91, 5, 0), (0, 0, 0), "standing still in no time"),
    (fix(179.999, 0, 0, 0), fix(-179.999, 0, 0, 3600), (222.6, 3600, 0.2226), "across the antimeridian"),
]


@pytest.mark.parametrize(("a", "b", "expected"), [c[:3] for c in SPEEDS], ids=[c[3] for c in SPEEDS])
def test_implied_speed(db, a, b, expected):
    row = db.execute(
        "SELECT * FROM implied_speed(ST_SetSRID(ST_MakePoint(%s, %s), 4326)::geography, %s, %s,"
        " ST_SetSRID(ST_MakePoint(%s, %s), 4326)::geography, %s, %s)",
        (*a, *b),
    ).fetchone()
    assert (row["distance_m"], row["seconds"], row["speed_kmh"]) == pytest.approx(expected, rel=1e-3, abs=1e-6)


# --------------------------------------------------------------------------- crafted rows


def spot(rng: random.Random) -> tuple[float, float]:
    """A random place, far from every other test's venues (as tests/factories.py: World.spot)."""
    return round(rng.uniform(-150, 150), 6), round(rng.uniform(-55, 65), 6)


def east(point: tuple[float, float], metres: float) -> tuple[float, float]:
    lon, lat, _ = GEOD.fwd(*point, 90, metres)
    return lon, lat


@dataclass
class Scene:
    """A merchant's venues 0, 1 and 2, each `spacing_m` east of the one before (50 m circles), 0 and 1 in
    one campaign and 2 not; users by label, unique to the scene."""

    db: psycopg.Connection
    tz: str
    venues: list[str]
    points: list[tuple[float, float]]
    campaign: str
    tag: str

    @classmethod
    def make(
        cls, db: psycopg.Connection, tz: str = OSLO, starts_at: datetime | None = None, spacing_m: float = 300
    ) -> Scene:
        merchant = db.execute("INSERT INTO merchants (name) VALUES ('Crafted') RETURNING id").fetchone()["id"]
        first = spot(random.Random())
        points = [first, east(first, spacing_m), east(first, 2 * spacing_m)]
        venues = [
            db.execute(
                "INSERT INTO venues (merchant_id, name, timezone, geofence, fence, circle_center, circle_radius_m,"
                " area_m2) SELECT %(m)s, 'Venue', %(tz)s, '{\"type\": \"Circle\"}',"
                " ST_Multi(ST_Buffer(c, 50)::geometry)::geography, c, 50, 7854"
                " FROM (SELECT ST_SetSRID(ST_MakePoint(%(lon)s, %(lat)s), 4326)::geography AS c) p RETURNING id",
                {"m": merchant, "tz": tz, "lon": lon, "lat": lat},
            ).fetchone()["id"]
            for lon, lat in points
        ]
        starts_at = starts_at or datetime.now(UTC) - timedelta(days=60)
        campaign = db.execute(
            "INSERT INTO campaigns (merchant_id, name, status, starts_at, ends_at, holdout_percent, attribution_days)"
            " VALUES (%s, 'Crafted', 'active', %s, %s, 0, 14) RETURNING id",
            (merchant, starts_at, starts_at + timedelta(days=365)),
        ).fetchone()["id"]
        db.execute("INSERT INTO campaign_venues VALUES (%s, %s), (%s, %s)", (campaign, venues[0], campaign, venues[1]))
        return cls(db, tz, venues, points, campaign, uuid.uuid4().hex[:8])

    def user(self, label: str) -> str:
        return f"{label}-{self.tag}"

    def offer(self, rule: dict) -> str:
        return self.db.execute(
            "INSERT INTO offers (campaign_id, title, description, terms, rule, per_user_limit, total_limit,"
            " redeem_within_minutes) VALUES (%s, 't', 'd', 't', %s, 1, 1, 60) RETURNING id",
            (self.campaign, Jsonb(rule)),
        ).fetchone()["id"]

    def visit(self, label: str, at: datetime, venue: int = 0, accepted: bool = True) -> None:
        lon, lat = self.points[venue]
        self.db.execute(
            "INSERT INTO checkins (user_id, venue_id, status, reason, lon, lat, accuracy_m, observed_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, 10, %s)",
            (
                self.user(label),
                self.venues[venue],
                *(("accepted", None) if accepted else ("rejected", "too_fast")),
                lon,
                lat,
                at,
            ),
        )

    def unlocked_before(self, offer: str, label: str) -> None:
        self.db.execute(
            "INSERT INTO user_offer_unlocks (offer_id, user_id, unlocks, last_unlock_at) VALUES (%s, %s, 1, now())",
            (offer, self.user(label)),
        )

    def rule_met(self, offer: str, label: str, at: datetime, venue: int = 0) -> bool:
        return self.db.execute(
            "SELECT rule_met(o, c, %s, %s, %s, %s) AS met FROM offers o JOIN campaigns c ON c.id = o.campaign_id"
            " WHERE o.id = %s",
            (self.user(label), self.venues[venue], self.tz, at, offer),
        ).fetchone()["met"]


# --------------------------------------------------------------------------- speed and cool-down checks

NOW = datetime(2026, 6, 10, 12, tzinfo=UTC)  # a Wednesday


def minutes(n: float) -> datetime:
    return NOW + timedelta(minutes=n)


# (earlier accepted or rejected fixes: (venue, minutes from NOW, accepted)), what the check at venue 0 at NOW says
TOO_FAST = [
    ([], None, "no history"),
    ([(1, -5, True)], None, "300 m in five minutes"),
    ([(1, -0.05, True)], {"seconds": 3.0, "distance_m": 280.0}, "300 m in three seconds, less the accuracies"),
    ([(1, -0.05, False)], None, "a rejected fix is no alibi"),
    ([(2, 0.1, True)], {"seconds": 6.0, "distance_m": 580.0}, "a later fix, sent late from an offline queue"),
    ([(1, -0.05, True), (2, 0.1, True)], {"seconds": 3.0, "distance_m": 280.0}, "the fix before is judged first"),
    ([(1, 0, True)], {"seconds": 0.0, "distance_m": 280.0, "speed_kmh": None}, "300 m in no time at all"),
]


@pytest.mark.parametrize(("history", "rejection"), [c[:2] for c in TOO_FAST], ids=[c[2] for c in TOO_FAST])
def test_too_fast(db, history, rejection):
    scene = Scene.make(db)
    for venue, at, accepted in history:
        scene.visit("ada", minutes(at), venue, accepted)
    lon, lat = scene.points[0]
    rows = db.execute(
        "SELECT d FROM too_fast(%s, ST_SetSRID(ST_MakePoint(%s, %s), 4326)::geography, 10, %s, 250) d",
        (scene.user("ada"), lon, lat, NOW),
    ).fetchall()
    if rejection is None:
        assert rows == []
        return
    (detail,) = [r["d"] for r in rows]
    assert detail["max_speed_kmh"] == 250
    assert detail["seconds"] == pytest.approx(rejection["seconds"])
    assert float(detail["distance_m"]) == pytest.approx(rejection["distance_m"], abs=1)
    if "speed_kmh" in rejection:
        assert detail["speed_kmh"] is None
    else:
        assert float(detail["speed_kmh"]) == pytest.approx(
            rejection["distance_m"] / rejection["seconds"] * 3.6, rel=0.01
        )


TOO_FREQUENT = [
    ([], None, "no earlier visit"),
    ([(0, -10, True)], 600, "ten minutes ago, here"),
    ([(1, -10, True)], None, "ten minutes ago, at another venue"),
    ([(0, -10, False)], None, "a rejected visit"),
    ([(0, -15, True)], None, "the cool-down itself has passed"),
    ([(0, 5, True)], 300, "a later visit sent late from an offline queue"),
    ([(0, -12, True), (0, -3, True)], 180, "the nearest earlier visit"),
]


@pytest.mark.parametrize(("history", "since"), [c[:2] for c in TOO_FREQUENT], ids=[c[2] for c in TOO_FREQUENT])
def test_too_frequent(db, history, since):
    scene = Scene.make(db)
    for venue, at, accepted in history:
        scene.visit("ada", minutes(at), venue, accepted)
    rows = db.execute(
        "SELECT d FROM too_frequent(%s, %s, %s, interval '15 minutes') d", (scene.user("ada"), scene.venues[0], NOW)
    ).fetchall()
    if since is None:
        assert rows == []
    else:
        assert [(float(r["d"]["seconds_since_last"]), float(r["d"]["cooldown_s"])) for r in rows] == [(since, 900)]


# --------------------------------------------------------------------------- match_venue and its limits

DEFAULT_LIMITS = (1000, 2000)
# (metres east of venue 0's fence, accuracy, the venue named, limits) -> (venue, reason, distance_m); venues
# 1 and 2 lie 300 and 600 m west of venue 0, all circles of 50 m.
MATCHES = [
    (-50, 10, None, DEFAULT_LIMITS, (0, None, 0), "inside the fence"),
    (20, 30, None, DEFAULT_LIMITS, (0, None, 20), "the accuracy circle meets the fence"),
    (20, 10, None, DEFAULT_LIMITS, (0, "outside_geofence", 20), "it does not: the nearest venue"),
    (1100, 1500, None, DEFAULT_LIMITS, (0, "outside_geofence", 1100), "accuracy beyond the cap is capped"),
    (1100, 1500, None, (1200, 2000), (0, None, 1100), "a higher cap"),
    (-900, 10, None, DEFAULT_LIMITS, (2, "outside_geofence", 200), "the nearest of several"),
    (-2900, 10, None, DEFAULT_LIMITS, (None, "outside_geofence", None), "no venue within the search radius"),
    (-2900, 10, None, (1000, 3000), (2, "outside_geofence", 2200), "a wider search radius"),
    (-50, 10, 1, DEFAULT_LIMITS, (1, "venue_mismatch", 250), "another venue was named"),
    (-50, 10, "unknown", DEFAULT_LIMITS, (None, "venue_mismatch", None), "an unknown venue was named"),
    (-350, 10, 1, DEFAULT_LIMITS, (1, None, 0), "the named venue matched"),
]


@pytest.mark.parametrize(
    ("east_m", "accuracy_m", "named", "limits", "expected"), [c[:5] for c in MATCHES], ids=[c[5] for c in MATCHES]
)
def test_match_venue(db, east_m, accuracy_m, named, limits, expected):
    scene = Scene.make(db, spacing_m=-300)  # venue 1 300 m west of venue 0, venue 2 600 m west
    lon, lat = east(scene.points[0], 50 + east_m)
    venue_id = str(uuid.uuid4()) if named == "unknown" else None if named is None else str(scene.venues[named])
    row = db.execute(
        "SELECT * FROM match_venue(ST_SetSRID(ST_MakePoint(%s, %s), 4326)::geography, %s, %s,"
        " ROW(%s, %s)::venue_match_limits)",
        (lon, lat, accuracy_m, venue_id, *limits),
    ).fetchone()
    venue, reason, distance_m = expected
    assert row["id"] == (scene.venues[venue] if venue is not None else None)
    assert row["reason"] == reason
    assert row["distance_m"] == (pytest.approx(distance_m, abs=1.5) if distance_m is not None else None)
    if reason is not None:
        assert row["detail"]["accuracy_m"] == accuracy_m
        assert row["detail"]["venue_id" if named else "nearest_venue_id"] == (
            venue_id if named else (str(row["id"]) if row["id"] else None)
        )
    else:
        assert row["detail"] is None


def test_checkin_called_without_limits_uses_the_settings_defaults(db):
    """checkin()'s default for p_limits (calls written in SQL) is core/settings.py's defaults."""
    arguments = db.execute("SELECT pg_get_function_arguments('checkin'::regproc) AS a").fetchone()["a"]
    default = re.search(r"p_limits venue_match_limits DEFAULT (.+)$", arguments).group(1)
    limits = db.execute(f"SELECT (({default})::venue_match_limits).*").fetchone()
    settings = Settings()
    assert (limits["accuracy_cap_m"], limits["nearest_radius_m"]) == (
        settings.match_accuracy_cap_m,
        settings.nearest_venue_radius_m,
    )


def test_the_service_passes_its_venue_search_limits(world, monkeypatch, settings):
    venue = world.venue(world.merchant(), radius_m=50)
    point = near(venue["center"], east_m=70)  # 20 m outside the fence

    def checkin() -> dict:
        r = world.checkin(world.user(), *point, accuracy_m=30)
        assert r.status_code == 201, r.text
        return r.json()

    assert checkin()["status"] == "accepted"
    monkeypatch.setattr(settings, "match_accuracy_cap_m", 15)
    capped = checkin()
    assert (capped["reason"], capped["detail"]["nearest_venue_id"]) == ("outside_geofence", venue["id"])
    monkeypatch.setattr(settings, "nearest_venue_radius_m", 10)
    assert checkin()["detail"]["nearest_venue_id"] is None


@pytest.mark.parametrize("field", ["match_accuracy_cap_m", "nearest_venue_radius_m"])
@pytest.mark.parametrize("value", [0, -1])
def test_the_venue_search_limits_must_be_positive(field, value):
    with pytest.raises(ValidationError, match=field):
        Settings(**{field: value})


# --------------------------------------------------------------------------- rule_met


def ago(days: float = 0, hours: float = 0, minutes: float = 0) -> datetime:
    return NOW - timedelta(days=days, hours=hours, minutes=minutes)


NY = "America/New_York"
# (rule, visits: (user, observed_at, venue, accepted), the last one being the check-in judged, expected)
# Venues 0 and 1 are the campaign's, venue 2 is not; the campaign started 9 days before NOW.
RULES = [
    ({"type": "every_checkin"}, [("ada", NOW, 0, True)], True, "every check-in"),
    ({"type": "first_checkin"}, [("ada", NOW, 0, True)], True, "first: the first visit"),
    ({"type": "first_checkin"}, [("ada", ago(hours=2), 0, True), ("ada", NOW, 0, True)], False, "first: a second"),
    ({"type": "first_checkin"}, [("ada", ago(hours=2), 1, True), ("ada", NOW, 0, True)], False, "first: other venue"),
    ({"type": "first_checkin"}, [("ada", ago(hours=2), 2, True), ("ada", NOW, 0, True)], True, "first: not campaign's"),
    ({"type": "first_checkin"}, [("ada", ago(hours=2), 0, False), ("ada", NOW, 0, True)], True, "first: rejected"),
    ({"type": "first_checkin"}, [("bo", ago(hours=2), 0, True), ("ada", NOW, 0, True)], True, "first: someone else"),
    ({"type": "first_checkin"}, [("ada", ago(days=20), 0, True), ("ada", NOW, 0, True)], False, "first: ever"),
    *(
        (
            {"type": "nth_checkin", "n": 3},
            [("ada", ago(hours=h), h % 2, True) for h in range(visits - 1, -1, -1)],
            visits % 3 == 0,
            f"nth: visit {visits}",
        )
        for visits in (1, 2, 3, 4, 6)
    ),
    (
        {"type": "nth_checkin", "n": 3},
        [("ada", ago(days=10), 0, True), ("ada", ago(hours=1), 0, True), ("ada", NOW, 0, True)],
        False,
        "nth: a visit before the campaign started does not count",
    ),
    (
        {"type": "loyalty", "visits": 3, "within_days": 7},
        [("ada", ago(days=5), 0, True), ("ada", ago(days=2), 1, True), ("ada", NOW, 0, True)],
        True,
        "loyalty: the visit reaching the count",
    ),
    (
        {"type": "loyalty", "visits": 3, "within_days": 7},
        [
            ("ada", ago(days=6), 0, True),
            ("ada", ago(days=5), 0, True),
            ("ada", ago(days=2), 1, True),
            ("ada", NOW, 0, True),
        ],
        False,
        "loyalty: a visit past the count",
    ),
    (
        {"type": "loyalty", "visits": 3, "within_days": 7},
        [("ada", ago(days=8), 0, True), ("ada", ago(days=2), 1, True), ("ada", NOW, 0, True)],
        False,
        "loyalty: a visit before the window",
    ),
    (
        {"type": "loyalty", "visits": 3, "within_days": 7},
        [
            ("ada", ago(days=-1), 0, True),
            ("ada", ago(days=2), 0, True),
            ("ada", ago(days=1), 0, True),
            ("ada", NOW, 0, True),
        ],
        True,
        "loyalty: a visit observed later is not counted",
    ),
    ({"type": "flash", "first_n": 5}, [("ada", NOW, 0, True)], True, "flash: a user's first"),
    (
        {"type": "group", "min_people": 3, "within_minutes": 30},
        [("bo", ago(minutes=20), 0, True), ("cy", ago(minutes=10), 0, True), ("ada", NOW, 0, True)],
        True,
        "group: three",
    ),
    (
        {"type": "group", "min_people": 3, "within_minutes": 30},
        [("bo", ago(minutes=20), 0, True), ("bo", ago(minutes=10), 0, True), ("ada", NOW, 0, True)],
        False,
        "group: two people, three visits",
    ),
    (
        {"type": "group", "min_people": 3, "within_minutes": 30},
        [("bo", ago(minutes=31), 0, True), ("cy", ago(minutes=10), 0, True), ("ada", NOW, 0, True)],
        False,
        "group: one too early",
    ),
    (
        {"type": "group", "min_people": 3, "within_minutes": 30},
        [("bo", ago(minutes=-20), 0, True), ("cy", ago(minutes=10), 0, True), ("ada", NOW, 0, True)],
        True,
        "group: a phone whose clock is ahead",
    ),
    (
        {"type": "group", "min_people": 3, "within_minutes": 30},
        [("bo", ago(minutes=20), 1, True), ("cy", ago(minutes=10), 0, True), ("ada", NOW, 0, True)],
        False,
        "group: one at another venue",
    ),
    (
        {"type": "group", "min_people": 3, "within_minutes": 30},
        [("bo", ago(minutes=20), 0, False), ("cy", ago(minutes=10), 0, True), ("ada", NOW, 0, True)],
        False,
        "group: one rejected",
    ),
    ({"type": "top_visitor", "within_days": 30}, [("ada", NOW, 0, True)], True, "top: alone"),
    (
        {"type": "top_visitor", "within_days": 30},
        [("bo", ago(days=3), 0, True), ("ada", NOW, 0, True)],
        False,
        "top: a tie crowns nobody",
    ),
    (
        {"type": "top_visitor", "within_days": 30},
        [("bo", ago(days=3), 0, True), ("ada", ago(days=2), 0, True), ("ada", NOW, 0, True)],
        True,
        "top: more days",
    ),
    (
        {"type": "top_visitor", "within_days": 30},
        [("bo", ago(days=3), 0, True), ("ada", ago(hours=3), 0, True), ("ada", NOW, 0, True)],
        False,
        "top: one day twice is one day",
    ),
    (
        {"type": "top_visitor", "within_days": 30},
        [("bo", ago(days=40), 0, True), ("bo", ago(days=39), 0, True), ("ada", NOW, 0, True)],
        True,
        "top: days before the window",
    ),
    # New York local days: 03:30 and 04:30 UTC on 06-09 are 23:30 on 06-08 and 00:30 on 06-09 there.
    (
        {"type": "top_visitor", "within_days": 30, "tz": NY},
        [
            ("bo", ago(days=5), 0, True),
            ("ada", datetime(2026, 6, 9, 3, 30, tzinfo=UTC), 0, True),
            ("ada", datetime(2026, 6, 9, 4, 30, tzinfo=UTC), 0, True),
        ],
        True,
        "top: two local days in one UTC day",
    ),
    (
        {"type": "top_visitor", "within_days": 30, "tz": NY},
        [
            ("bo", ago(days=5), 0, True),
            ("ada", datetime(2026, 6, 8, 23, 30, tzinfo=UTC), 0, True),
            ("ada", datetime(2026, 6, 9, 1, 0, tzinfo=UTC), 0, True),
        ],
        False,
        "top: one local day over two UTC days",
    ),
]


@pytest.mark.parametrize(("rule", "visits", "met"), [c[:3] for c in RULES], ids=[c[3] for c in RULES])
def test_rule_met(db, rule, visits, met):
    rule = dict(rule)
    scene = Scene.make(db, tz=rule.pop("tz", OSLO), starts_at=NOW - timedelta(days=9))
    offer = scene.offer(rule)
    for visit in visits:
        scene.visit(*visit)
    user, at, venue, _ = visits[-1]
    assert scene.rule_met(offer, user, at, venue) is met


def test_rule_met_flash_is_once_per_user(db):
    scene = Scene.make(db)
    offer = scene.offer({"type": "flash", "first_n": 5})
    scene.visit("ada", NOW)
    scene.unlocked_before(offer, "ada")
    assert scene.rule_met(offer, "ada", NOW) is False
    scene.visit("bo", NOW)
    assert scene.rule_met(offer, "bo", NOW) is True
