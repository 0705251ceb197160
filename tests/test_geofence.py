import math

import pytest
import shapely
from pyproj import Geod

from geo.geofence import (
    CIRCLE_HEADROOM,
    CIRCLE_SEGMENTS,
    MAX_AREA_M2,
    MAX_POLYGONS,
    MAX_RADIUS_M,
    MAX_VERTICES,
    MIN_RADIUS_M,
    Geofence,
    GeofenceError,
    parse_geofence,
    wkt_for_storage,
)

GEOD = Geod(ellps="WGS84")
OSLO = (10.7522, 59.9139)
# About 56 m x 111 m near Oslo, wound counter-clockwise.
SMALL_RING = [[10.0, 59.0], [10.001, 59.0], [10.001, 59.001], [10.0, 59.001], [10.0, 59.0]]
BOWTIE = [[10.0, 59.0], [10.001, 59.001], [10.001, 59.0], [10.0, 59.001], [10.0, 59.0]]
# One ring 0.2° wide around the antimeridian, which reads as 359.8° wide.
RING_ACROSS_180 = [
    [179.9, -17.0],
    [-179.9, -17.0],
    [-179.9, -16.99],
    [179.9, -16.99],
    [179.9, -17.0],
]


def square_ring(lon: float, lat: float, side_m: float) -> list[list[float]]:
    """Counter-clockwise ring with `side_m` geodesic sides, south-west corner at (lon, lat)."""
    east_lon, east_lat, _ = GEOD.fwd(lon, lat, 90, side_m)
    ne_lon, ne_lat, _ = GEOD.fwd(east_lon, east_lat, 0, side_m)
    nw_lon, nw_lat, _ = GEOD.fwd(lon, lat, 0, side_m)
    return [[lon, lat], [east_lon, east_lat], [ne_lon, ne_lat], [nw_lon, nw_lat], [lon, lat]]


def polygon(*rings: list) -> dict:
    return {"type": "Polygon", "coordinates": list(rings)}


def circle(center: list, radius_m: object) -> dict:
    return {"type": "Circle", "center": center, "radius_m": radius_m}


def ring_with(index: int, position: object) -> list:
    ring = [list(p) for p in SMALL_RING]
    ring[index] = position
    return ring


def refusal(value: object) -> GeofenceError:
    with pytest.raises(GeofenceError) as caught:
        parse_geofence(value)
    return caught.value


