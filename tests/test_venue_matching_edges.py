"""match_venue() on the 2-D index (revision 0010) where lon/lat boxes are hard: across the antimeridian,
near the poles (where great-circle edges bow past their vertices' latitude), at the edge of the
accuracy cap; that its prefilter never drops a venue the exact geography test keeps; and that it
chooses what the match before it chose (revision 0009's, 0002's pinned copy) on thousands of random
fixes around crowded venues, both installed side by side in the test database."""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.types.json import Jsonb
from pyproj import Geod

from geo.geofence import parse_geofence, wkt_for_storage

GEOD = Geod(ellps="WGS84")
MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
PREVIOUS_MATCH = MIGRATIONS / "sql" / "0002" / "functions" / "match_venue.sql"
PREVIOUS_SCHEMA = "test_match_before_0010"
DEFAULT_LIMITS = (1000, 2000)

INSERT_VENUE = """
    INSERT INTO venues (merchant_id, name, timezone, geofence, fence, circle_center, circle_radius_m, area_m2)
    VALUES (%(merchant)s, 'Edge', 'UTC', %(geojson)s, %(fence)s, %(center)s, %(radius_m)s, %(area_m2)s)
    RETURNING id
"""
MATCH = """
    SELECT * FROM {schema}.match_venue(ST_SetSRID(ST_MakePoint(%s, %s), 4326)::geography, %s, %s,
                                       ROW(%s, %s)::venue_match_limits)
"""
# Venues the exact test keeps (as match_venue() before 0010 found them: the geography index, then
# venue_distance_m) that the 2-D boxes would miss: must be none.
MISSED = """
    SELECT count(*) AS n FROM venues v, (SELECT ST_SetSRID(ST_MakePoint(%(lon)s, %(lat)s), 4326)::geography AS pt) p
    WHERE v.deleted_at IS NULL AND ST_DWithin(v.fence, p.pt, %(r)s) AND venue_distance_m(v, p.pt) <= %(r)s
      AND NOT v.fence_box && lonlat_box(p.pt, %(r)s)
"""


@pytest.fixture
def merchant(db: psycopg.Connection) -> str:
    return str(db.execute("INSERT INTO merchants (name) VALUES ('Edges') RETURNING id").fetchone()["id"])


@pytest.fixture
def previous_match(db: psycopg.Connection) -> Iterator[str]:
    """The match of revision 0009 in a schema of its own (its helpers and tables are public's)."""
    db.execute(f"DROP SCHEMA IF EXISTS {PREVIOUS_SCHEMA} CASCADE")
    db.execute(f"CREATE SCHEMA {PREVIOUS_SCHEMA}")
    with db.transaction():
        db.execute(f"SET LOCAL search_path = {PREVIOUS_SCHEMA}, public")
        db.execute(PREVIOUS_MATCH.read_bytes())
    yield PREVIOUS_SCHEMA
    db.execute(f"DROP SCHEMA {PREVIOUS_SCHEMA} CASCADE")


def add_venue(db: psycopg.Connection, merchant: str, geojson: dict) -> str:
    """A venue stored as geo/venues.py stores it: the fence geo/geofence.py makes of the GeoJSON."""
    fence = parse_geofence(geojson)
    venue = db.execute(
        INSERT_VENUE,
        {
            "merchant": merchant,
            "geojson": Jsonb(fence.geojson),
            "fence": wkt_for_storage(fence),
            "center": f"SRID=4326;POINT({fence.center[0]} {fence.center[1]})" if fence.center else None,
            "radius_m": fence.radius_m,
            "area_m2": fence.area_m2,
        },
    ).fetchone()["id"]
    return str(venue)


def circle(lon: float, lat: float, radius_m: float) -> dict:
    return {"type": "Circle", "center": [lon, lat], "radius_m": radius_m}


def polygon(*ring: tuple[float, float]) -> dict:
    return {"type": "Polygon", "coordinates": [[list(p) for p in (*ring, ring[0])]]}


def match(
    db: psycopg.Connection,
    lon: float,
    lat: float,
    accuracy_m: float,
    named: str | None = None,
    limits: tuple[float, float] = DEFAULT_LIMITS,
    schema: str = "public",
) -> dict:
    row = db.execute(MATCH.format(schema=schema), (lon, lat, accuracy_m, named, *limits)).fetchone()
    assert db.execute(MISSED, {"lon": lon, "lat": lat, "r": min(accuracy_m, limits[0])}).fetchone()["n"] == 0
    return {k: (str(v) if k == "id" and v is not None else v) for k, v in row.items()}


def moved(lon: float, lat: float, azimuth: float, metres: float) -> tuple[float, float]:
    to_lon, to_lat, _ = GEOD.fwd(lon, lat, azimuth, metres)
    return to_lon, to_lat


# --------------------------------------------------------------------------- the antimeridian


