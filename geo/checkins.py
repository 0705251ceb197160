"""Recorded check-ins, read back for a merchant: about where they were and why they were refused.

A rejected check-in is stored with the venue it was measured against (outside_geofence,
too_frequent, accuracy_too_low at a matched venue...), so a venue's recent check-ins show both
the visits and the attempts that failed. A check-in that matched no venue belongs to no
merchant and is never returned.

A merchant sees the customer as their pseudonym for that merchant (core/pseudonyms.py), the same
one the inbox and webhooks show, so one customer's repeated rejections read as one person's; and
a position only coarsened to a cell of about 100 m (coarse_position), beside the exact distance
to the fence, which is what decides a check-in.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from core.keyset import after_cursor, decode_cursor, page_of
from core.pseudonyms import customer_pseudonym
from core.settings import Settings

MAX_RECENT = 1000

# A check-in `c`'s distance from venue `v`'s fence: to 0.1 m while the position is held, then the
# distance kept at the purge, to 10 m (offers/privacy/retention.py). Not venue_distance_m() of a
# missing point: greatest() in it skips the NULL and says 0.
DISTANCE_TO_FENCE_SQL = """
    CASE WHEN c.lon IS NULL THEN c.distance_to_fence_m
         ELSE round(venue_distance_m(v, ST_SetSRID(ST_MakePoint(c.lon, c.lat), 4326)::geography)::numeric, 1)::float
    END"""

# Newest first, read backwards on the (venue_id, observed_at) index; the join on the merchant
# keeps every row the caller's own. Two statements rather than "venue_id IS NULL OR ...", which
# a prepared statement's generic plan cannot answer from the index.
_SELECT = f"""
    SELECT c.id, c.venue_id, c.user_id, c.status, c.reason, c.detail, c.lon, c.lat, c.accuracy_m,
           {DISTANCE_TO_FENCE_SQL} AS distance_to_fence_m,
           c.observed_at
    FROM checkins c JOIN venues v ON v.id = c.venue_id
    WHERE v.merchant_id = :merchant_id {{venue}}
    ORDER BY c.observed_at DESC, c.id DESC
    LIMIT :limit
"""
MERCHANT_CHECKINS_SQL = text(_SELECT.format(venue=""))
VENUE_CHECKINS_SQL = text(_SELECT.format(venue="AND c.venue_id = :venue_id"))


# A merchant's view of a position: latitude to 0.001° (111 m), longitude to a multiple of 0.001°
# that is at least as wide on the ground (0.002° at Oslo's 60°N), so a cell is 111-222 m across
# anywhere and every coordinate has at most 3 decimals. Enough to see whether a fix was at the
# door, across the street or a block away, and what a map at street level can show; not which
# house, table or doorway. The exact distance to the fence rides beside it, so a reviewer loses
# nothing that decides a check-in. Near the poles the cell is capped at 1° of longitude.
CELL_DEGREES = 0.001
_MIN_COS = 0.001


def coarse_position(lon: float, lat: float) -> tuple[float, float]:
    """(lon, lat) snapped to the centre line of a cell of about 100 m (see above), each with at
    most 3 decimals. Integers of thousandths, so 59.913 is the float nearest 59.913."""
    lat_units = round(lat / CELL_DEGREES)
    lat_cell = lat_units * CELL_DEGREES
    lon_step = max(1, math.ceil(1 / max(math.cos(math.radians(lat_cell)), _MIN_COS) - 1e-9))
    lon_units = round(lon / CELL_DEGREES / lon_step) * lon_step
    return max(-180.0, min(180.0, lon_units / 1000)), max(-90.0, min(90.0, lat_units / 1000))


@dataclass(frozen=True)
class RecentCheckin:
    id: uuid.UUID
    venue_id: uuid.UUID
    customer: str  # the customer's pseudonym for this merchant, never the sub
    status: str  # accepted | rejected
    reason: str | None  # why it was rejected (geo/plausibility.py and the database checks), None if accepted
    detail: dict[str, Any] | None  # the figures behind the reason, as the check-in's response gave them
    lon: float | None  # coarse_position(); None once retention has removed the position
    lat: float | None
    accuracy_m: float | None  # None once retention has removed the position
    distance_to_fence_m: float | None  # to 0.1 m, 0 inside the fence; to 10 m once retention removed the position
    observed_at: datetime


def _as_merchant_sees_it(settings: Settings, merchant_id: uuid.UUID, row: dict[str, Any]) -> dict[str, Any]:
    """A row with the sub replaced by the pseudonym and the position coarsened: nothing finer leaves here."""
    lon, lat, sub = row.pop("lon"), row.pop("lat"), row.pop("user_id")
    if lon is not None and lat is not None:
        lon, lat = coarse_position(lon, lat)
    return row | {"customer": customer_pseudonym(settings, merchant_id, sub), "lon": lon, "lat": lat}


async def recent_checkins(
    session: AsyncSession,
    settings: Settings,
    merchant_id: uuid.UUID,
    venue_id: uuid.UUID | None = None,
    limit: int = 200,
) -> list[RecentCheckin]:
    """The merchant's latest check-ins, accepted and rejected, newest first: at one venue, or at
    all of its venues when venue_id is None. Another merchant's venue gives an empty list."""
    params = {"merchant_id": merchant_id, "venue_id": venue_id, "limit": max(1, min(limit, MAX_RECENT))}
    rows = await session.execute(VENUE_CHECKINS_SQL if venue_id else MERCHANT_CHECKINS_SQL, params)
    return [RecentCheckin(**_as_merchant_sees_it(settings, merchant_id, dict(row._mapping))) for row in rows]


