"""The cheaper paths of the till's redemption and the app's nearby search answer as before.

Nearby decides a circle by its centre where that settles it (geo/venues.py: NEARBY_SQL) and by
the stored 64-gon only near its edge; a venue is listed exactly when ST_DWithin(fence) says so.
The guess limiter reads both waits in one script instead of a pipeline of three commands.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis as redis_lib
import redis.asyncio as aioredis

from core.errors import TooManyRequests
from core.redis import RedisState
from offers import redemption

# The nearby search as it was: every candidate tested on its stored fence.
REFERENCE_SQL = """
    SELECT v.id::text AS id, round(venue_distance_m(v, p.pt)::numeric, 1)::float AS distance_m
    FROM venues v, (SELECT ST_SetSRID(ST_MakePoint(%(lon)s, %(lat)s), 4326)::geography AS pt) p
    WHERE v.deleted_at IS NULL AND ST_DWithin(v.fence, p.pt, %(radius_m)s)
    ORDER BY distance_m, v.id
    LIMIT 100
"""
PROJECT_SQL = """
    SELECT ST_Y(g::geometry) AS lat, ST_X(g::geometry) AS lon
    FROM (SELECT ST_Project(ST_SetSRID(ST_MakePoint(%(lon)s, %(lat)s), 4326)::geography, %(m)s, radians(%(az)s)) g) s
"""


# Beyond the circle's edge by this share of its radius: listed or not. The stored 64-gon reaches
# 0.1% to 0.23% of the radius past the circle, so +0.05% is inside the fence (the polygon test
# decides), +0.4% outside it (the polygon test decides), +10% far outside (the centre decides).
EDGE_CASES = [(-0.5, True), (-0.02, True), (0.0005, True), (0.004, False), (0.1, False)]


@pytest.mark.parametrize("radius_m", [30.0, 400.0])
@pytest.mark.parametrize("search_m", [50.0, 500.0])
def test_nearby_lists_a_circle_exactly_when_its_stored_fence_is_within_the_radius(world, db, radius_m, search_m):
    m = world.merchant()
    lon, lat = world.spot()
    venue = world.venue(m, center=(lon, lat), radius_m=radius_m)
    for i, (beyond, listed) in enumerate(EDGE_CASES):
        at = db.execute(
            PROJECT_SQL, {"lon": lon, "lat": lat, "m": radius_m * (1 + beyond) + search_m, "az": 37 + 71 * i}
        ).fetchone()
        r = world.http.get(
            "/v1/venues/nearby",
            params={"lat": at["lat"], "lon": at["lon"], "radius_m": search_m, "limit": 100},
            headers=world.user(),
        )
        assert r.status_code == 200, r.text
        items = r.json()["items"]
        assert (venue["id"] in [v["id"] for v in items]) is listed, (beyond, items)
        reference = db.execute(REFERENCE_SQL, {**at, "radius_m": search_m}).fetchall()
        assert [(v["id"], v["distance_m"]) for v in items] == [(v["id"], v["distance_m"]) for v in reference]


def test_nearby_tests_polygons_on_their_fence_as_before(world, db):
    m = world.merchant()
    lon, lat = world.spot()
    d = 0.002  # about 200 m
    square = [[lon, lat], [lon + d, lat], [lon + d, lat + d], [lon, lat + d], [lon, lat]]
    venue = world.venue(m, geofence={"type": "Polygon", "coordinates": [square]})
    # From the middle of its west edge, searching 100 m: 50 m inside, 90 m west of it, 110 m west of it.
    for metres, azimuth, listed in ((50.0, 90, True), (90.0, 270, True), (110.0, 270, False)):
        at = db.execute(PROJECT_SQL, {"lon": lon, "lat": lat + d / 2, "m": metres, "az": azimuth}).fetchone()
        r = world.http.get(
            "/v1/venues/nearby",
            params={"lat": at["lat"], "lon": at["lon"], "radius_m": 100, "limit": 100},
            headers=world.user(),
        )
        assert r.status_code == 200, r.text
        items = r.json()["items"]
        assert (venue["id"] in [v["id"] for v in items]) is listed, (metres, azimuth, items)
        reference = db.execute(REFERENCE_SQL, {**at, "radius_m": 100}).fetchall()
        assert [(v["id"], v["distance_m"]) for v in items] == [(v["id"], v["distance_m"]) for v in reference]


@pytest.mark.parametrize(
    ("person_ms", "merchant_misses", "merchant_ms", "wait_s"),
    [
        (None, None, None, None),  # nothing recorded: no wait
        (4_500, None, None, 5),  # the person's wait, rounded up
        (None, 7, 90_000, None),  # under the merchant's ceiling (8): its window does not hold anyone
        (None, 8, 90_000, 90),  # at the ceiling: the rest of the window
        (4_500, 9, 30_000, 30),  # both: the longer
        (45_000, 8, 30_000, 45),
    ],
)
def test_the_guess_limiter_reads_the_longer_wait_in_one_command(
    redis_url, settings, monkeypatch, person_ms, merchant_misses, merchant_ms, wait_s
):
    monkeypatch.setattr(settings, "redemption_merchant_failures_per_10min", 8)
    merchant, staff = uuid.uuid4(), f"staff-{uuid.uuid4().hex[:8]}"
    keys = redemption.guess_keys(merchant, staff)
    with redis_lib.Redis.from_url(redis_url) as sync:
        if person_ms is not None:
            sync.set(keys.wait, "1", px=person_ms)
        if merchant_misses is not None:
            sync.set(keys.merchant, merchant_misses, px=merchant_ms)

    async def refuse() -> None:
        client = aioredis.Redis.from_url(redis_url, decode_responses=True)
        try:
            state = RedisState(client)
            await redemption._refuse_if_guessing(state, settings, merchant, staff, keys)
            assert state.failures_in_a_row == 0  # Redis answered: the in-process fallback was not asked
        finally:
            await client.aclose()

    if wait_s is None:
        asyncio.run(refuse())
    else:
        with pytest.raises(TooManyRequests) as refused:
            asyncio.run(refuse())
        assert refused.value.headers["Retry-After"] == str(wait_s)