def test_a_circle_straddling_the_antimeridian_matches_a_fix_on_its_other_side(db, merchant):
    venue = add_venue(db, merchant, circle(179.9995, -16.5, 100))
    # 0.0007° of longitude at 16.5° S is about 75 m: inside the circle, stored as -179.9998.
    row = match(db, -179.9998, -16.5, 10)
    assert (row["id"], row["reason"], row["distance_m"]) == (venue, None, 0)
    # 160 m from the centre, so 60 m outside the circle: the accuracy circle reaches it or not.
    lon, lat = moved(179.9995, -16.5, 90, 160)
    assert lon < -179.99
    row = match(db, lon, lat, 70)
    assert (row["id"], row["reason"]) == (venue, None)
    assert row["distance_m"] == pytest.approx(60, abs=0.5)
    row = match(db, lon, lat, 40)
    assert (row["id"], row["reason"]) == (venue, "outside_geofence")
    assert row["detail"]["nearest_venue_id"] == venue and row["distance_m"] == pytest.approx(60, abs=0.5)


def test_a_polygon_split_at_the_antimeridian_matches_on_both_sides(db, merchant):
    lat = 52.0
    venue = add_venue(
        db,
        merchant,
        {
            "type": "MultiPolygon",
            "coordinates": [
                [[[179.999, lat], [180, lat], [180, lat + 0.001], [179.999, lat + 0.001], [179.999, lat]]],
                [[[-180, lat], [-179.999, lat], [-179.999, lat + 0.001], [-180, lat + 0.001], [-180, lat]]],
            ],
        },
    )
    for lon in (179.9995, -179.9995, 180, -180):
        row = match(db, lon, lat + 0.0005, 5)
        assert (row["id"], row["reason"], row["distance_m"]) == (venue, None, 0), lon
    # 30 m east of the western part's edge at -179.999 (about 69 m per 0.001° there)
    lon, fix_lat = moved(-179.999, lat + 0.0005, 90, 30)
    assert match(db, lon, fix_lat, 40)["id"] == venue
    assert match(db, lon, fix_lat, 20)["reason"] == "outside_geofence"


def test_a_polygon_touching_the_antimeridian_from_the_east_matches_a_fix_given_at_minus_180(db, merchant):
    venue = add_venue(db, merchant, polygon((179.999, 0.0), (180.0, 0.0), (180.0, 0.001), (179.999, 0.001)))
    # 11 m west of its western edge... and 11 m beyond ±180, given on the far side of the box.
    row = match(db, -179.9999, 0.0005, 20)
    assert (row["id"], row["reason"]) == (venue, None)
    assert row["distance_m"] == pytest.approx(11.1, abs=0.3)


def test_the_nearest_venue_fallback_looks_across_the_antimeridian(db, merchant):
    venue = add_venue(db, merchant, circle(179.998, 10.0, 50))
    lon, lat = moved(179.998, 10.0, 90, 274)  # 224 m outside, beyond ±180
    row = match(db, lon, lat, 10)
    assert (row["id"], row["reason"]) == (venue, "outside_geofence")
    assert row["detail"]["nearest_venue_id"] == venue and row["distance_m"] == pytest.approx(224, abs=0.5)


# --------------------------------------------------------------------------- the poles


def test_a_great_circle_edge_bowing_past_its_vertices_near_the_pole_is_in_the_box(db, merchant):
    """The edge from (-60, 89.99) to (60, 89.99) runs over lat 89.995 at lon 0: a fix there is inside
    the fence, north of every vertex, and a box of the vertices alone would miss it."""
    venue = add_venue(db, merchant, polygon((-60, 89.98), (60, 89.98), (60, 89.99), (-60, 89.99)))
    row = match(db, 0.0, 89.993, 5)
    assert (row["id"], row["reason"], row["distance_m"]) == (venue, None, 0)
    box_north = db.execute("SELECT ST_YMax(fence_box) AS y FROM venues WHERE id = %s", (venue,)).fetchone()["y"]
    assert box_north > 89.995


def test_a_fix_on_the_other_side_of_the_pole_matches_within_its_radius(db, merchant):
    venue = add_venue(db, merchant, polygon((0, 89.998), (10, 89.998), (10, 89.9995), (0, 89.9995)))
    # At lon 180 the pole lies between the fix (about 33 m from it) and the fence (about 56 m beyond).
    row = match(db, 180.0, 89.9997, 100)
    assert (row["id"], row["reason"]) == (venue, None)
    assert row["distance_m"] == pytest.approx(89, abs=3)
    row = match(db, -175.0, 89.9997, 60)
    assert (row["id"], row["reason"]) == (venue, "outside_geofence")


def test_the_south_pole_too(db, merchant):
    venue = add_venue(db, merchant, polygon((100, -89.9995), (110, -89.9995), (110, -89.998), (100, -89.998)))
    row = match(db, -80.0, -89.9997, 100)
    assert (row["id"], row["reason"]) == (venue, None)


