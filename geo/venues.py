"""Venues and their geofences: create, read, change, delete (soft), and nearby search.

Every function takes the merchant from the caller's token: another merchant's venue is
indistinguishable from a missing one.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from geoalchemy2 import Geography
from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base
from core.errors import Conflict, NotFound
from core.tenancy import ensure_merchant
from geo.geofence import Geofence, wkt_for_storage
from geo.timezones import venue_timezone


class Venue(Base):
    __tablename__ = "venues"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, server_default=func.gen_random_uuid())
    merchant_id: Mapped[uuid.UUID]
    name: Mapped[str]
    timezone: Mapped[str]
    address: Mapped[str | None]
    geofence: Mapped[dict[str, Any]] = mapped_column(JSONB)
    fence: Mapped[Any] = mapped_column(Geography("MULTIPOLYGON", srid=4326, spatial_index=False))
    circle_center: Mapped[Any | None] = mapped_column(Geography("POINT", srid=4326, spatial_index=False))
    circle_radius_m: Mapped[float | None]
    area_m2: Mapped[float]
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=func.now())
    deleted_at: Mapped[datetime | None]


def _apply_geofence(venue: Venue, fence: Geofence) -> None:
    venue.geofence = fence.geojson
    venue.fence = wkt_for_storage(fence)
    venue.circle_center = f"SRID=4326;POINT({fence.center[0]} {fence.center[1]})" if fence.center else None
    venue.circle_radius_m = fence.radius_m
    venue.area_m2 = fence.area_m2


async def create_venue(
    session: AsyncSession,
    merchant_id: uuid.UUID,
    *,
    name: str,
    timezone: str | None,
    address: str | None,
    geofence: Geofence,
) -> Venue:
    """`timezone` None takes the zone of the fence's position; a declared one must keep its clock."""
    timezone = venue_timezone(geofence.geojson, timezone)
    await ensure_merchant(session, merchant_id)
    venue = Venue(merchant_id=merchant_id, name=name, timezone=timezone, address=address)
    _apply_geofence(venue, geofence)
    session.add(venue)
    await session.flush()
    await session.refresh(venue)
    return venue


async def get_venue(session: AsyncSession, merchant_id: uuid.UUID, venue_id: uuid.UUID) -> Venue:
    venue = await session.scalar(
        select(Venue).where(Venue.id == venue_id, Venue.merchant_id == merchant_id, Venue.deleted_at.is_(None))
    )
    if venue is None:
        raise NotFound("venue not found")
    return venue


async def list_venues(
    session: AsyncSession, merchant_id: uuid.UUID, *, after: uuid.UUID | None, limit: int
) -> list[Venue]:
    """Keyset pagination on id: stable under inserts, no OFFSET scans."""
    query = select(Venue).where(Venue.merchant_id == merchant_id, Venue.deleted_at.is_(None))
    if after is not None:
        query = query.where(Venue.id > after)
    return list(await session.scalars(query.order_by(Venue.id).limit(limit)))


async def update_venue(
    session: AsyncSession, merchant_id: uuid.UUID, venue_id: uuid.UUID, changes: dict[str, Any]
) -> Venue:
    venue = await get_venue(session, merchant_id, venue_id)
    if "geofence" in changes or "timezone" in changes:  # the zone must keep the clock at the (new) fence
        fence = changes["geofence"].geojson if "geofence" in changes else venue.geofence
        changes = changes | {"timezone": venue_timezone(fence, changes.get("timezone", venue.timezone))}
    for field in ("name", "timezone", "address"):
        if field in changes:
            setattr(venue, field, changes[field])
    if "geofence" in changes:
        _apply_geofence(venue, changes["geofence"])
    await session.flush()
    await session.refresh(venue)
    return venue


# Campaigns that still run (or may resume) at a venue: deleting it would silently take it out of them.
RUNNING_CAMPAIGNS_SQL = text("""
    SELECT c.id, c.name, c.status
    FROM campaign_venues cv JOIN campaigns c ON c.id = cv.campaign_id
    WHERE cv.venue_id = :venue_id AND c.merchant_id = :merchant_id AND c.status IN ('active', 'paused')
    ORDER BY c.name, c.id
""")


async def delete_venue(session: AsyncSession, merchant_id: uuid.UUID, venue_id: uuid.UUID) -> None:
    """Soft delete; refused with 409 `venue_in_campaign`, naming them, while an active or paused
    campaign runs there (end the campaign or take the venue out of it first)."""
    venue = await get_venue(session, merchant_id, venue_id)
    running = (await session.execute(RUNNING_CAMPAIGNS_SQL, {"venue_id": venue.id, "merchant_id": merchant_id})).all()
    if running:
        names = ", ".join(f"{c.name} ({c.status})" for c in running)
        raise Conflict(
            f"the venue is in campaigns that are active or paused: {names}; end them or take the venue out first",
            code="venue_in_campaign",
            campaigns=[{"id": str(c.id), "name": c.name, "status": c.status} for c in running],
        )
    venue.deleted_at = func.now()
    await session.flush()


# Within radius_m of a venue's stored fence, as ST_DWithin(fence) decides, nearest first. A circle's
# fence is a 64-gon never smaller than the circle and at most 0.23% wider (geo/geofence.py), so a
# circle within the radius by its centre is within it by its fence too, and one more than 5% of its
# radius beyond it is not: only those in between take the polygon test, which costs tens of µs a
# circle (65 vertices on the spheroid) where the centre's distance costs a few. The index condition
# is the one ST_DWithin itself adds. The point is a materialized CTE: computed once, and no plan
# estimates from its value, so the prepared statement keeps one generic plan instead of planning
# every call again (custom plans cost more than the query).
NEARBY_SQL = text("""
    WITH p AS MATERIALIZED (SELECT ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)::geography AS pt)
    SELECT v.id, v.name,
           round(venue_distance_m(v, p.pt)::numeric, 1)::float AS distance_m,
           EXISTS (SELECT 1 FROM campaign_venues cv JOIN campaigns c ON c.id = cv.campaign_id
                   JOIN offers o ON o.campaign_id = c.id AND o.status = 'active'
                   WHERE cv.venue_id = v.id AND c.status = 'active'
                     AND now() >= c.starts_at AND now() < c.ends_at) AS has_checkin_offer
    FROM p JOIN venues v ON v.fence && _ST_Expand(p.pt, :radius_m)
    WHERE v.deleted_at IS NULL
      AND CASE WHEN v.circle_radius_m IS NULL THEN ST_DWithin(v.fence, p.pt, :radius_m)
               ELSE ST_Distance(v.circle_center, p.pt) - v.circle_radius_m <= :radius_m
                    OR (ST_Distance(v.circle_center, p.pt) - v.circle_radius_m <= :radius_m + 0.05 * v.circle_radius_m
                        AND ST_DWithin(v.fence, p.pt, :radius_m)) END
    ORDER BY distance_m, v.id
    LIMIT :limit
""")


async def nearby_venues(
    conn: AsyncConnection, *, lat: float, lon: float, radius_m: float, limit: int
) -> list[dict[str, Any]]:
    """Nearest first. Says whether a check-in offer is waiting, never what it is."""
    rows = await conn.execute(NEARBY_SQL, {"lat": lat, "lon": lon, "radius_m": radius_m, "limit": limit})
    return [dict(row._mapping) for row in rows]
