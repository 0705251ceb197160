"""Venues over HTTP: create, list, change and delete with tenancy; geofences refused or accepted
at the edges; check-ins on and just off a fence; the nearby search."""

from __future__ import annotations

import json
import math
import random
import uuid

import pytest
from pyproj import Geod

from tests.factories import problem_apart_from_request
from tests.test_errors_and_limits import assert_problem, fields

GEOD = Geod(ellps="WGS84")
WGS84_A = 6378137.0
WGS84_E2 = 0.00669437999014


def offset(lon: float, lat: float, azimuth_deg: float, metres: float) -> tuple[float, float]:
    lon2, lat2, _ = GEOD.fwd(lon, lat, azimuth_deg, metres)
    return lon2, lat2


def rectangle(lon: float, lat: float, dlon: float, dlat: float) -> list[list[float]]:
    """A closed counter-clockwise ring from (lon, lat) to (lon + dlon, lat + dlat)."""
    return [[lon, lat], [lon + dlon, lat], [lon + dlon, lat + dlat], [lon, lat + dlat], [lon, lat]]


def rectangle_area_m2(lat: float, dlon: float, dlat: float) -> float:
    """A small lon/lat rectangle's area from the WGS84 radii of curvature (no geodesy library)."""
    phi = math.radians(lat + dlat / 2)
    w = 1 - WGS84_E2 * math.sin(phi) ** 2
    prime_vertical = WGS84_A / math.sqrt(w)
    meridional = WGS84_A * (1 - WGS84_E2) / w**1.5
    return prime_vertical * math.cos(phi) * math.radians(dlon) * meridional * math.radians(dlat)


def venue_body(geofence: dict, **extra) -> dict:
    return {"name": "Kiosk", "geofence": geofence, **extra}  # no timezone: the service takes the position's


def checkin(world, lon: float, lat: float, accuracy_m: float) -> dict:
    """A fresh user's check-in (no cool-down or velocity history): the fence alone decides."""
    r = world.checkin(world.user(), lon, lat, accuracy_m=accuracy_m)
    assert r.status_code == 201, r.text
    return r.json()


def assert_accepted_at(world, venue: dict, lon: float, lat: float, accuracy_m: float) -> None:
    body = checkin(world, lon, lat, accuracy_m)
    assert body["status"] == "accepted", (lon, lat, body)
    assert body["venue"]["id"] == venue["id"]


def assert_outside(world, lon: float, lat: float, accuracy_m: float) -> dict:
    body = checkin(world, lon, lat, accuracy_m)
    assert (body["status"], body["reason"]) == ("rejected", "outside_geofence"), (lon, lat, body)
    return body


# --- create and read -----------------------------------------------------------------------


def test_a_circle_venue_is_created_echoed_and_measured(world):
    m = world.merchant()
    lon, lat = world.spot_in("Europe/Oslo")
    circle = {"type": "Circle", "center": [lon, lat], "radius_m": 75}
    r = world.http.post(
        "/v1/venues", json=venue_body(circle, address="Storgata 1", timezone="Europe/Oslo"), headers=m.admin
    )
    assert r.status_code == 201, r.text
    venue = r.json()
    uuid.UUID(venue["id"])
    assert venue["merchant_id"] == m.id
    assert (venue["name"], venue["timezone"], venue["address"]) == ("Kiosk", "Europe/Oslo", "Storgata 1")
    assert venue["geofence"] == {"type": "Circle", "center": [lon, lat], "radius_m": 75.0}
    assert venue["area_m2"] == pytest.approx(math.pi * 75**2, rel=1e-9)
    assert world.http.get(f"/v1/venues/{venue['id']}", headers=m.admin).json() == venue


def test_a_polygon_venue_is_echoed_and_has_its_geodesic_area(world):
    m = world.merchant()
    lon, lat = world.spot()
    for ring, dlon, dlat in (
        (rectangle(lon, lat, 0.002, 0.001), 0.002, 0.001),
        (rectangle(lon, lat, 0.001, 0.003)[::-1], 0.001, 0.003),
    ):  # clockwise, too
        polygon = {"type": "Polygon", "coordinates": [ring]}
        r = world.http.post("/v1/venues", json=venue_body(polygon), headers=m.admin)
        assert r.status_code == 201, r.text
        assert r.json()["geofence"] == polygon
        assert r.json()["area_m2"] == pytest.approx(rectangle_area_m2(lat, dlon, dlat), rel=2e-3)


