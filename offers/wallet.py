"""The app user's wallet: every offer they unlocked, with its state now, a page at a time.

Pages are keyset pages, newest first, on (unlocked_at, id): the offers of one check-in share
their unlocked_at (the transaction's now()), so the id breaks the tie. Paging after a
position rather than skipping an offset means offers unlocked meanwhile never repeat or
shift an offer the app has already seen. The cursor is that position (core/keyset.py).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

# The cursor helpers are shared (core/keyset.py); imported here under the names the wallet always had.
from core.keyset import after_cursor, decode_cursor, encode_cursor

DEFAULT_LIMIT = 50
MAX_LIMIT = 100

_SELECT = """
    SELECT u.id AS unlock_id, o.id AS offer_id, o.title, o.description, o.terms, u.code,
           CASE WHEN u.redeemed_at IS NOT NULL THEN 'redeemed'
                WHEN u.expires_at <= now() THEN 'expired' ELSE 'active' END AS status,
           u.unlocked_at, u.expires_at, u.redeemed_at,
           jsonb_build_object('id', v.id, 'name', v.name) AS venue,
           -- redeemed and not rated yet: the app may ask for feedback
           u.redeemed_at IS NOT NULL
               AND NOT EXISTS (SELECT 1 FROM unlock_feedback f WHERE f.unlock_id = u.id) AS feedback_requested
    FROM unlocks u
    JOIN offers o ON o.id = u.offer_id
    JOIN venues v ON v.id = u.venue_id
    WHERE u.user_id = :user {after}
    ORDER BY u.unlocked_at DESC, u.id DESC
    LIMIT :limit
"""
FIRST_PAGE_SQL = text(_SELECT.format(after=""))
NEXT_PAGE_SQL = text(_SELECT.format(after=after_cursor("u.unlocked_at", "u.id")))


async def wallet_page(session: AsyncSession, user: str, *, cursor: str | None, limit: int) -> dict[str, Any]:
    """One page: {"items": [...], "next_cursor": str | None}; next_cursor is None on the last page."""
    params: dict[str, Any] = {"user": user, "limit": limit + 1}  # one more says whether a next page exists
    query = FIRST_PAGE_SQL
    if cursor is not None:
        params["after_at"], params["after_id"] = decode_cursor(cursor)
        query = NEXT_PAGE_SQL
    rows = [dict(r._mapping) for r in await session.execute(query, params)]
    items = rows[:limit]
    more = len(rows) > limit
    return {
        "items": items,
        "next_cursor": encode_cursor(items[-1]["unlocked_at"], items[-1]["unlock_id"]) if more else None,
    }