# --- refusals -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "field", "code"),
    [
        pytest.param([1, 2], "geofence", "not_an_object", id="list"),
        pytest.param({"coordinates": [SMALL_RING]}, "geofence.type", "missing_field", id="no-type"),
        pytest.param({"type": "Point", "coordinates": [10, 59]}, "geofence.type", "unknown_type", id="point"),
        pytest.param(
            {"type": "polygon", "coordinates": [SMALL_RING]},
            "geofence.type",
            "unknown_type",
            id="type-is-case-sensitive",
        ),
        pytest.param(
            {"type": "Polygon", "coordinates": [SMALL_RING], "bbox": [10, 59, 10.001, 59.001]},
            "geofence.bbox",
            "unknown_field",
            id="polygon-extra-key",
        ),
        pytest.param(
            {**circle([10.0, 59.0], 50), "coordinates": [10.0, 59.0]},
            "geofence.coordinates",
            "unknown_field",
            id="circle-extra-key",
        ),
        pytest.param(
            {"type": "Circle", "center": [10.0, 59.0]},
            "geofence.radius_m",
            "missing_field",
            id="circle-no-radius",
        ),
        pytest.param(
            {"type": "Polygon", "coordinates": "10 59"},
            "geofence.coordinates",
            "bad_coordinates",
            id="coordinates-string",
        ),
        pytest.param(
            polygon(ring_with(1, [True, 59.0])),
            "geofence.coordinates.0.1.0",
            "not_a_number",
            id="bool-longitude",
        ),
        pytest.param(
            polygon(ring_with(2, [10.001, False])),
            "geofence.coordinates.0.2.1",
            "not_a_number",
            id="bool-latitude",
        ),
        pytest.param(
            polygon(ring_with(1, ["10.001", 59.0])),
            "geofence.coordinates.0.1.0",
            "not_a_number",
            id="string-number",
        ),
        pytest.param(
            polygon(ring_with(2, [10.001, 59.001, 12.0])),
            "geofence.coordinates.0.2",
            "bad_position",
            id="altitude",
        ),
        pytest.param(
            polygon(ring_with(2, [10.001])),
            "geofence.coordinates.0.2",
            "bad_position",
            id="one-number",
        ),
        pytest.param(
            {"type": "Polygon", "coordinates": SMALL_RING},
            "geofence.coordinates.0.0",
            "bad_position",
            id="missing-ring-level",
        ),
        pytest.param(
            polygon(ring_with(1, [math.nan, 59.0])),
            "geofence.coordinates.0.1.0",
            "not_finite",
            id="nan",
        ),
        pytest.param(
            polygon(ring_with(1, [10.001, math.inf])),
            "geofence.coordinates.0.1.1",
            "not_finite",
            id="infinity",
        ),
        pytest.param(
            polygon(ring_with(1, [180.0001, 59.0])),
            "geofence.coordinates.0.1.0",
            "lon_out_of_range",
            id="lon-180.0001",
        ),
        pytest.param(
            polygon(ring_with(1, [10**400, 59.0])),
            "geofence.coordinates.0.1.0",
            "lon_out_of_range",
            id="lon-huge-int",
        ),
        pytest.param(
            polygon(ring_with(2, [10.001, 91])),
            "geofence.coordinates.0.2.1",
            "lat_out_of_range",
            id="lat-91",
        ),
        pytest.param(
            polygon(SMALL_RING[:-1] + [[10.0, 59.0005]]),
            "geofence.coordinates.0",
            "ring_not_closed",
            id="not-closed",
        ),
        pytest.param(
            polygon([[10.0, 59.0], [10.001, 59.0], [10.0, 59.0]]),
            "geofence.coordinates.0",
            "too_few_points",
            id="three-positions",
        ),
        pytest.param(
            {"type": "Polygon", "coordinates": []},
            "geofence.coordinates",
            "empty_geometry",
            id="polygon-no-rings",
        ),
        pytest.param(
            {"type": "MultiPolygon", "coordinates": []},
            "geofence.coordinates",
            "empty_geometry",
            id="multipolygon-no-polygons",
        ),
        pytest.param(
            {"type": "MultiPolygon", "coordinates": [[]]},
            "geofence.coordinates.0",
            "empty_geometry",
            id="multipolygon-empty-part",
        ),
        pytest.param(
            polygon([[10.0, 59.0], [10.001, 59.0], [10.002, 59.0], [10.0, 59.0]]),
            "geofence.coordinates.0",
            "empty_geometry",
            id="zero-area",
        ),
        pytest.param(
            polygon(BOWTIE),
            "geofence.coordinates",
            "invalid_geometry",
            id="bowtie",
        ),
        pytest.param(
            polygon(RING_ACROSS_180),
            "geofence.coordinates.0",
            "crosses_antimeridian",
            id="ring-across-180",
        ),
        pytest.param(
            circle([10.0, 59.0], MIN_RADIUS_M - 0.001),
            "geofence.radius_m",
            "radius_out_of_range",
            id="radius-below-min",
        ),
        pytest.param(
            circle([10.0, 59.0], MAX_RADIUS_M + 0.001),
            "geofence.radius_m",
            "radius_out_of_range",
            id="radius-above-max",
        ),
        pytest.param(
            circle([10.0, 59.0], math.nan),
            "geofence.radius_m",
            "radius_out_of_range",
            id="radius-nan",
        ),
        pytest.param(
            circle([10.0, 59.0], math.inf),
            "geofence.radius_m",
            "radius_out_of_range",
            id="radius-inf",
        ),
        pytest.param(
            circle([10.0, 59.0], "50"),
            "geofence.radius_m",
            "radius_out_of_range",
            id="radius-string",
        ),
        pytest.param(circle([10.0, 59.0], True), "geofence.radius_m", "radius_out_of_range", id="radius-bool"),
        pytest.param(circle([200.0, 59.0], 50), "geofence.center.0", "lon_out_of_range", id="center-lon"),
        pytest.param(circle([10.0, True], 50), "geofence.center.1", "not_a_number", id="center-bool"),
        pytest.param(circle([10.0, 59.0, 0.0], 50), "geofence.center", "bad_position", id="center-altitude"),
        pytest.param(
            circle([10.0, 89.95], 50),
            "geofence.center.1",
            "lat_out_of_range",
            id="center-near-pole",
        ),
    ],
)
def test_refusals_name_field_and_code(value: object, field: str, code: str) -> None:
    error = refusal(value)
    assert (error.field, error.code) == (field, code)
    assert error.message