# Fraud review (GET /v1/checkins): the same rows a page at a time, keyset on (observed_at, id)
# (core/keyset.py), optionally one outcome only. A reviewer gets how far the fix was from the
# venue's fence, never the position itself: the distance and the accuracy are what decide a
# check-in, and a merchant has no need of where its customers were. The customer is their
# pseudonym: the same person's rejections one after another are what a review looks for.
_REVIEW = f"""
    SELECT c.id, c.venue_id, c.user_id, c.status, c.reason, c.detail, c.accuracy_m,
           coalesce(c.accuracy_bucket, accuracy_bucket(c.accuracy_m)) AS accuracy_bucket,
           {DISTANCE_TO_FENCE_SQL} AS distance_to_fence_m,
           c.observed_at, c.received_at
    FROM checkins c JOIN venues v ON v.id = c.venue_id
    WHERE v.merchant_id = :merchant_id {{venue}} {{status}} {{after}}
    ORDER BY c.observed_at DESC, c.id DESC
    LIMIT :limit
"""
REVIEW_SQL = {
    (at_venue, one_status, paging): text(
        _REVIEW.format(
            venue="AND c.venue_id = :venue_id" if at_venue else "",
            status="AND c.status = :status" if one_status else "",
            after=after_cursor("c.observed_at", "c.id") if paging else "",
        )
    )
    for at_venue in (False, True)
    for one_status in (False, True)
    for paging in (False, True)
}


async def checkin_review_page(
    session: AsyncSession,
    settings: Settings,
    merchant_id: uuid.UUID,
    *,
    venue_id: uuid.UUID | None,
    status: str | None,
    cursor: str | None,
    limit: int,
) -> dict[str, Any]:
    """One page of the merchant's check-ins, newest first: {"items", "next_cursor"}. The caller
    checks that the venue is the merchant's (this query only ever returns the merchant's rows)."""
    params: dict[str, Any] = {"merchant_id": merchant_id, "venue_id": venue_id, "status": status, "limit": limit + 1}
    if cursor is not None:
        params["after_at"], params["after_id"] = decode_cursor(cursor)
    query = REVIEW_SQL[(venue_id is not None, status is not None, cursor is not None)]
    rows = [dict(row._mapping) for row in await session.execute(query, params)]
    page = page_of(rows, limit, lambda row: (row["observed_at"], row["id"]))
    for row in page["items"]:
        row["customer"] = customer_pseudonym(settings, merchant_id, row.pop("user_id"))
    return page
