"""A customer's export (GET /v1/me/export): everything held about the caller, read in one snapshot.

What is held about an app user, keyed by their token's `sub`: check-ins (with the position and
device while retention keeps them: after the retention purge lon, lat and device_id are null),
the offers they unlocked with their codes and states, redemptions of those codes, feedback,
conversations with every message, and the campaigns that exposed them with the randomised arm.
The events table and the webhook outbox repeat these facts (the outbox under the merchant's
pseudonym) and the check-in idempotency keys keep a check-in's answer for 48 hours; nothing in them
is not here.

Size: every part but the check-ins is bounded by what a person can unlock (an accepted visit,
the offers' per-user limits) and is exported whole. Check-ins are not bounded (rejected attempts
count too, at up to CHECKIN_CHECKIN_RATE_PER_MINUTE), so the export carries the newest
CHECKINS_PER_PAGE of them with their total, and `next_cursor` pages through the rest
(GET /v1/me/export/checkins): one response stays a few megabytes at most, never the whole history
of a scripted client in memory.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from core.keyset import after_cursor, decode_cursor, page_of
from geo.checkins import DISTANCE_TO_FENCE_SQL
from offers import conversations

CHECKINS_PER_PAGE = 5000  # about 300 bytes each in JSON: 1.5 MB
CONVERSATIONS_PER_READ = 100

# Every part reads the same snapshot: a redemption committed between two parts cannot show up in
# one and not the other. The first statement of the request's transaction.
SNAPSHOT_SQL = text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")

# Found through the person's events (every check-in has at least one, on the events_user index):
# check-ins have an index on user_id for accepted ones only. What retention leaves of a purged
# one (offers/privacy/retention.py) is here too: the accuracy bucket and the distance to the fence.
_THEIRS = """
    c.id IN (SELECT e.checkin_id FROM events e
             WHERE e.user_id = :user AND e.type IN ('checkin_accepted', 'checkin_rejected'))
    AND c.user_id = :user
"""
_CHECKINS = f"""
    SELECT c.id, c.status, c.reason, c.detail, c.venue_id, v.name AS venue_name,
           c.lon, c.lat, c.accuracy_m, coalesce(c.accuracy_bucket, accuracy_bucket(c.accuracy_m)) AS accuracy_bucket,
           {DISTANCE_TO_FENCE_SQL} AS distance_to_fence_m,
           c.observed_at, c.received_at, c.device_id, c.mocked
    FROM checkins c LEFT JOIN venues v ON v.id = c.venue_id
    WHERE {_THEIRS} {{after}}
    ORDER BY c.observed_at DESC, c.id DESC
    LIMIT :limit
"""
CHECKINS_SQL = {
    paging: text(_CHECKINS.format(after=after_cursor("c.observed_at", "c.id") if paging else ""))
    for paging in (False, True)
}
CHECKIN_COUNT_SQL = text(f"SELECT count(*) FROM checkins c WHERE {_THEIRS}")

# The state reads as the wallet's and the till's: redeemed before expired.
UNLOCKS_SQL = text("""
    SELECT u.id, u.offer_id, o.title AS offer_title, u.campaign_id, u.venue_id, v.name AS venue_name,
           m.name AS merchant_name, u.checkin_id, u.code,
           CASE WHEN u.redeemed_at IS NOT NULL THEN 'redeemed'
                WHEN u.expires_at <= now() THEN 'expired' ELSE 'active' END AS state,
           u.unlocked_at, u.expires_at, u.redeemed_at
    FROM unlocks u
    JOIN offers o ON o.id = u.offer_id
    JOIN venues v ON v.id = u.venue_id
    JOIN merchants m ON m.id = u.merchant_id
    WHERE u.user_id = :user
    ORDER BY u.unlocked_at DESC, u.id DESC
""")

# Voided ones too: a void is something that happened to the customer's code. Not the staff
# member who redeemed or voided it: that is about the merchant's staff, not the customer.
REDEMPTIONS_SQL = text("""
    SELECT r.id, r.unlock_id, r.offer_id, r.venue_id, r.redeemed_at, r.voided_at, r.void_reason
    FROM redemptions r JOIN unlocks u ON u.id = r.unlock_id
    WHERE u.user_id = :user
    ORDER BY r.redeemed_at DESC, r.id DESC