def test_refusal_is_a_value_error_with_the_field_in_its_text() -> None:
    error = refusal(circle([10.0, 59.0], 5))
    assert isinstance(error, ValueError)
    assert "geofence.radius_m" in str(error)


def test_field_prefix_is_the_callers() -> None:
    with pytest.raises(GeofenceError) as caught:
        parse_geofence(polygon(ring_with(1, [10.001, 95.0])), field="offer.area")
    assert caught.value.field == "offer.area.coordinates.0.1.1"


def test_altitude_refusal_says_so() -> None:
    assert "altitude" in refusal(polygon(ring_with(2, [10.001, 59.001, 12.0]))).message


def test_self_intersection_message_carries_geos_reason() -> None:
    assert "Self-intersection" in refusal(polygon(BOWTIE)).message


def test_hole_outside_shell_is_invalid() -> None:
    hole = square_ring(OSLO[0] + 0.01, OSLO[1], 20)
    error = refusal(polygon(square_ring(*OSLO, 100), hole))
    assert error.code == "invalid_geometry"
    assert "Hole lies outside shell" in error.message


def test_overlapping_multipolygon_parts_are_invalid() -> None:
    first = square_ring(*OSLO, 100)
    overlapping = square_ring(OSLO[0] + 0.0005, OSLO[1] + 0.0005, 100)
    error = refusal({"type": "MultiPolygon", "coordinates": [[first], [overlapping]]})
    assert (error.field, error.code) == ("geofence.coordinates", "invalid_geometry")


def test_invalid_part_of_multipolygon_is_located() -> None:
    error = refusal({"type": "MultiPolygon", "coordinates": [[square_ring(*OSLO, 100)], [BOWTIE]]})
    assert (error.field, error.code) == ("geofence.coordinates.1", "invalid_geometry")


def test_crosses_antimeridian_message_asks_for_a_split() -> None:
    assert "MultiPolygon" in refusal(polygon(RING_ACROSS_180)).message


# --- limits ---------------------------------------------------------------------------------


def regular_ring(positions: int, radius_m: float = 500) -> list[list[float]]:
    """Closed ring of `positions` positions (closing one included) around Oslo."""
    corners = positions - 1
    azimuths = [-360 * i / corners for i in range(corners)]
    lons, lats, _ = GEOD.fwd([OSLO[0]] * corners, [OSLO[1]] * corners, azimuths, [radius_m] * corners)
    ring = [[lon, lat] for lon, lat in zip(lons, lats, strict=True)]
    return ring + [ring[0]]


def test_max_vertices_is_accepted() -> None:
    fence = parse_geofence(polygon(regular_ring(MAX_VERTICES)))
    assert len(fence.geojson["coordinates"][0]) == MAX_VERTICES


def test_one_vertex_over_the_limit_is_refused_counting_holes() -> None:
    shell = regular_ring(MAX_VERTICES - 4)
    hole = square_ring(*OSLO, 10)
    error = refusal(polygon(shell, hole))
    assert (error.field, error.code) == ("geofence.coordinates", "too_many_vertices")


def test_vertex_count_is_over_all_polygons() -> None:
    parts = [[regular_ring(MAX_VERTICES - 4)], [square_ring(11.0, 60.0, 10)]]
    error = refusal({"type": "MultiPolygon", "coordinates": parts})
    assert error.code == "too_many_vertices"


def disjoint_squares(count: int) -> list:
    return [[square_ring(OSLO[0] + 0.01 * i, OSLO[1], 50)] for i in range(count)]


def test_max_polygons_is_accepted() -> None:
    fence = parse_geofence({"type": "MultiPolygon", "coordinates": disjoint_squares(MAX_POLYGONS)})
    assert len(fence.shape.geoms) == MAX_POLYGONS