def test_a_circle_at_the_highest_latitude_allowed_spans_many_degrees_of_longitude(db, merchant):
    venue = add_venue(db, merchant, circle(0.0, 89.9, 1000))
    lon, lat = moved(0.0, 89.9, 90, 990)  # about 5 degrees of longitude east, still inside
    assert lon > 4.5
    assert match(db, lon, lat, 5)["distance_m"] == 0
    lon, lat = moved(0.0, 89.9, 90, 1040)
    row = match(db, lon, lat, 50)
    assert (row["id"], row["reason"]) == (venue, None)
    assert row["distance_m"] == pytest.approx(40, abs=0.5)


# --------------------------------------------------------------------------- the accuracy cap


@pytest.mark.parametrize("lat", [0.0, 45.0, 70.0, -84.0])
@pytest.mark.parametrize("azimuth", [0, 90, 180, 270, 45])
def test_a_fix_at_the_edge_of_the_capped_accuracy(db, merchant, lat, azimuth):
    """Accuracy far beyond a 100 m cap: the venue 99.5 m away matches, at 100.5 m it is only the nearest."""
    lon = random.uniform(-170, 170)
    venue = add_venue(db, merchant, circle(lon, lat, 20))
    limits = (100, 2000)
    inside = moved(lon, lat, azimuth, 119.5)
    row = match(db, *inside, 5000, limits=limits)
    assert (row["id"], row["reason"]) == (venue, None)
    assert row["distance_m"] == pytest.approx(99.5, abs=0.01)
    outside = moved(lon, lat, azimuth, 120.5)
    row = match(db, *outside, 5000, limits=limits)
    assert (row["id"], row["reason"]) == (venue, "outside_geofence")
    assert row["distance_m"] == pytest.approx(100.5, abs=0.01)


# --------------------------------------------------------------------------- the same choices as before


def crowd(
    db: psycopg.Connection, merchant: str, rng: random.Random, lon: float, lat: float, n: int, spread_m: float
) -> list[tuple[str, float, float]]:
    """n venues scattered around (lon, lat): circles and star-shaped polygons of many sizes, often overlapping."""
    venues = []
    for _ in range(n):
        c_lon, c_lat = moved(lon, lat, rng.uniform(0, 360), abs(rng.gauss(0, spread_m)))
        size = math.exp(rng.gauss(math.log(35), 0.5))
        near_180 = abs(abs(c_lon) - 180) < 0.02
        if rng.random() < 0.65 or near_180 or abs(c_lat) > 89.89:  # polygons never across ±180; circles to 89.9°
            geojson = circle(c_lon, max(-89.9, min(89.9, c_lat)), min(max(size, 10), 1000))
        else:
            k = rng.randint(4, 8)
            ring = [
                moved(c_lon, c_lat, 360 * (i + rng.uniform(-0.3, 0.3)) / k, size * rng.uniform(0.6, 1.0))
                for i in range(k)
            ]
            geojson = polygon(*ring)
        venues.append((add_venue(db, merchant, geojson), c_lon, c_lat))
    return venues


def test_the_same_venue_as_before_on_random_fixes_around_crowded_venues(db, merchant, previous_match):
    rng = random.Random(20261203)
    venues = (
        crowd(db, merchant, rng, rng.uniform(-150, 150), rng.uniform(-55, 65), 700, 400)  # a city centre
        + crowd(db, merchant, rng, 180.0, -16.8, 300, 300)  # across the antimeridian
        + crowd(db, merchant, rng, 45.0, 89.6, 200, 1500)  # near the north pole
    )
    named_pool = [v[0] for v in venues] + [str(uuid.uuid4())]
    compared = 0
    outcomes: dict[str | None, int] = {}
    for _ in range(3000):
        _, lon, lat = rng.choice(venues)
        lon, lat = moved(lon, lat, rng.uniform(0, 360), abs(rng.gauss(0, 120)))
        accuracy = math.exp(rng.uniform(math.log(3), math.log(1500)))
        named = rng.choice(named_pool) if rng.random() < 0.1 else None
        limits = DEFAULT_LIMITS if rng.random() < 0.8 else (rng.uniform(20, 300), rng.uniform(300, 2500))
        now = match(db, lon, lat, accuracy, named, limits)
        before = match(db, lon, lat, accuracy, named, limits, schema=previous_match)
        assert now == before, (lon, lat, accuracy, named, limits)
        outcomes[now["reason"]] = outcomes.get(now["reason"], 0) + 1
        compared += 1
    assert compared == 3000
    # the fixes exercised every branch
    assert outcomes.get(None, 0) > 500 and outcomes.get("outside_geofence", 0) > 100
    assert outcomes.get("venue_mismatch", 0) > 50