def test_a_polygon_with_a_hole_and_a_multipolygon_are_measured_without_the_hole(world):
    m = world.merchant()
    lon, lat = world.spot()
    outer = rectangle(lon, lat, 0.003, 0.003)
    hole = rectangle(lon + 0.001, lat + 0.001, 0.001, 0.001)[::-1]
    r = world.http.post(
        "/v1/venues", json=venue_body({"type": "Polygon", "coordinates": [outer, hole]}), headers=m.admin
    )
    assert r.status_code == 201, r.text
    expected = rectangle_area_m2(lat, 0.003, 0.003) - rectangle_area_m2(lat + 0.001, 0.001, 0.001)
    assert r.json()["area_m2"] == pytest.approx(expected, rel=2e-3)
    venue = r.json()
    assert_outside(world, lon + 0.0015, lat + 0.0015, 5)  # the middle of the hole is ~55 m from the fence
    assert_accepted_at(world, venue, lon + 0.0005, lat + 0.0005, 5)

    multi = {
        "type": "MultiPolygon",
        "coordinates": [[rectangle(lon + 0.01, lat, 0.001, 0.001)], [rectangle(lon + 0.02, lat, 0.001, 0.001)]],
    }
    r = world.http.post("/v1/venues", json=venue_body(multi), headers=m.admin)
    assert r.status_code == 201, r.text
    assert r.json()["geofence"] == multi
    assert r.json()["area_m2"] == pytest.approx(2 * rectangle_area_m2(lat, 0.001, 0.001), rel=2e-3)


def test_merchant_id_comes_from_the_token_never_the_body(world):
    m, other = world.merchant(), world.merchant()
    circle = {"type": "Circle", "center": list(world.spot()), "radius_m": 50}
    r = world.http.post("/v1/venues", json=venue_body(circle, merchant_id=other.id), headers=m.admin)
    problem = assert_problem(r, 422, "validation_error")
    assert fields(problem) == ["merchant_id"]
    assert problem["errors"][0]["code"] == "extra_forbidden"
    assert world.http.get("/v1/venues", headers=other.admin).json()["items"] == []
    assert world.http.get("/v1/venues", headers=m.admin).json()["items"] == []


@pytest.mark.parametrize("timezone", ["Mars/Olympus_Mons", "europe/oslo", "", "UTC+2", "../../etc/passwd"])
def test_an_unknown_timezone_is_422_on_timezone(world, timezone):
    m = world.merchant()
    circle = {"type": "Circle", "center": list(world.spot()), "radius_m": 50}
    r = world.http.post("/v1/venues", json=venue_body(circle, timezone=timezone), headers=m.admin)
    assert fields(assert_problem(r, 422, "validation_error")) == ["timezone"]
    venue = world.venue(m)
    r = world.http.patch(f"/v1/venues/{venue['id']}", json={"timezone": timezone}, headers=m.admin)
    assert fields(assert_problem(r, 422, "validation_error")) == ["timezone"]


def test_text_postgresql_cannot_store_is_422_not_500(world):
    m = world.merchant()
    circle = {"type": "Circle", "center": list(world.spot()), "radius_m": 50}
    for body, field in (
        (venue_body(circle, name="Caf\x00e"), "name"),
        (venue_body(circle, address="Gate 1\x00"), "address"),
    ):
        r = world.http.post("/v1/venues", json=body, headers=m.admin)
        assert fields(assert_problem(r, 422, "validation_error")) == [field]
    venue = world.venue(m)
    r = world.http.patch(f"/v1/venues/{venue['id']}", json={"name": "\x00"}, headers=m.admin)
    assert fields(assert_problem(r, 422, "validation_error")) == ["name"]
    r = world.http.post("/v1/merchants", json={"name": "Evil\x00Corp"}, headers=world.headers("platform_admin"))
    assert fields(assert_problem(r, 422, "validation_error")) == ["name"]
    # everything else in Unicode is fine
    r = world.http.patch(
        f"/v1/venues/{venue['id']}", json={"name": "Kafé Ærlig ☕", "address": "Gate 1\nOslo"}, headers=m.admin
    )
    assert r.status_code == 200, r.text
    assert (r.json()["name"], r.json()["address"]) == ("Kafé Ærlig ☕", "Gate 1\nOslo")