def test_one_polygon_over_the_limit_is_refused() -> None:
    error = refusal({"type": "MultiPolygon", "coordinates": disjoint_squares(MAX_POLYGONS + 1)})
    assert (error.field, error.code) == ("geofence.coordinates", "too_many_polygons")


def test_area_just_under_the_limit_is_accepted() -> None:
    side_m = math.sqrt(MAX_AREA_M2) * 0.99
    assert parse_geofence(polygon(square_ring(*OSLO, side_m))).area_m2 <= MAX_AREA_M2


def test_area_just_over_the_limit_is_refused() -> None:
    error = refusal(polygon(square_ring(*OSLO, math.sqrt(MAX_AREA_M2) * 1.01)))
    assert (error.field, error.code) == ("geofence.coordinates", "area_too_large")


def test_area_limit_applies_to_the_sum_of_polygons() -> None:
    side_m = math.sqrt(MAX_AREA_M2 / 2) * 1.01
    parts = [[square_ring(*OSLO, side_m)], [square_ring(OSLO[0] + 0.2, OSLO[1], side_m)]]
    assert refusal({"type": "MultiPolygon", "coordinates": parts}).code == "area_too_large"


@pytest.mark.parametrize("radius_m", [MIN_RADIUS_M, MAX_RADIUS_M])
def test_radius_limits_are_inclusive(radius_m: float) -> None:
    assert parse_geofence(circle([10.0, 59.0], radius_m)).radius_m == radius_m


@pytest.mark.parametrize("lon", [-180, 180])
def test_longitude_limits_are_inclusive(lon: float) -> None:
    assert parse_geofence(circle([lon, 0.0], 50)).center == (lon, 0.0)


# --- polygons -------------------------------------------------------------------------------


def test_polygon_round_trip() -> None:
    ring = square_ring(*OSLO, 100)
    fence = parse_geofence(polygon(ring))
    assert fence.kind == "polygon"
    assert fence.geojson == {"type": "Polygon", "coordinates": [ring]}
    assert fence.center is None and fence.radius_m is None
    assert isinstance(fence.shape, shapely.MultiPolygon) and len(fence.shape.geoms) == 1
    assert fence.area_m2 == pytest.approx(10_000, rel=0.01)


def test_integer_coordinates_are_echoed_as_floats() -> None:
    ring = [[10, 59], [10.001, 59], [10.001, 59.001], [10, 59.001], [10, 59]]
    fence = parse_geofence(polygon(ring))
    assert fence.geojson["coordinates"][0] == ring
    assert all(isinstance(x, float) for p in fence.geojson["coordinates"][0] for x in p)


def test_either_winding_is_accepted_and_stored_counter_clockwise() -> None:
    ring = square_ring(*OSLO, 100)
    clockwise = parse_geofence(polygon(ring[::-1]))
    assert clockwise.geojson["coordinates"][0] == ring[::-1]
    assert clockwise.area_m2 == pytest.approx(parse_geofence(polygon(ring)).area_m2)
    assert shapely.is_ccw(clockwise.shape.geoms[0].exterior)


def test_hole_is_subtracted_whatever_its_winding() -> None:
    shell = square_ring(*OSLO, 100)
    hole_lon, hole_lat, _ = GEOD.fwd(*OSLO, 45, 25 * math.sqrt(2))
    hole = square_ring(hole_lon, hole_lat, 50)  # wound like the shell, against RFC 7946
    fence = parse_geofence(polygon(shell, hole))
    assert fence.area_m2 == pytest.approx(7_500, rel=0.01)


def test_multipolygon_round_trip() -> None:
    parts = [[square_ring(*OSLO, 100)], [square_ring(OSLO[0] + 0.01, OSLO[1], 100)[::-1]]]
    fence = parse_geofence({"type": "MultiPolygon", "coordinates": parts})
    assert fence.kind == "multipolygon"
    assert fence.geojson == {"type": "MultiPolygon", "coordinates": parts}
    assert len(fence.shape.geoms) == 2
    assert fence.area_m2 == pytest.approx(20_000, rel=0.01)


