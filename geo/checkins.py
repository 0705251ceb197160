"""Recorded check-ins, read back for a merchant: where they were and why they were refused.

A rejected check-in is stored with the venue it was measured against (outside_geofence,
too_frequent, accuracy_too_low at a matched venue...), so a venue's recent check-ins show both
the visits and the attempts that failed. A check-in that matched no venue belongs to no
merchant and is never returned.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from core.keyset import decode_cursor, page_of

MAX_RECENT = 1000

# Newest first, read backwards on the (venue_id, observed_at) index; the join on the merchant
# keeps every row the caller's own. Two statements rather than "venue_id IS NULL OR ...", which
# a prepared statement's generic plan cannot answer from the index.
_SELECT = """
    SELECT c.id, c.venue_id, c.status, c.reason, c.detail, c.lon, c.lat, c.accuracy_m, c.observed_at
    FROM checkins c JOIN venues v ON v.id = c.venue_id
    WHERE v.merchant_id = :merchant_id {venue}
    ORDER BY c.observed_at DESC, c.id DESC
    LIMIT :limit
"""
MERCHANT_CHECKINS_SQL = text(_SELECT.format(venue=""))
VENUE_CHECKINS_SQL = text(_SELECT.format(venue="AND c.venue_id = :venue_id"))


@dataclass(frozen=True)
class RecentCheckin:
    id: uuid.UUID
    venue_id: uuid.UUID
    status: str  # accepted | rejected
    reason: str | None  # why it was rejected (geo/plausibility.py and the database checks), None if accepted
    detail: dict[str, Any] | None  # the figures behind the reason, as the check-in's response gave them
    lon: float
    lat: float
    accuracy_m: float
    observed_at: datetime


async def recent_checkins(
    session: AsyncSession, merchant_id: uuid.UUID, venue_id: uuid.UUID | None = None, limit: int = 200
) -> list[RecentCheckin]:
    """The merchant's latest check-ins, accepted and rejected, newest first: at one venue, or at
    all of its venues when venue_id is None. Another merchant's venue gives an empty list."""
    params = {"merchant_id": merchant_id, "venue_id": venue_id, "limit": max(1, min(limit, MAX_RECENT))}
    rows = await session.execute(VENUE_CHECKINS_SQL if venue_id else MERCHANT_CHECKINS_SQL, params)
    return [RecentCheckin(**row._mapping) for row in rows]


# Fraud review (GET /v1/checkins): the same rows a page at a time, keyset on (observed_at, id)
# (core/keyset.py), optionally one outcome only. A reviewer gets how far the fix was from the
# venue's fence, never the position itself: the distance and the accuracy are what decide a
# check-in, and a merchant has no need of where its customers were.
_REVIEW = """
    SELECT c.id, c.venue_id, c.status, c.reason, c.detail, c.accuracy_m,
           round(venue_distance_m(v, ST_SetSRID(ST_MakePoint(c.lon, c.lat), 4326)::geography)::numeric, 1)::float
               AS distance_to_fence_m,
           c.observed_at, c.received_at
    FROM checkins c JOIN venues v ON v.id = c.venue_id
    WHERE v.merchant_id = :merchant_id {venue} {status} {after}
    ORDER BY c.observed_at DESC, c.id DESC
    LIMIT :limit
"""
REVIEW_SQL = {
    (at_venue, one_status, paging): text(
        _REVIEW.format(
            venue="AND c.venue_id = :venue_id" if at_venue else "",
            status="AND c.status = :status" if one_status else "",
            after="AND c.observed_at <= :after_at AND (c.observed_at, c.id) < (:after_at, :after_id)" if paging else "",
        )
    )
    for at_venue in (False, True)
    for one_status in (False, True)
    for paging in (False, True)
}


async def checkin_review_page(
    session: AsyncSession,
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
    return page_of(rows, limit, lambda row: (row["observed_at"], row["id"]))