""")

FEEDBACK_SQL = text("""
    SELECT id, unlock_id, offer_id, venue_id, rating, comment, created_at, updated_at
    FROM unlock_feedback WHERE user_id = :user
    ORDER BY created_at DESC, id DESC
""")

EXPOSURES_SQL = text("""
    SELECT e.campaign_id, c.name AS campaign_name, m.name AS merchant_name, e.arm, e.exposed_at,
           e.venue_id, e.checkin_id, e.return_visits, e.triggered_at
    FROM exposures e
    JOIN campaigns c ON c.id = e.campaign_id
    JOIN merchants m ON m.id = c.merchant_id
    WHERE e.user_id = :user
    ORDER BY e.exposed_at DESC, e.campaign_id
""")


def _checkin(row: dict[str, Any]) -> dict[str, Any]:
    venue_id, venue_name = row.pop("venue_id"), row.pop("venue_name")
    return row | {"venue": None if venue_id is None else {"id": venue_id, "name": venue_name}}


async def checkins_page(session: AsyncSession, user: str, *, cursor: str | None, limit: int) -> dict[str, Any]:
    """The user's check-ins, newest first, accepted and rejected: {"items", "next_cursor"}."""
    params: dict[str, Any] = {"user": user, "limit": limit + 1}
    if cursor is not None:
        params["after_at"], params["after_id"] = decode_cursor(cursor)
    rows = [dict(row._mapping) for row in await session.execute(CHECKINS_SQL[cursor is not None], params)]
    page = page_of(rows, limit, lambda row: (row["observed_at"], row["id"]))
    return page | {"items": [_checkin(row) for row in page["items"]]}


def _unlock(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "offer": {"id": row["offer_id"], "title": row["offer_title"]},
        "campaign_id": row["campaign_id"],
        "venue": {"id": row["venue_id"], "name": row["venue_name"]},
        "merchant": {"name": row["merchant_name"]},
        "checkin_id": row["checkin_id"],
        "code": row["code"],
        "state": row["state"],
        "unlocked_at": row["unlocked_at"],
        "expires_at": row["expires_at"],
        "redeemed_at": row["redeemed_at"],
    }


def _exposure(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "campaign": {"id": row["campaign_id"], "name": row["campaign_name"]},
        "merchant": {"name": row["merchant_name"]},
        "arm": row["arm"],
        "exposed_at": row["exposed_at"],
        "venue_id": row["venue_id"],
        "checkin_id": row["checkin_id"],
        "return_visits": row["return_visits"],
        "triggered_at": row["triggered_at"],
    }


async def _all_conversations(session: AsyncSession, user: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        page = await conversations.my_conversations(session, user=user, cursor=cursor, limit=CONVERSATIONS_PER_READ)
        found.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return found


async def export_user(session: AsyncSession, user: str, *, now: datetime) -> dict[str, Any]:
    """Everything held about the user (see the module's docstring), as of one snapshot. Must be the
    first statement of the session's transaction."""
    await session.execute(SNAPSHOT_SQL)
    params = {"user": user}
    checkins_total = (await session.execute(CHECKIN_COUNT_SQL, params)).scalar_one()
    checkins = await checkins_page(session, user, cursor=None, limit=CHECKINS_PER_PAGE)
    return {
        "subject": user,
        "exported_at": now,
        "checkins": checkins | {"total": checkins_total},
        "unlocks": [_unlock(dict(row._mapping)) for row in await session.execute(UNLOCKS_SQL, params)],
        "redemptions": [dict(row._mapping) for row in await session.execute(REDEMPTIONS_SQL, params)],
        "feedback": [dict(row._mapping) for row in await session.execute(FEEDBACK_SQL, params)],
        "conversations": await _all_conversations(session, user),
        "campaigns": [_exposure(dict(row._mapping)) for row in await session.execute(EXPOSURES_SQL, params)],
    }