# --- list ----------------------------------------------------------------------------------


def test_the_list_walks_pages_with_a_cursor(world):
    m = world.merchant()
    created = {world.venue(m, name=f"Venue {i}")["id"] for i in range(5)}
    seen: list[str] = []
    cursor = None
    pages = []
    for _ in range(4):
        r = world.http.get("/v1/venues", params={"limit": 2, **({"cursor": cursor} if cursor else {})}, headers=m.staff)
        assert r.status_code == 200, r.text
        page = r.json()
        pages.append(len(page["items"]))
        seen += [v["id"] for v in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == [2, 2, 1]
    assert len(seen) == len(set(seen)) == 5
    assert set(seen) == created
    assert world.http.get("/v1/venues?limit=100", headers=m.marketer).json()["next_cursor"] is None


# --- change and delete -----------------------------------------------------------------------


def test_patch_changes_only_what_is_sent_and_moves_the_fence(world):
    m = world.merchant()
    venue = world.venue(m, radius_m=40, timezone="Europe/Oslo")
    old_lon, old_lat = venue["center"]
    new_lon, new_lat = world.spot_in("Asia/Tokyo")
    square = {"type": "Polygon", "coordinates": [rectangle(new_lon, new_lat, 0.001, 0.001)]}

    r = world.http.patch(f"/v1/venues/{venue['id']}", json={"name": "Renamed", "address": "Torget 2"}, headers=m.admin)
    assert r.status_code == 200, r.text
    assert (r.json()["name"], r.json()["address"], r.json()["timezone"]) == ("Renamed", "Torget 2", "Europe/Oslo")
    assert r.json()["geofence"] == venue["geofence"]

    r = world.http.patch(
        f"/v1/venues/{venue['id']}", json={"geofence": square, "timezone": "Asia/Tokyo"}, headers=m.admin
    )
    assert r.status_code == 200, r.text
    changed = r.json()
    assert (changed["geofence"], changed["timezone"], changed["name"]) == (square, "Asia/Tokyo", "Renamed")
    assert changed["area_m2"] == pytest.approx(rectangle_area_m2(new_lat, 0.001, 0.001), rel=2e-3)
    assert changed["updated_at"] >= venue["updated_at"]
    assert world.http.get(f"/v1/venues/{venue['id']}", headers=m.admin).json() == changed

    assert_accepted_at(world, venue, new_lon + 0.0005, new_lat + 0.0005, 5)
    assert_outside(world, old_lon, old_lat, 5)

    for body in ({"name": None}, {"geofence": None}, {"timezone": None}):
        r = world.http.patch(f"/v1/venues/{venue['id']}", json=body, headers=m.admin)
        assert fields(assert_problem(r, 422)) == list(body)
    r = world.http.patch(
        f"/v1/venues/{venue['id']}",
        json={"geofence": {"type": "Circle", "center": [0, 0], "radius_m": 5}},
        headers=m.admin,
    )
    assert_problem(r, 422, "validation_error")
    assert world.http.get(f"/v1/venues/{venue['id']}", headers=m.admin).json() == changed


def test_a_deleted_venue_is_gone_everywhere(world):
    m = world.merchant()
    venue = world.venue(m, radius_m=60)
    keep = world.venue(m)
    lon, lat = venue["center"]
    assert_accepted_at(world, venue, lon, lat, 5)
    nearby = world.http.get(
        "/v1/venues/nearby", params={"lat": lat, "lon": lon, "radius_m": 200}, headers=world.user()
    ).json()["items"]
    assert [v["id"] for v in nearby] == [venue["id"]]

    r = world.http.delete(f"/v1/venues/{venue['id']}", headers=m.admin)
    assert r.status_code == 204 and r.content == b""

    assert_problem(world.http.get(f"/v1/venues/{venue['id']}", headers=m.admin), 404, "not_found")
    assert_problem(world.http.patch(f"/v1/venues/{venue['id']}", json={"name": "x"}, headers=m.admin), 404)
    assert_problem(world.http.delete(f"/v1/venues/{venue['id']}", headers=m.admin), 404, "not_found")
    assert [v["id"] for v in world.http.get("/v1/venues", headers=m.admin).json()["items"]] == [keep["id"]]
    body = assert_outside(world, lon, lat, 5)
    assert body["venue"] is None
    nearby = world.http.get(
        "/v1/venues/nearby", params={"lat": lat, "lon": lon, "radius_m": 200}, headers=world.user()
    ).json()["items"]
    assert nearby == []
    r = world.checkin(world.user(), lon, lat, accuracy_m=5, venue_id=venue["id"])
    assert r.json()["status"] == "rejected", r.text


# --- tenancy -------------------------------------------------------------------------------


def test_another_merchants_venue_is_indistinguishable_from_a_missing_one(world):
    a, b = world.merchant("A"), world.merchant("B")
    venue = world.venue(a, name="A's cafe")
    b_venue = world.venue(b, name="B's cafe")
    missing = uuid.uuid4()

    def without_instance(r):
        return problem_apart_from_request(assert_problem(r, 404, "not_found"))

    for headers in (b.admin, b.staff, b.marketer):
        assert without_instance(world.http.get(f"/v1/venues/{venue['id']}", headers=headers)) == without_instance(
            world.http.get(f"/v1/venues/{missing}", headers=headers)
        )
        assert [v["id"] for v in world.http.get("/v1/venues", headers=headers).json()["items"]] == [b_venue["id"]]
    assert without_instance(
        world.http.patch(f"/v1/venues/{venue['id']}", json={"name": "Mine"}, headers=b.admin)
    ) == without_instance(world.http.patch(f"/v1/venues/{missing}", json={"name": "Mine"}, headers=b.admin))
    assert without_instance(world.http.delete(f"/v1/venues/{venue['id']}", headers=b.admin)) == without_instance(
        world.http.delete(f"/v1/venues/{missing}", headers=b.admin)
    )

    # a cursor from A's ids does not open A's list to B
    r = world.http.get("/v1/venues", params={"cursor": "00000000-0000-0000-0000-000000000000"}, headers=b.admin)
    assert [v["id"] for v in r.json()["items"]] == [b_venue["id"]]
    # untouched
    r = world.http.get(f"/v1/venues/{venue['id']}", headers=a.admin)
    assert r.status_code == 200 and r.json()["name"] == "A's cafe"
    assert_accepted_at(world, venue, *venue["center"], 5)


def test_a_verified_token_for_a_new_merchant_provisions_it_on_first_write(world, db):
    newcomer = str(uuid.uuid4())
    headers = world.headers("merchant_admin", merchant_id=newcomer)
    assert world.http.get("/v1/venues", headers=headers).json() == {"items": [], "next_cursor": None}
    circle = {"type": "Circle", "center": list(world.spot()), "radius_m": 50}
    r = world.http.post("/v1/venues", json=venue_body(circle), headers=headers)
    assert r.status_code == 201, r.text
    assert r.json()["merchant_id"] == newcomer
    assert db.execute("SELECT count(*) AS n FROM merchants WHERE id = %s", (newcomer,)).fetchone()["n"] == 1
    # a second venue reuses the same merchant row
    circle = {"type": "Circle", "center": list(world.spot()), "radius_m": 50}
    assert world.http.post("/v1/venues", json=venue_body(circle), headers=headers).status_code == 201
    assert db.execute("SELECT count(*) AS n FROM merchants WHERE id = %s", (newcomer,)).fetchone()["n"] == 1


# --- geofences at the edge -----------------------------------------------------------------

LON, LAT = 10.75, 59.91


def _polygon(*rings) -> dict:
    return {"type": "Polygon", "coordinates": list(rings)}


def _many_vertices(n: int) -> list[list[float]]:
    ring = [
        [LON + 0.001 * math.cos(2 * math.pi * i / n), LAT + 0.001 * math.sin(2 * math.pi * i / n)] for i in range(n)
    ]
    return [*ring, ring[0]]


# (case, geofence as JSON text, errors[0].field, errors[0].code)
BAD_GEOFENCES = [
    (
        "bow-tie",
        _polygon([[LON, LAT], [LON + 0.001, LAT + 0.001], [LON + 0.001, LAT], [LON, LAT + 0.001], [LON, LAT]]),
        "geofence.coordinates",
        "invalid_geometry",
    ),
    ("unclosed ring", _polygon(rectangle(LON, LAT, 0.001, 0.001)[:-1]), "geofence.coordinates.0", "ring_not_closed"),
    (
        "too few points",
        _polygon([[LON, LAT], [LON + 0.001, LAT], [LON, LAT]]),
        "geofence.coordinates.0",
        "too_few_points",
    ),
    ("empty coordinates", _polygon(), "geofence.coordinates", "empty_geometry"),
    ("empty ring", _polygon([]), "geofence.coordinates.0", "too_few_points"),
    (
        "collinear ring",
        _polygon([[LON, LAT], [LON + 0.001, LAT], [LON + 0.002, LAT], [LON, LAT]]),
        "geofence.coordinates.0",
        "empty_geometry",
    ),
    (
        "latitude 91",
        _polygon([[LON, LAT], [LON, 91], [LON + 0.001, LAT], [LON, LAT]]),
        "geofence.coordinates.0.1.1",
        "lat_out_of_range",
    ),
    (
        "longitude 181",
        _polygon([[LON, LAT], [181, LAT], [LON, LAT + 0.001], [LON, LAT]]),
        "geofence.coordinates.0.1.0",
        "lon_out_of_range",
    ),
    (
        "NaN longitude",
        '{"type": "Polygon", "coordinates": [[[10, 60], [NaN, 60], [10.001, 60.001], [10, 60]]]}',
        "geofence.coordinates.0.1.0",
        "not_finite",
    ),
    (
        "Infinity latitude",
        '{"type": "Polygon", "coordinates": [[[10, 60], [10.001, Infinity], [10.001, 60.001], [10, 60]]]}',
        "geofence.coordinates.0.1.1",
        "not_finite",
    ),
    (
        "-Infinity circle centre",
        '{"type": "Circle", "center": [-Infinity, 60], "radius_m": 50}',
        "geofence.center.0",
        "not_finite",
    ),
    (
        "NaN radius",
        '{"type": "Circle", "center": [10, 60], "radius_m": NaN}',
        "geofence.radius_m",
        "radius_out_of_range",
    ),
    (
        "a string coordinate",
        _polygon([[LON, LAT], ["10.8", LAT], [LON, LAT + 0.001], [LON, LAT]]),
        "geofence.coordinates.0.1.0",
        "not_a_number",
    ),
    (
        "an altitude",
        _polygon([[LON, LAT, 12], [LON + 0.001, LAT], [LON, LAT + 0.001], [LON, LAT]]),
        "geofence.coordinates.0.0",
        "bad_position",
    ),
    ("too many vertices", _polygon(_many_vertices(1000)), "geofence.coordinates", "too_many_vertices"),
    ("too large an area", _polygon(rectangle(LON, LAT, 0.1, 0.1)), "geofence.coordinates", "area_too_large"),
    (
        "radius below the minimum",
        {"type": "Circle", "center": [LON, LAT], "radius_m": 9.99},
        "geofence.radius_m",
        "radius_out_of_range",
    ),
    (
        "radius above the maximum",
        {"type": "Circle", "center": [LON, LAT], "radius_m": 1000.01},
        "geofence.radius_m",
        "radius_out_of_range",
    ),
    (
        "radius a string",
        {"type": "Circle", "center": [LON, LAT], "radius_m": "50"},
        "geofence.radius_m",
        "radius_out_of_range",
    ),
    ("circle without a radius", {"type": "Circle", "center": [LON, LAT]}, "geofence.radius_m", "missing_field"),
    (
        "a ring across the antimeridian",
        _polygon([[179.9, LAT], [-179.9, LAT], [-179.9, LAT + 0.001], [179.9, LAT + 0.001], [179.9, LAT]]),
        "geofence.coordinates.0",
        "crosses_antimeridian",
    ),
    (
        "overlapping multipolygon parts",
        {
            "type": "MultiPolygon",
            "coordinates": [[rectangle(LON, LAT, 0.002, 0.002)], [rectangle(LON + 0.001, LAT + 0.001, 0.002, 0.002)]],
        },
        "geofence.coordinates",
        "invalid_geometry",
    ),
    ("a point", {"type": "Point", "coordinates": [LON, LAT]}, "geofence.type", "unknown_type"),
    (
        "an unknown member",
        {"type": "Circle", "center": [LON, LAT], "radius_m": 50, "crs": "EPSG:4326"},
        "geofence.crs",
        "unknown_field",
    ),
]


@pytest.mark.parametrize(("case", "geofence", "field", "code"), BAD_GEOFENCES, ids=[c[0] for c in BAD_GEOFENCES])
def test_a_bad_geofence_is_422_naming_the_field(world, case, geofence, field, code):
    m = world.merchant()
    geofence_text = geofence if isinstance(geofence, str) else json.dumps(geofence)
    body = f'{{"name": "Edge", "timezone": "UTC", "geofence": {geofence_text}}}'
    r = world.http.post("/v1/venues", content=body, headers={**m.admin, "Content-Type": "application/json"})
    problem = assert_problem(r, 422, "validation_error")
    assert (problem["errors"][0]["field"], problem["errors"][0]["code"]) == (field, code), problem
    if code == "crosses_antimeridian":
        assert "split" in problem["detail"] and "MultiPolygon" in problem["detail"]

    venue = world.venue(m)
    r = world.http.patch(
        f"/v1/venues/{venue['id']}",
        content=f'{{"geofence": {geofence_text}}}',
        headers={**m.admin, "Content-Type": "application/json"},
    )
    problem = assert_problem(r, 422, "validation_error")
    assert (problem["errors"][0]["field"], problem["errors"][0]["code"]) == (field, code), problem
    assert world.http.get(f"/v1/venues/{venue['id']}", headers=m.admin).json()["geofence"] == venue["geofence"]
    assert [v["id"] for v in world.http.get("/v1/venues", headers=m.admin).json()["items"]] == [venue["id"]]


@pytest.mark.parametrize("raw", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_numbers_in_a_checkin_are_422(world, raw):
    for field in ("lat", "lon", "accuracy_m"):
        values = {"lat": "59.9", "lon": "10.7", "accuracy_m": "5", field: raw}
        body = (
            f'{{"lat": {values["lat"]}, "lon": {values["lon"]}, "accuracy_m": {values["accuracy_m"]}, '
            f'"observed_at": "2030-01-01T00:00:00Z"}}'
        )
        r = world.http.post(
            "/v1/checkins",
            content=body,
            headers={**world.user(), "Idempotency-Key": "k", "Content-Type": "application/json"},
        )
        assert fields(assert_problem(r, 422, "validation_error")) == [field]


# --- the antimeridian ----------------------------------------------------------------------


def test_a_multipolygon_split_at_the_antimeridian_matches_checkins_on_both_sides(world):
    m = world.merchant()
    lat = round(random.uniform(-50, 60), 4)
    east = rectangle(179.999, lat, 0.001, 0.001)  # reaches +180
    west = rectangle(-180, lat, 0.001, 0.001)  # starts at -180
    fence = {"type": "MultiPolygon", "coordinates": [[east], [west]]}
    r = world.http.post("/v1/venues", json=venue_body(fence), headers=m.admin)
    assert r.status_code == 201, r.text
    venue = r.json()
    assert venue["geofence"] == fence
    assert venue["area_m2"] == pytest.approx(2 * rectangle_area_m2(lat, 0.001, 0.001), rel=2e-3)

    middle = lat + 0.0005
    for lon in (179.9999, -179.9999, 180.0, -180.0, 179.9991, -179.9991):
        assert_accepted_at(world, venue, lon, middle, 1)
    # ~1 km off either side
    assert_outside(world, 179.99, middle, 5)
    assert_outside(world, -179.99, middle, 5)


def test_a_circle_straddling_the_antimeridian_matches_on_both_sides(world):
    m = world.merchant()
    lat = round(random.uniform(-50, 60), 4)
    venue = world.venue(m, geofence={"type": "Circle", "center": [180, lat], "radius_m": 100})
    for azimuth in (90, 270, 45, 225):
        assert_accepted_at(world, venue, *offset(180, lat, azimuth, 95), 1)
        assert_outside(world, *offset(180, lat, azimuth, 110), 1)


# --- on and just off the fence -------------------------------------------------------------


def test_a_checkin_exactly_on_a_polygon_edge_is_accepted(world):
    m = world.merchant()
    lon, lat = world.spot()
    venue = world.venue(m, geofence={"type": "Polygon", "coordinates": [rectangle(lon, lat, 0.002, 0.002)]})
    # Edges along meridians are geodesics, so a point between two vertices lies exactly on the fence.
    assert_accepted_at(world, venue, lon, lat + 0.001, 1)
    assert_accepted_at(world, venue, lon + 0.002, lat + 0.0013, 1)
    # and on a vertex
    assert_accepted_at(world, venue, lon + 0.002, lat + 0.002, 1)
    # Edges along parallels bow towards the pole as geodesics, by under a millimetre at this size.
    assert_accepted_at(world, venue, lon + 0.001, lat, 1)
    assert_accepted_at(world, venue, lon + 0.0007, lat + 0.002, 1)


def test_twenty_metres_outside_a_polygon_is_rejected_with_the_distance(world):
    m = world.merchant()
    lon, lat = world.spot()
    venue = world.venue(m, geofence={"type": "Polygon", "coordinates": [rectangle(lon, lat, 0.002, 0.002)]})
    for azimuth, start in (
        (270, (lon, lat + 0.001)),
        (90, (lon + 0.002, lat + 0.001)),
        (0, (lon + 0.001, lat + 0.002)),
        (180, (lon + 0.001, lat)),
    ):
        body = assert_outside(world, *offset(*start, azimuth, 20), 5)
        assert body["detail"]["distance_m"] == pytest.approx(20, abs=3), body
        assert body["detail"]["nearest_venue_id"] == venue["id"]
        assert body["detail"]["accuracy_m"] == 5
        # the same spot with an accuracy circle that reaches the fence matches
        assert_accepted_at(world, venue, *offset(*start, azimuth, 20), 25)


@pytest.mark.parametrize("azimuth", [0, 45, 90, 135, 180, 250, 300])
def test_two_metres_inside_and_outside_a_circle(world, azimuth):
    m = world.merchant()
    lon, lat = world.spot()
    venue = world.venue(m, center=(lon, lat), radius_m=80)
    assert_accepted_at(world, venue, *offset(lon, lat, azimuth, 78), 1)
    body = assert_outside(world, *offset(lon, lat, azimuth, 82), 1)
    assert body["detail"]["distance_m"] == pytest.approx(2, abs=0.2)


# --- nearby --------------------------------------------------------------------------------


def test_nearby_lists_nearest_first_and_says_only_whether_an_offer_waits(world):
    m = world.merchant()
    lon, lat = world.spot()
    secret = {
        "title": f"Secret bun {uuid.uuid4().hex}",
        "description": f"Hidden {uuid.uuid4().hex}",
        "terms": f"Terms {uuid.uuid4().hex}",
        "rule": {"type": "every_checkin"},
        "total_limit": 100,
    }

    active = world.venue(m, center=offset(lon, lat, 90, 100), radius_m=30, name="Active")
    draft = world.venue(m, center=offset(lon, lat, 0, 300), radius_m=30, name="Draft")
    plain = world.venue(m, center=offset(lon, lat, 270, 500), radius_m=30, name="Plain")
    paused = world.venue(m, center=offset(lon, lat, 180, 700), radius_m=30, name="Paused")
    far = world.venue(m, center=offset(lon, lat, 45, 3000), radius_m=30, name="Far")
    no_offer = world.venue(m, center=offset(lon, lat, 135, 850), radius_m=30, name="No offer")
    world.campaign(m, [active["id"]], offers=[secret])
    world.campaign(m, [draft["id"]], offers=[secret], activate=False)
    paused_campaign = world.campaign(m, [paused["id"]], offers=[secret])
    assert world.http.post(f"/v1/campaigns/{paused_campaign['id']}/pause", headers=m.admin).status_code == 200
    world.campaign(m, [no_offer["id"], far["id"]], offers=[], activate=False)

    unlocked = checkin(world, *active["center"], 5)["unlocked"]
    assert len(unlocked) == 1

    r = world.http.get("/v1/venues/nearby", params={"lat": lat, "lon": lon, "radius_m": 1000}, headers=world.user())
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert [v["id"] for v in items] == [active["id"], draft["id"], plain["id"], paused["id"], no_offer["id"]]
    assert [v["distance_m"] for v in items] == pytest.approx([70, 270, 470, 670, 820], abs=1)
    assert [v["has_checkin_offer"] for v in items] == [True, False, False, False, False]
    for item in items:
        assert set(item) == {"id", "name", "distance_m", "has_checkin_offer"}
    for hidden in (
        secret["title"],
        secret["description"],
        secret["terms"],
        unlocked[0]["code"],
        unlocked[0]["offer_id"],
        "title",
        "code",
    ):
        assert hidden not in r.text

    r = world.http.get(
        "/v1/venues/nearby",
        params={"lat": active["center"][1], "lon": active["center"][0], "radius_m": 50},
        headers=world.user(),
    )
    assert [(v["id"], v["distance_m"]) for v in r.json()["items"]] == [(active["id"], 0)]
    r = world.http.get(
        "/v1/venues/nearby", params={"lat": lat, "lon": lon, "radius_m": 1000, "limit": 2}, headers=world.user()
    )
    assert [v["id"] for v in r.json()["items"]] == [active["id"], draft["id"]]


@pytest.mark.parametrize("status", ["paused", "retired"])
def test_nearby_says_no_offer_waits_when_every_offer_is_paused_or_retired(world, status):
    m = world.merchant()
    venue = world.venue(m)
    campaign = world.campaign(m, [venue["id"]])
    offer = world.http.get(f"/v1/campaigns/{campaign['id']}/offers", headers=m.admin).json()["items"][0]
    lon, lat = venue["center"]

    def waiting() -> bool:
        r = world.http.get("/v1/venues/nearby", params={"lat": lat, "lon": lon, "radius_m": 50}, headers=world.user())
        return r.json()["items"][0]["has_checkin_offer"]

    assert waiting()
    r = world.http.patch(f"/v1/offers/{offer['id']}", json={"status": status}, headers=m.admin)
    assert r.status_code == 200, r.text
    assert not waiting()


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"radius_m": 0}, "radius_m"),
        ({"radius_m": -1}, "radius_m"),
        ({"radius_m": 5001}, "radius_m"),
        ({"radius_m": "inf"}, "radius_m"),
        ({"radius_m": "nan"}, "radius_m"),
        ({"lat": 91}, "lat"),
        ({"lat": -90.5}, "lat"),
        ({"lat": "nan"}, "lat"),
        ({"lon": 181}, "lon"),
        ({"lon": "-inf"}, "lon"),
        ({"lat": None}, "lat"),
    ],
)
def test_nearby_bounds_are_422(world, params, field):
    query = {"lat": 59.9, "lon": 10.7, "radius_m": 500} | params
    r = world.http.get(
        "/v1/venues/nearby", params={k: v for k, v in query.items() if v is not None}, headers=world.user()
    )
    assert fields(assert_problem(r, 422, "validation_error")) == [field]


def test_nearby_accepts_its_bounds(world):
    for params in ({"lat": 90, "lon": 180, "radius_m": 5000}, {"lat": -90, "lon": -180, "radius_m": 0.5}):
        r = world.http.get("/v1/venues/nearby", params=params, headers=world.user())
        assert r.status_code == 200, r.text