def test_multipolygon_split_at_the_antimeridian_is_accepted() -> None:
    east = [[179.99, -17.0], [180.0, -17.0], [180.0, -16.99], [179.99, -16.99], [179.99, -17.0]]
    west = [[-180.0, -17.0], [-179.99, -17.0], [-179.99, -16.99], [-180.0, -16.99], [-180.0, -17.0]]
    fence = parse_geofence({"type": "MultiPolygon", "coordinates": [[east], [west]]})
    assert len(fence.shape.geoms) == 2
    one_side = parse_geofence(polygon(east)).area_m2
    assert fence.area_m2 == pytest.approx(2 * one_side)


# --- circles --------------------------------------------------------------------------------


def test_circle_round_trip() -> None:
    fence = parse_geofence(circle([10, 59.5], 50))
    assert fence.kind == "circle"
    assert fence.geojson == {"type": "Circle", "center": [10.0, 59.5], "radius_m": 50.0}
    assert isinstance(fence.geojson["radius_m"], float)
    assert fence.center == (10.0, 59.5)
    assert fence.radius_m == 50.0
    assert fence.area_m2 == pytest.approx(math.pi * 2500)
    assert isinstance(fence.shape, shapely.MultiPolygon) and len(fence.shape.geoms) == 1
    assert len(fence.shape.geoms[0].exterior.coords) == CIRCLE_SEGMENTS + 1


def points_at(center: tuple[float, float], distance_m: float, count: int = 360) -> shapely.Geometry:
    azimuths = [360 * i / count for i in range(count)]
    lons, lats, _ = GEOD.fwd([center[0]] * count, [center[1]] * count, azimuths, [distance_m] * count)
    return shapely.points(lons, lats)


CIRCLE_CENTRES = [
    pytest.param(OSLO, id="oslo"),
    pytest.param((-43.2, -22.9), id="rio"),
    pytest.param((0.0, 0.0), id="null-island"),
    pytest.param((20.0, 89.9), id="near-north-pole"),
    pytest.param((179.9995, -17.8), id="fiji-east-of-180"),
    pytest.param((-179.9999, 10.0), id="west-of-180"),
    pytest.param((180.0, 0.0), id="on-180"),
]


@pytest.mark.parametrize("center", CIRCLE_CENTRES)
@pytest.mark.parametrize("radius_m", [MIN_RADIUS_M, 50, MAX_RADIUS_M])
def test_stored_circle_covers_every_point_on_the_circle(center: tuple[float, float], radius_m: float) -> None:
    fence = parse_geofence(circle(list(center), radius_m))
    assert shapely.covers(fence.shape, points_at(center, radius_m)).all()


@pytest.mark.parametrize("center", CIRCLE_CENTRES)
def test_stored_circle_is_no_bigger_than_needed(center: tuple[float, float]) -> None:
    fence = parse_geofence(circle(list(center), MAX_RADIUS_M))
    farthest = MAX_RADIUS_M / math.cos(math.pi / CIRCLE_SEGMENTS) * (1 + CIRCLE_HEADROOM)
    assert not shapely.intersects(fence.shape, points_at(center, farthest + 0.01)).any()


def test_circle_across_the_antimeridian_is_split_within_range() -> None:
    fence = parse_geofence(circle([179.9995, -17.8], 500))
    assert len(fence.shape.geoms) == 2
    assert shapely.is_valid(fence.shape)
    lons = shapely.get_coordinates(fence.shape)[:, 0]
    assert lons.min() >= -180 and lons.max() <= 180
    assert {-180.0, 180.0} <= set(lons.tolist())


# --- storage --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [polygon(square_ring(*OSLO, 100)), circle([179.9995, -17.8], 500)],
    ids=["polygon", "split-circle"],
)
def test_wkt_for_storage_is_lossless_ewkt(value: dict) -> None:
    fence = parse_geofence(value)
    srid, wkt = wkt_for_storage(fence).split(";", 1)
    assert srid == "SRID=4326"
    assert wkt.startswith("MULTIPOLYGON")
    assert shapely.equals_exact(shapely.from_wkt(wkt), fence.shape, tolerance=0)


def test_geofence_is_immutable() -> None:
    fence = parse_geofence(circle([10.0, 59.0], 50))
    assert isinstance(fence, Geofence)
    with pytest.raises(AttributeError):
        fence.radius_m = 60  # type: ignore[misc]
