"""Validate a client-submitted geofence (GeoJSON Polygon, MultiPolygon or Circle) before storage.

Bad input is refused with a `GeofenceError` naming the field and a stable code; nothing is repaired.
Codes: not_an_object, missing_field, unknown_type, unknown_field, bad_coordinates, bad_position,
not_a_number, not_finite, lon_out_of_range, lat_out_of_range, too_few_points, ring_not_closed,
empty_geometry, crosses_antimeridian, invalid_geometry, too_many_polygons, too_many_vertices,
area_too_large, radius_out_of_range.

Limits:
    MAX_VERTICES = 1000        positions over all rings, each ring's closing position included
    MAX_AREA_M2 = 5_000_000    geodesic area on WGS84 (5 km²)
    MAX_POLYGONS = 20          parts of a MultiPolygon
    MIN_RADIUS_M = 10          circle radius, inclusive
    MAX_RADIUS_M = 1000        circle radius, inclusive
    MAX_CIRCLE_ABS_LAT = 89.9  circle centre latitude; nearer a pole, straight lon/lat edges stray
                               too far from the geodesic circle to guarantee it is covered

Antimeridian (RFC 7946 §3.1.9): a ring whose longitudes span more than 180° is taken to cross
±180 and is refused (`crosses_antimeridian`); the client must split it at ±180 into a
MultiPolygon, whose parts may touch ±180 from both sides. A circle that straddles ±180 is
accepted: its stored polygon is cut at the antimeridian into a MultiPolygon.

Rings may be wound either way (RFC 7946 §3.1.6 asks readers to be liberal); the stored shape is
re-wound to the RFC's counter-clockwise exterior.

Circles are stored as a 64-gon whose vertices lie at r / cos(pi/64) from the centre (plus 0.1%
headroom), so the polygon circumscribes the circle: the stored shape is never smaller than it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import shapely
from pyproj import Geod

MAX_VERTICES = 1000
MAX_AREA_M2 = 5_000_000
MAX_POLYGONS = 20
MIN_RADIUS_M = 10
MAX_RADIUS_M = 1000
MAX_CIRCLE_ABS_LAT = 89.9

CIRCLE_SEGMENTS = 64
# Covers the gap between geodesic edges (PostGIS geography) and straight lon/lat edges (shapely,
# PostGIS geometry); measured below 0.03% for r <= 1 km at |lat| <= 89.9.
CIRCLE_HEADROOM = 0.001

_GEOD = Geod(ellps="WGS84")
_ALLOWED_KEYS = {
    "Polygon": {"type", "coordinates"},
    "MultiPolygon": {"type", "coordinates"},
    "Circle": {"type", "center", "radius_m"},
}

Position = tuple[float, float]
Ring = list[Position]


class GeofenceError(ValueError):
    """A geofence refused at `field` (dotted path in the request body) for reason `code`."""

    def __init__(self, field: str, code: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Geofence:
    """A validated fence: `geojson` is echoed to clients, `shape` is stored for the spatial index."""

    kind: str
    geojson: dict[str, Any]
    shape: shapely.MultiPolygon
    center: tuple[float, float] | None
    radius_m: float | None
    area_m2: float


def parse_geofence(value: object, field: str = "geofence") -> Geofence:
    """Validate a decoded GeoJSON object; raise `GeofenceError` on the first problem found."""
    if not isinstance(value, dict):
        raise GeofenceError(field, "not_an_object", f"{field} must be a GeoJSON object")
    if "type" not in value:
        raise GeofenceError(f"{field}.type", "missing_field", f"{field}.type is required")
    kind = value["type"]
    if not isinstance(kind, str) or kind not in _ALLOWED_KEYS:
        raise GeofenceError(
            f"{field}.type",
            "unknown_type",
            f"{field}.type must be one of Polygon, MultiPolygon, Circle; got {kind!r}",
        )
    allowed = _ALLOWED_KEYS[kind]
    unknown = sorted(map(str, value.keys() - allowed))
    if unknown:
        raise GeofenceError(
            f"{field}.{unknown[0]}",
            "unknown_field",
            f"{field}.{unknown[0]} is not allowed in a {kind}; expected only {', '.join(sorted(allowed))}",
        )
    missing = sorted(allowed - value.keys())
    if missing:
        key = f"{field}.{missing[0]}"
        raise GeofenceError(key, "missing_field", f"{key} is required")

    if kind == "Circle":
        return _parse_circle(value, field)
    multi = kind == "MultiPolygon"
    return _parse_polygonal(value["coordinates"], f"{field}.coordinates", multi=multi)


def wkt_for_storage(fence: Geofence) -> str:
    """EWKT of the stored shape at full precision (shapely rounds to 6 decimals by default)."""
    return f"SRID=4326;{shapely.to_wkt(fence.shape, rounding_precision=-1)}"


def _parse_polygonal(raw: object, field: str, *, multi: bool) -> Geofence:
    if multi:
        polygons_raw = _sequence(raw, field, "a list of polygons")
        if not polygons_raw:
            raise GeofenceError(field, "empty_geometry", f"{field} has no polygons")
        if len(polygons_raw) > MAX_POLYGONS:
            raise GeofenceError(
                field,
                "too_many_polygons",
                f"{field} has {len(polygons_raw)} polygons; at most {MAX_POLYGONS} are allowed",
            )
    else:
        polygons_raw = [raw]

    # Counted before any position is parsed so an oversized body is refused cheaply.
    vertices = sum(
        len(ring)
        for polygon in polygons_raw
        if isinstance(polygon, list | tuple)
        for ring in polygon
        if isinstance(ring, list | tuple)
    )
    if vertices > MAX_VERTICES:
        raise GeofenceError(
            field,
            "too_many_vertices",
            f"{field} has {vertices} positions; at most {MAX_VERTICES} are allowed",
        )

    parsed = [
        _parse_polygon(polygon, f"{field}.{index}" if multi else field) for index, polygon in enumerate(polygons_raw)
    ]
    shape = shapely.MultiPolygon([polygon for _, polygon in parsed])
    if multi:
        _require_valid(shape, field)

    # pyproj adds the signed area of holes, so exteriors and holes must be wound oppositely.
    shape = shapely.orient_polygons(shape)
    area_m2 = abs(_GEOD.geometry_area_perimeter(shape)[0])
    if area_m2 > MAX_AREA_M2:
        raise GeofenceError(
            field,
            "area_too_large",
            f"{field} covers {area_m2:,.0f} m²; at most {MAX_AREA_M2:,} m² is allowed",
        )

    rings_per_polygon = [[[list(p) for p in ring] for ring in rings] for rings, _ in parsed]
    return Geofence(
        kind="multipolygon" if multi else "polygon",
        geojson={
            "type": "MultiPolygon" if multi else "Polygon",
            "coordinates": rings_per_polygon if multi else rings_per_polygon[0],
        },
        shape=shape,
        center=None,
        radius_m=None,
        area_m2=area_m2,
    )


def _parse_polygon(raw: object, field: str) -> tuple[list[Ring], shapely.Polygon]:
    rings_raw = _sequence(raw, field, "a polygon: a list of linear rings")
    if not rings_raw:
        raise GeofenceError(field, "empty_geometry", f"{field} has no rings")
    rings = [_parse_ring(ring, f"{field}.{index}") for index, ring in enumerate(rings_raw)]
    polygon = shapely.Polygon(rings[0], rings[1:])
    _require_valid(polygon, field)
    return rings, polygon


def _parse_ring(raw: object, field: str) -> Ring:
    positions_raw = _sequence(raw, field, "a linear ring: a list of [longitude, latitude] pairs")
    ring = [_parse_position(p, f"{field}.{index}") for index, p in enumerate(positions_raw)]
    if len(ring) < 4:
        raise GeofenceError(field, "too_few_points", f"{field} has {len(ring)} positions; a ring needs at least 4")
    if ring[0] != ring[-1]:
        raise GeofenceError(field, "ring_not_closed", f"{field} must end with the same position it starts with")
    # Checked before validity because GEOS reports a flat ring as a self-intersection. The hull,
    # not the ring's own area, because the two loops of a bow-tie can cancel out to zero.
    if shapely.MultiPoint(ring).convex_hull.area == 0:
        raise GeofenceError(field, "empty_geometry", f"{field} encloses no area: its positions are collinear")
    longitudes = [lon for lon, _ in ring]
    if max(longitudes) - min(longitudes) > 180:
        raise GeofenceError(
            field,
            "crosses_antimeridian",
            f"{field} spans more than 180° of longitude, so it is taken to cross the antimeridian; "
            "split it at ±180 into a MultiPolygon (RFC 7946 §3.1.9)",
        )
    return ring


def _parse_position(raw: object, field: str) -> Position:
    if not isinstance(raw, list | tuple) or len(raw) != 2:
        has_altitude = isinstance(raw, list | tuple) and len(raw) == 3
        raise GeofenceError(
            field,
            "bad_position",
            f"{field} must be a [longitude, latitude] pair" + (" (altitude is not accepted)" if has_altitude else ""),
        )
    lon = _finite_number(raw[0], f"{field}.0", "longitude")
    lat = _finite_number(raw[1], f"{field}.1", "latitude")
    # Compared before float() so an integer too large for a float is out of range, not an error.
    if not -180 <= lon <= 180:
        raise GeofenceError(f"{field}.0", "lon_out_of_range", f"{field}.0: longitude {lon} is outside [-180, 180]")
    if not -90 <= lat <= 90:
        raise GeofenceError(f"{field}.1", "lat_out_of_range", f"{field}.1: latitude {lat} is outside [-90, 90]")
    return float(lon), float(lat)


def _parse_circle(value: dict[str, Any], field: str) -> Geofence:
    center_field = f"{field}.center"
    lon, lat = _parse_position(value["center"], center_field)
    if abs(lat) > MAX_CIRCLE_ABS_LAT:
        raise GeofenceError(
            f"{center_field}.1",
            "lat_out_of_range",
            f"{center_field}.1: a circle centre must lie within ±{MAX_CIRCLE_ABS_LAT}° latitude",
        )

    radius_field = f"{field}.radius_m"
    raw_radius = value["radius_m"]
    is_number = isinstance(raw_radius, int | float) and not isinstance(raw_radius, bool)
    # The range test is also false for NaN and infinities.
    if not (is_number and MIN_RADIUS_M <= raw_radius <= MAX_RADIUS_M):
        raise GeofenceError(
            radius_field,
            "radius_out_of_range",
            f"{radius_field} must be a number from {MIN_RADIUS_M} to {MAX_RADIUS_M} metres; got {raw_radius!r}",
        )
    radius = float(raw_radius)

    return Geofence(
        kind="circle",
        geojson={"type": "Circle", "center": [lon, lat], "radius_m": radius},
        shape=_circumscribed_polygon(lon, lat, radius),
        center=(lon, lat),
        radius_m=radius,
        area_m2=math.pi * radius**2,
    )


def _circumscribed_polygon(lon: float, lat: float, radius_m: float) -> shapely.MultiPolygon:
    n = CIRCLE_SEGMENTS
    # At r / cos(pi/n) from the centre the midpoint of every edge lies at r: the polygon
    # circumscribes the circle instead of being inscribed in it.
    vertex_distance = radius_m / math.cos(math.pi / n) * (1 + CIRCLE_HEADROOM)
    azimuths = [360 * i / n for i in range(n)]
    lons, lats, _ = _GEOD.fwd([lon] * n, [lat] * n, azimuths, [vertex_distance] * n)
    # Geod.fwd wraps longitudes into [-180, 180]; unwrap them around the centre so a circle
    # straddling the antimeridian stays one ring, then cut that ring back into [-180, 180].
    unwrapped = [lon + (x - lon + 180) % 360 - 180 for x in lons]
    parts: list[shapely.Polygon] = []
    for shift in (-360.0, 0.0, 360.0):
        ring = shapely.Polygon([(x + shift, y) for x, y in zip(unwrapped, lats, strict=True)])
        clipped = shapely.clip_by_rect(ring, -180, -90, 180, 90)
        parts.extend(p for p in shapely.get_parts(clipped) if p.area > 0)
    return shapely.orient_polygons(shapely.MultiPolygon(parts))


def _require_valid(geometry: shapely.Geometry, field: str) -> None:
    reason = shapely.is_valid_reason(geometry)
    if reason != "Valid Geometry":
        raise GeofenceError(field, "invalid_geometry", f"{field} is not a valid polygon: {reason}")


def _sequence(raw: object, field: str, expected: str) -> list[Any] | tuple[Any, ...]:
    if not isinstance(raw, list | tuple):
        raise GeofenceError(field, "bad_coordinates", f"{field} must be {expected}")
    return raw


def _finite_number(raw: object, field: str, name: str) -> int | float:
    # bool is a subclass of int, but `true` is never a coordinate.
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise GeofenceError(field, "not_a_number", f"{field}: {name} must be a number, got {raw!r}")
    if isinstance(raw, float) and not math.isfinite(raw):
        raise GeofenceError(field, "not_finite", f"{field}: {name} must be finite, got {raw!r}")
    return raw
