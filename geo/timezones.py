"""A venue's time zone against its position: a venue whose position lies in a zone with other
UTC offsets than the declared zone is refused (this catches latitude and longitude sent swapped,
which puts a venue in another continent or at sea), and a venue sent without a zone gets the
zone of its position.

Zones compare by their UTC offsets now and six months from now (both sides of any
daylight-saving change), never by name: neighbours that keep the same clock, such as Oslo and
Stockholm, pass; Helsinki at Stockholm's position does not.

The boundaries are tzfpy's: the timezone-boundary-builder polygons compiled into its wheel, so
a look-up never leaves the process (about 1 µs). They are simplified to within about 111 m of
the real border, so a declared zone passes when it keeps the clock of the zone at the fence's
position or at any point BORDER_TOLERANCE_M around it: a venue on a border is not refused for
the simplification, and a swapped position is thousands of kilometres away anyway.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import shapely.geometry
import tzfpy

from core.errors import ValidationFailed

BORDER_TOLERANCE_M = 150
HALF_A_YEAR = timedelta(days=182)
_METRES_PER_DEGREE = 111_320


def fence_position(geojson: dict[str, Any]) -> tuple[float, float]:
    """(lon, lat) that stands for a validated fence: a circle's centre, else a point inside the
    polygon (its representative point, never outside a concave or split shape)."""
    if geojson["type"] == "Circle":
        lon, lat = geojson["center"]
        return float(lon), float(lat)
    point = shapely.geometry.shape(geojson).representative_point()
    return point.x, point.y


def zone_at(lon: float, lat: float) -> str | None:
    """The IANA zone at a position (Etc/GMT±N at sea), or None where the data has none."""
    return tzfpy.get_tz(lon, lat) or None


def _around(lon: float, lat: float, metres: float) -> list[tuple[float, float]]:
    """The position and 8 points `metres` around it (flat-earth: fine at this scale)."""
    dlat = metres / _METRES_PER_DEGREE
    dlon = metres / (_METRES_PER_DEGREE * max(math.cos(math.radians(lat)), 0.01))
    points = [(lon, lat)]
    for step in range(8):
        angle = step * math.pi / 4
        east = ((lon + dlon * math.cos(angle) + 180) % 360) - 180
        north = max(-90.0, min(90.0, lat + dlat * math.sin(angle)))
        points.append((east, north))
    return points


@lru_cache(maxsize=1024)
def _offsets(zone: str, hour: datetime) -> tuple[timedelta | None, timedelta | None] | None:
    try:
        tz = ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        return None
    return hour.astimezone(tz).utcoffset(), (hour + HALF_A_YEAR).astimezone(tz).utcoffset()


def offsets(zone: str, now: datetime) -> tuple[timedelta | None, timedelta | None] | None:
    """The zone's UTC offsets now and six months from now; None for a zone tzdata does not know."""
    return _offsets(zone, now.astimezone(UTC).replace(minute=0, second=0, microsecond=0))


def _describe(zone: str, now: datetime) -> str:
    found = offsets(zone, now)
    if found is None:
        return zone
    labels = sorted({_utc_label(offset) for offset in found if offset is not None})
    return f"{zone} ({'/'.join(labels)})"


def _utc_label(offset: timedelta) -> str:
    minutes = int(offset.total_seconds()) // 60
    sign = "+" if minutes >= 0 else "-"
    return f"UTC{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def venue_timezone(geojson: dict[str, Any], declared: str | None, now: datetime | None = None) -> str:
    """The zone to store for a venue with this fence: the declared one when its clock is the
    clock at the fence, the zone found there when none was declared. Refused otherwise with
    422 on field `timezone`: `timezone_mismatch` (naming the zone found, also as
    `timezone_found`) or `timezone_unknown` (none declared and none known there)."""
    now = now or datetime.now(UTC)
    lon, lat = fence_position(geojson)
    found = zone_at(lon, lat)
    if declared is None:
        if found is None:
            raise ValidationFailed.for_field(
                "timezone", "timezone_unknown", "no time zone is known at this position: send timezone"
            )
        return found
    if found is None:
        return declared  # nothing to compare with (the data covers land and sea, so hardly ever)
    clock = offsets(declared, now)
    for candidate in _around(lon, lat, BORDER_TOLERANCE_M):
        zone = zone_at(*candidate)
        if zone is not None and offsets(zone, now) == clock:
            return declared
    message = (
        f"the venue's position ({lat:.5f}, {lon:.5f} as latitude, longitude) lies in {_describe(found, now)}, "
        f"whose clock differs from {_describe(declared, now)}; check that longitude comes first in GeoJSON, "
        "or omit timezone to take the position's"
    )
    raise ValidationFailed(
        message,
        errors=[{"field": "timezone", "code": "timezone_mismatch", "message": message}],
        timezone_found=found,
    )
