"""The app user's wallet: every offer they unlocked, with its state now."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

WALLET_SQL = text("""
    SELECT u.id AS unlock_id, o.id AS offer_id, o.title, o.description, o.terms, u.code,
           CASE WHEN u.redeemed_at IS NOT NULL THEN 'redeemed'
                WHEN u.expires_at <= now() THEN 'expired' ELSE 'active' END AS status,
           u.unlocked_at, u.expires_at, u.redeemed_at,
           jsonb_build_object('id', v.id, 'name', v.name) AS venue
    FROM unlocks u
    JOIN offers o ON o.id = u.offer_id
    JOIN venues v ON v.id = u.venue_id
    WHERE u.user_id = :user
    ORDER BY u.unlocked_at DESC, u.id
    LIMIT :limit
""")


async def wallet(session: AsyncSession, user: str, limit: int = 200) -> list[dict]:
    return [dict(r._mapping) for r in await session.execute(WALLET_SQL, {"user": user, "limit": limit})]
